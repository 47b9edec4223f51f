"""The downlink envelope without a broker: commands reach the uplink through tests/fakes.py's FakeBroker and
are executed on the test's thread (the app thread's role), with the product's handler table.

The fake routes a publish at once and `settle` waits until the kiosk's network thread has delivered it, so a
command is queued when `ask` runs the pending commands, and its answer is on the broker when `ask` returns.
"""
from __future__ import annotations

import json
import logging
import threading

import pytest

from conftest import fill_journal, kiosk_config
from fakes import FakeBroker
from kiosk import remote
from kiosk.errors import DataError
from kiosk.mqtt.downlink import MAX_COMMAND_BYTES, MAX_CORRELATION_ID
from kiosk.mqtt.uplink import MAX_QUEUED_COMMANDS, Uplink
from kiosk.site import SiteState

PREFIX = "kiosk/s1/d1"


class Kiosk:
    """A started uplink on a fake broker, an operator client, and the command dependencies."""

    def __init__(self, tmp_path, handlers=None):
        self.broker = FakeBroker()
        cfg = kiosk_config(tmp_path, 1883)
        fill_journal(cfg.journal.path, 0)     # the journal exists before the uplink starts, as in the App
        self.up = Uplink(cfg, cfg.journal.path, client_factory=self.broker.client)
        self.site = SiteState("trace", "in")
        self.handlers = handlers or remote.COMMAND_HANDLERS
        self.deps = remote.Dependencies(roster=None, trust=None, revocations=None, keys=None, site=self.site,
                                        clock=None, link_state=lambda: self.up.state)   # what config and ping use
        self.up.start()
        self.broker.wait_for(lambda: "kiosk-s1-d1" in self.broker.clients, what="the kiosk online")
        self.broker.settle()          # its subscriptions are made inside on_connect
        self.operator = self.broker.client(client_id="operator")
        self.operator.connect("127.0.0.1")
        self.operator.loop_start()
        self.broker.wait_for(lambda: "operator" in self.broker.clients, what="the operator")

    def send(self, name, payload, base=PREFIX) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.operator.publish(f"{base}/cmd/{name}", data, qos=1)
        self.broker.settle()

    def answers(self, name) -> list[dict]:
        return [m.json() for m in self.broker.messages(f"{PREFIX}/cmd/{name}/result")]

    def ask(self, name, payload, base=PREFIX) -> dict:
        before = len(self.answers(name))
        self.send(name, payload, base)
        assert self.up.run_pending_commands(self.handlers, self.deps) == 1
        answers = self.answers(name)
        assert len(answers) == before + 1
        return answers[-1]

    def close(self) -> None:
        self.operator.disconnect()
        self.operator.loop_stop()
        self.up.stop()
        assert [e for c in self.broker.made for e in c.callback_errors] == []


@pytest.fixture
def kiosk(tmp_path):
    made = []

    def make(handlers=None):
        k = Kiosk(tmp_path, handlers)
        made.append(k)
        return k

    yield make
    for k in made:
        k.close()


@pytest.mark.parametrize("payload, error", [
    (b"x" * (MAX_COMMAND_BYTES + 1), f"command too large ({MAX_COMMAND_BYTES + 1} bytes, limit {MAX_COMMAND_BYTES})"),
    (b"{not json", "malformed command: expected a JSON object"),
    (b"\xff\xfe", "malformed command: expected a JSON object"),
    (b"[1, 2]", "malformed command: expected a JSON object"),
    (b'"config"', "malformed command: expected a JSON object"),
])
def test_what_is_not_a_json_object_within_the_size_limit_is_refused(kiosk, payload, error):
    k = kiosk()
    answer = k.ask("config", payload)
    assert answer == {"v": 1, "ok": False, "error": error, "result": None}
    assert (k.site.mode, k.site.direction) == ("trace", "in")
    assert k.up.counters["commands_rejected"] == 1


