"""Installer probes of the MQTT broker: can we connect (`kiosk check`), does a message come back (`selftest`).

A probe logs in as the kiosk does, and so, on a broker that binds client ids to user names (the shipped
configuration: `use_username_as_clientid`), it *is* the kiosk's session for a moment. It therefore treats that
session as the kiosk would: its own client id, the session kept (not clean; MQTT 5 with the uplink's expiry),
and nothing it receives acknowledged (`manual_ack`) but its own test message: commands the broker queued for
the kiosk stay queued and come again on the kiosk's next connection. A running kiosk service holds the same
session: stop it first (`kiosk check` and `selftest` also need its camera).
"""
from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.mqtt.client import close, connect_or_explain, make_client

TAKEN_OVER = ("the connection was closed: another client with this login took it over (is the kiosk service "
              "running? stop it first: sudo systemctl stop kiosk)")


def _connected_client(cfg: Config, timeout: float, lost: threading.Event,
                      on_message: Callable[[Any, Any, Any], None] | None = None) -> Any:
    client = make_client(cfg, manual_ack=True)
    if on_message:
        client.on_message = on_message
    client.on_disconnect = lambda *args: lost.set()
    connect_or_explain(cfg, client, timeout=timeout, who="probe")
    return client


def probe(cfg: Config, timeout: float = 5.0) -> str:
    close(_connected_client(cfg, timeout, threading.Event()))
    return f"connected to {cfg.mqtt.host}:{cfg.mqtt.port}"


def round_trip(cfg: Config, timeout: float = 5.0) -> str:
    """Publish a test message on the device's `selftest` topic and wait for it to come back."""
    topic = f"{cfg.prefix()}/selftest"
    token = uuid.uuid4().hex
    received, lost = threading.Event(), threading.Event()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        try:
            if message.topic == topic and message.payload.decode("utf-8", "replace") == token:
                client.ack(message.mid, message.qos)    # ours; anything else stays the kiosk's
                received.set()
        except Exception:   # callbacks never raise into paho
            pass

    client = _connected_client(cfg, timeout, lost, on_message)
    try:
        client.subscribe([(topic, 1)])
        client.publish(topic, token, qos=1)
        if not received.wait(timeout):
            raise KioskError(f"published on {topic} but it did not come back within {timeout:.0f} s: "
                             + (TAKEN_OVER if lost.is_set() else
                                "the broker's ACL must let this device read and write it (make-acl.sh)"))
        client.unsubscribe(topic)     # the kiosk's session keeps only its own subscriptions
    finally:
        close(client)
    return f"round trip on {topic} ok"
