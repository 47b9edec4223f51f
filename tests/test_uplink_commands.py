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

from conftest import admission, fill_journal, kiosk_config, stamped
from fakes import FakeBroker
from kiosk import remote
from kiosk.errors import DataError
from kiosk.mqtt.downlink import MAX_COMMAND_BYTES, MAX_CORRELATION_ID, MAX_QUEUED_COMMANDS
from kiosk.mqtt.uplink import Uplink
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
        self.admission = admission(tmp_path / "commands.json")
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
        """bytes as they are; a dict with its envelope (`stamped`) unless it has a version already."""
        if isinstance(payload, dict) and "version" not in payload:
            payload = stamped(payload)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.operator.publish(f"{base}/cmd/{name}", data, qos=1)
        self.broker.settle()

    def answers(self, name) -> list[dict]:
        return [m.json() for m in self.broker.messages(f"{PREFIX}/cmd/{name}/result")]

    def ask(self, name, payload, base=PREFIX) -> dict:
        before = len(self.answers(name))
        self.send(name, payload, base)
        assert self.up.run_pending_commands(self.handlers, self.deps, self.admission) == 1
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
    assert seen[0][2]["a"] == 1 and set(seen[0][2]) == {"a", "version", "issued"}


def test_at_most_max_queued_commands_wait(kiosk, caplog):
    k = kiosk()
    for i in range(MAX_QUEUED_COMMANDS + 5):
        k.operator.publish(f"{PREFIX}/cmd/ping", json.dumps(stamped({"id": i})), qos=1)
    k.broker.settle()
    done = 0
    while k.up.run_pending_commands(k.handlers, k.deps, k.admission):
        done = len(k.answers("ping"))
    assert done == MAX_QUEUED_COMMANDS
    assert [a["id"] for a in k.answers("ping")] == list(range(MAX_QUEUED_COMMANDS))
    assert sum("downlink command dropped" in r.getMessage() for r in caplog.records) == 1   # once per burst
    assert k.up.counters["commands_dropped"] == 5


# ---------------------------------------------------------------- versions and issue times (replays)
def test_a_command_without_its_version_and_issue_time_is_refused(kiosk):
    k = kiosk()
    answer = k.ask("config", {"id": "c-1", "direction": "out", "version": 0, "issued": None}
                   | {"version": "12"})
    assert answer["ok"] is False and answer["id"] == "c-1"
    assert "'version' must be a whole number" in answer["error"] and "'issued' must be the issue time" in answer["error"]
    answer = k.ask("config", {"direction": "out", "version": 5, "issued": "2021-11-15T09:00:00"})   # no offset
    assert answer["ok"] is False and "'issued'" in answer["error"] and "'version'" not in answer["error"]
    assert k.site.direction == "in" and k.admission.ledger.last("config") is None


def test_a_repeated_or_older_command_is_refused_with_the_reason(kiosk):
    k = kiosk()
    first = stamped({"direction": "out"})
    assert k.ask("config", first)["ok"] is True
    k.site.update(direction="in")                                   # someone changed it back since
    again = k.ask("config", first)                                  # the same command once more (a replay)
    assert again["ok"] is False and again["error"].startswith(f"config version {first['version']} refused: repeated")
    older = k.ask("config", {**stamped({"direction": "out"}), "version": first["version"] - 1})
    assert older["ok"] is False and "older than the last accepted" in older["error"]
    assert k.site.direction == "in"
    assert k.ask("config", stamped({"direction": "out"}))["ok"] is True
    assert k.site.direction == "out"
    # versions are per kind: a ping's version has nothing to do with config's
    assert k.ask("ping", {**stamped({}), "version": 1})["ok"] is True


def test_a_refused_command_does_not_use_up_its_version(kiosk):
    k = kiosk()
    bad = stamped({"mode": "party"})
    assert k.ask("config", bad)["ok"] is False
    assert k.ask("config", {**bad, "mode": "trace"})["ok"] is True     # corrected, same version: applied


def test_issue_times_are_judged_only_by_a_synchronised_clock(tmp_path, kiosk):
    from fakes import ManualTime

    k = kiosk()
    now = ManualTime()
    k.admission = admission(tmp_path / "commands.json", now.clock(), max_age_hours=24)
    stale = k.ask("config", stamped({"direction": "out"}, at=now.wall() - 25 * 3600))
    assert stale["ok"] is False and "more than 24 hours ago" in stale["error"]
    future = k.ask("config", stamped({"direction": "out"}, at=now.wall() + 3600))
    assert future["ok"] is False and "in the future" in future["error"]
    assert k.ask("config", stamped({"direction": "out"}, at=now.wall() - 23 * 3600))["ok"] is True
    k.admission = admission(tmp_path / "commands.json", now.clock(synced=False), max_age_hours=24)
    assert k.ask("config", stamped({"direction": "in"}, at=now.wall() - 25 * 3600))["ok"] is True


