"""Installer probes of the MQTT broker: can we connect (`kiosk check`), does a message come back (`selftest`)."""
from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.mqtt.client import close, connect_or_explain, make_client
from kiosk.ports import MqttClient


def _connected_client(cfg: Config, timeout: float,
                      on_message: Callable[[Any, Any, Any], None] | None = None) -> MqttClient:
    client = make_client(cfg, client_id=f"kiosk-probe-{uuid.uuid4().hex[:8]}", clean=True)
    if on_message:
        client.on_message = on_message
    connect_or_explain(cfg, client, timeout=timeout, who="probe", clean=True)
    return client


def probe(cfg: Config, timeout: float = 5.0) -> str:
    close(_connected_client(cfg, timeout))
    return f"connected to {cfg.mqtt.host}:{cfg.mqtt.port}"


def round_trip(cfg: Config, timeout: float = 5.0) -> str:
    """Publish a test message under the device's own prefix and wait for it to come back."""
    topic = f"{cfg.prefix()}/selftest"
    token = uuid.uuid4().hex
    received = threading.Event()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        if message.payload.decode("utf-8", "replace") == token:
            received.set()

    client = _connected_client(cfg, timeout, on_message)
    try:
        client.subscribe([(topic, 1)])
        client.publish(topic, token, qos=1)
        if not received.wait(timeout):
            raise KioskError(f"published on {topic} but it did not come back within {timeout:.0f} s "
                             "(the broker's ACL must let this device read and write its own prefix)")
    finally:
        close(client)
    return f"round trip on {topic} ok"
