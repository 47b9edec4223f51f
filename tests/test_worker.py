"""The worker that applies slow downlink work (a roster replacement) off the app thread."""
import threading

import pytest

from conftest import wait_for
from kiosk.errors import DataError
from kiosk.worker import MAX_WAITING, Worker


@pytest.fixture
def worker():
    w = Worker("roster update")
    yield w
    w.close()


def test_jobs_run_in_order_on_the_worker_thread_and_failures_go_into_their_future(worker):
    ran = []
    first = worker.submit(lambda: ran.append(threading.current_thread().name) or 1)
    failing = worker.submit(lambda: 1 / 0)
    last = worker.submit(lambda: ran.append("after") or 3)
    assert (first.result(10), last.result(10)) == (1, 3)
    with pytest.raises(ZeroDivisionError):
        failing.result(10)
    assert ran == ["roster update", "after"]  # the failure stopped nothing


def test_a_job_beyond_the_waiting_ones_is_refused_with_a_reason_and_close_drops_the_waiting(worker):
    started, release = threading.Event(), threading.Event()
    running = worker.submit(lambda: started.set() or release.wait(10))
    assert started.wait(10)
    waiting = [worker.submit(lambda: "later") for _ in range(MAX_WAITING)]
    with pytest.raises(DataError, match=f"{MAX_WAITING} earlier updates are still waiting to be applied; send "
                                        "this one again once they are answered"):
        worker.submit(lambda: "one too many")
    release.set()
    assert [w.result(10) for w in waiting] == ["later"] * MAX_WAITING and running.result(10) is True
    started.clear(), release.clear()
    running = worker.submit(lambda: started.set() or release.wait(10))
    assert started.wait(10)
    dropped = worker.submit(lambda: "never")
    # the job in progress finishes once close has dropped the waiting one
    threading.Thread(target=lambda: (wait_for(dropped.cancelled, 10, what="cancelled"), release.set())).start()
    worker.close()
    assert running.result(0) is True and dropped.cancelled()