def test_non_finite_numbers_are_not_json(kiosk):
    k = kiosk()
    body = json.dumps(stamped({"direction": "out"}))[:-1]
    for bad in (body + ', "x": NaN}', body + ', "x": -Infinity}', body + ', "x": 1e999}'):
        answer = k.ask("config", bad.encode())
        assert answer["error"] == "malformed command: expected a JSON object", bad
    assert k.site.direction == "in"


def test_acks_with_non_finite_numbers_are_ignored():
    from kiosk.mqtt.downlink import parse_ack

    assert parse_ack(b'{"ids": ["a"], "upto_seq": 3}') == (["a"], 3)
    assert parse_ack(b'{"ids": ["a"], "upto_seq": NaN}') == ([], None)
    assert parse_ack(b'{"ids": ["a"], "upto_seq": 1e999}') == ([], None)


# ---------------------------------------------------------------- big commands and floods
def test_a_command_over_the_limit_is_answered_but_never_queued_with_its_payload(kiosk):
    k = kiosk()
    k.send("config", b"{" + b" " * MAX_COMMAND_BYTES + b"}")
    assert len(k.up.commands) == 1 and k.up.commands.bytes == 0       # its size only, checked on arrival
    assert k.up.run_pending_commands(k.handlers, k.deps, k.admission) == 1
    assert k.answers("config")[-1]["error"] == (f"command too large ({MAX_COMMAND_BYTES + 2} bytes, "
                                                f"limit {MAX_COMMAND_BYTES})")


def test_the_command_queue_is_bounded_in_bytes(kiosk):
    from kiosk.mqtt.downlink import MAX_QUEUED_COMMAND_BYTES

    k = kiosk()
    big = json.dumps(stamped({"direction": "out", "pad": "x" * (MAX_COMMAND_BYTES - 200)})).encode()
    for _ in range(6):
        k.operator.publish(f"{PREFIX}/cmd/config", big, qos=1)
    k.broker.settle()
    assert len(k.up.commands) == MAX_QUEUED_COMMAND_BYTES // len(big) == 4
    assert k.up.commands.bytes <= MAX_QUEUED_COMMAND_BYTES and k.up.commands.dropped == 2


def test_a_flood_of_commands_logs_its_drops_once_per_burst_with_the_count(caplog):
    from fakes import ManualTime
    from kiosk.mqtt.downlink import DROP_QUIET_S, CommandQueue

    time_ = ManualTime()
    commands = CommandQueue(monotonic=time_.monotonic)
    caplog.set_level(logging.WARNING, logger="kiosk.mqtt.downlink")
    offered = [commands.offer("ping", b"{}") for _ in range(10_000)]
    assert sum(offered) == MAX_QUEUED_COMMANDS
    while commands.take() is not None:      # the app thread takes them; a second flood comes at once
        pass
    assert sum(commands.offer("ping", b"{}") for _ in range(10_000)) == MAX_QUEUED_COMMANDS
    assert len(caplog.records) == 1 and "further drops are counted" in caplog.records[0].getMessage()
    time_.advance(DROP_QUIET_S)
    commands.take()
    assert [r.getMessage() for r in caplog.records[1:]] == [
        "downlink: 19800 commands were dropped while the queue was full"]
    assert commands.dropped == 19_800


def test_the_ledger_file_survives_a_restart_and_a_corrupt_one_is_moved_aside(tmp_path, caplog):
    from datetime import datetime, timezone

    from kiosk.stores.commands import CommandLedger

    path = tmp_path / "journal.sqlite.commands.json"
    at = datetime(2021, 11, 15, 2, tzinfo=timezone.utc)
    CommandLedger(path).accept("roster", 12, at)
    assert CommandLedger(path).last("roster") == (12, at) and CommandLedger(path).last("trust") is None
    path.write_text('{"roster": {"version": "12"}}')
    assert CommandLedger(path).last("roster") is None
    assert (tmp_path / "journal.sqlite.commands.json.corrupt").exists() and "was corrupt" in caplog.text
    (tmp_path / "not-a-folder").write_text("")
    ledger = CommandLedger(tmp_path / "not-a-folder" / "commands.json")
    ledger.accept("config", 3, at)     # cannot be written: logged once, never raised, kept in memory
    ledger.accept("config", 4, at)
    assert ledger.last("config") == (4, at) and caplog.text.count("command versions not saved") == 1


def test_a_command_repeated_while_its_work_goes_on_elsewhere_is_refused(kiosk):
    from concurrent.futures import Future

    work: Future = Future()
    k = kiosk({"slow": lambda payload, deps: work})
    command = stamped({"id": "s-1"})
    k.send("slow", command)
    assert k.up.run_pending_commands(k.handlers, k.deps, k.admission) == 1 and k.answers("slow") == []
    again = k.ask("slow", json.dumps(command).encode())
    assert again["ok"] is False and "is being applied" in again["error"]
    work.set_result({"done": True})
    k.up.run_pending_commands(k.handlers, k.deps, k.admission)
    assert k.answers("slow")[-1] == {"v": 1, "ok": True, "error": None, "result": {"done": True}, "id": "s-1"}
    assert k.admission.ledger.last("slow")[0] == command["version"]
    assert "repeated" in k.ask("slow", json.dumps(command).encode())["error"]