def test_an_unknown_command_is_refused_naming_the_known_ones(kiosk):
    answer = kiosk().ask("reboot", {"id": "r-1"})
    assert answer == {"v": 1, "ok": False, "id": "r-1", "result": None,
                      "error": "unknown command 'reboot' (known: config, ping, roster, trust)"}


@pytest.mark.parametrize("correlation, echoed", [
    ("c-1", True), (42, True), ("x" * MAX_CORRELATION_ID, True),
    ("x" * (MAX_CORRELATION_ID + 1), False), (True, False), ([1], False), ({"a": 1}, False), (None, False),
])
def test_the_correlation_id_is_echoed_when_it_is_a_short_string_or_integer(kiosk, correlation, echoed):
    answer = kiosk().ask("ping", {"id": correlation})
    assert answer["ok"] is True and answer["result"]["pong"] is True and answer["result"]["state"] == "online"
    assert answer.get("id", "absent") == (correlation if echoed else "absent")


def test_a_handler_refusal_is_answered_with_its_reason_and_changes_nothing(kiosk):
    k = kiosk()
    answer = k.ask("config", {"id": 7, "mode": "party", "direction": "out"})
    assert answer["ok"] is False and answer["id"] == 7 and "mode must be one of" in answer["error"]
    assert (k.site.mode, k.site.direction) == ("trace", "in")
    answer = k.ask("config", {"direction": "out"}, base="kiosk/s1/all")   # the site-wide topic is heard too
    assert answer == {"v": 1, "ok": True, "error": None, "result": {"direction": "out", "mode": "trace"}}
    assert k.up.counters == {**k.up.counters, "commands": 2, "commands_rejected": 1}


def test_a_handler_bug_is_an_internal_error_without_the_payload_in_the_logs(kiosk, caplog):
    def buggy(payload, deps):
        raise RuntimeError(f"cannot use {payload['secret']}")

    k = kiosk({**remote.COMMAND_HANDLERS, "buggy": buggy})
    caplog.set_level(logging.DEBUG)
    answer = k.ask("buggy", {"id": "b-1", "secret": "079090000001"})
    assert answer == {"v": 1, "ok": False, "id": "b-1", "result": None, "error": "internal error: RuntimeError"}
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "downlink command buggy failed with RuntimeError" in logged and "test_uplink_commands.py" in logged
    assert "079090000001" not in logged
    assert not any(r.exc_info for r in caplog.records if r.name == "kiosk.mqtt.downlink")   # no traceback text
    assert k.ask("ping", {})["ok"] is True                    # and the kiosk goes on answering


def test_handlers_run_on_the_calling_thread_with_the_dependencies(kiosk):
    seen = []

    def probe(payload, deps):
        seen.append((threading.current_thread(), deps, payload))
        if payload.get("refuse"):
            raise DataError("refused", ["first problem", "second problem"])
        return {"n": len(seen)}

    k = kiosk({"probe": probe})
    assert k.ask("probe", {"a": 1})["result"] == {"n": 1}
    answer = k.ask("probe", {"refuse": True})
    assert answer["error"] == "refused\n  - first problem\n  - second problem"
    assert [(t, d) for t, d, _ in seen] == [(threading.current_thread(), k.deps)] * 2
    assert seen[0][2] == {"a": 1}


def test_at_most_max_queued_commands_wait(kiosk, caplog):
    k = kiosk()
    for i in range(MAX_QUEUED_COMMANDS + 5):
        k.operator.publish(f"{PREFIX}/cmd/ping", json.dumps({"id": i}), qos=1)
    k.broker.settle()
    done = 0
    while k.up.run_pending_commands(k.handlers, k.deps):
        done = len(k.answers("ping"))
    assert done == MAX_QUEUED_COMMANDS
    assert [a["id"] for a in k.answers("ping")] == list(range(MAX_QUEUED_COMMANDS))
    assert sum("downlink command dropped" in r.getMessage() for r in caplog.records) == 5
