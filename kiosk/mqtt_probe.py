"""Installer probes of the MQTT broker: can we connect (`kiosk check`), does a message come back (`selftest`)."""
from __future__ import annotations

import threading
import uuid

from kiosk.config import Config
from kiosk.errors import KioskError


def _connected_client(cfg: Config, timeout: float, on_message=None):
    from kiosk.uplink import describe_error, make_client

    client = make_client(cfg, client_id=f"kiosk-probe-{uuid.uuid4().hex[:8]}", clean=True)
    outcome: dict = {}
    connected = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties=None):
        outcome["rc"] = reason_code
        connected.set()

    client.on_connect = on_connect
    if on_message:
        client.on_message = on_message
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=max(5, int(timeout) * 2))
    except (OSError, ValueError) as exc:
        raise KioskError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port}: "
                         f"{describe_error(exc, cfg.mqtt.tls)}") from None
    client.loop_start()
    if not connected.wait(timeout):
        _close(client)
        raise KioskError(f"no answer from {cfg.mqtt.host}:{cfg.mqtt.port} within {timeout:.0f} s "
                         "(TLS port without mqtt.tls, or a firewall?)")
    rc = outcome["rc"]
    if rc.is_failure:
        _close(client)
        raise KioskError(f"broker refused the connection: {rc} (check mqtt.username, mqtt.password and the "
                         "broker's ACL)")
    return client


def _close(client) -> None:
    client.disconnect()
    client.loop_stop()


def probe(cfg: Config, timeout: float = 5.0) -> str:
    client = _connected_client(cfg, timeout)
    _close(client)
    return f"connected to {cfg.mqtt.host}:{cfg.mqtt.port}"


def round_trip(cfg: Config, timeout: float = 5.0) -> str:
    """Publish a test message under the device's own prefix and wait for it to come back."""
    topic = f"{cfg.prefix()}/selftest"
    token = uuid.uuid4().hex
    received = threading.Event()

    def on_message(client, userdata, message):
        if message.payload.decode("utf-8", "replace") == token:
            received.set()

    client = _connected_client(cfg, timeout, on_message)
    try:
        client.subscribe(topic, qos=1)
        client.publish(topic, token, qos=1)
        if not received.wait(timeout):
            raise KioskError(f"published on {topic} but it did not come back within {timeout:.0f} s "
                             "(the broker's ACL must let this device read and write its own prefix)")
    finally:
        _close(client)
    return f"round trip on {topic} ok"
