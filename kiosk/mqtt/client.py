"""paho-mqtt clients as the configuration asks for them, and connection errors explained to an operator.

paho is imported inside the functions, so the rest of the product (and its tests) load without it.
"""
from __future__ import annotations

import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any, Callable

from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.ports import MqttClient

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

SESSION_EXPIRY_S = 14 * 86400     # MQTT 5: the broker keeps a persistent session (queued messages) this long


def default_client_id(cfg: Config) -> str:
    return cfg.mqtt.client_id or f"kiosk-{cfg.site.id}-{cfg.site.device}"


def make_client(cfg: Config, *, client_id: str | None = None, clean: bool = False,
                auto_reconnect: bool = False, manual_ack: bool = False) -> mqtt.Client:
    """A paho 2.x client with the configured protocol, credentials and TLS (not connected).

    auto_reconnect: let paho's loop reconnect by itself (consumers); the kiosk's uplink runs its own loop.
    manual_ack: received QoS 1 messages are acknowledged only by `client.ack` (a probe in the kiosk's session).
    The uplink's default client factory (see `kiosk.ports.MqttClient` for what it uses)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    v5 = cfg.mqtt.protocol == "5"
    kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2,
                              "client_id": client_id or default_client_id(cfg),
                              "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                              "reconnect_on_failure": auto_reconnect, "manual_ack": manual_ack}
    if not v5:
        kwargs["clean_session"] = clean
    client = mqtt.Client(**kwargs)
    if cfg.mqtt.username:
        client.username_pw_set(cfg.mqtt.username, cfg.mqtt.password or None)
    if auto_reconnect:
        # paho annotates whole seconds but computes its delays in float seconds
        client.reconnect_delay_set(cfg.mqtt.reconnect_min_seconds, cfg.mqtt.reconnect_max_seconds)  # type: ignore[arg-type]
    if cfg.mqtt.tls:
        client.tls_set(ca_certs=_opt(cfg.mqtt.ca_file), certfile=_opt(cfg.mqtt.cert_file),
                       keyfile=_opt(cfg.mqtt.key_file))
    return client


def tcp_nodelay(client: MqttClient) -> None:
    """Send small packets (PUBLISH, PUBACK) at once. paho leaves Nagle's algorithm on, which paces a QoS 1
    window at the peer's delayed-ACK timer (measured: ~40 ms per window, 470 events/s instead of thousands)."""
    sock = client.socket()
    if not isinstance(sock, socket.socket):  # no socket any more (or an in-memory test client)
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket
        pass


def connect_kwargs(cfg: Config, *, clean: bool = False) -> dict[str, Any]:
    """Extra connect() arguments: MQTT 5 carries clean start and session expiry here."""
    if cfg.mqtt.protocol != "5":
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0 if clean else SESSION_EXPIRY_S
    return {"clean_start": clean, "properties": props}


def _opt(path: str) -> str | None:
    return str(path) if path else None


def describe_error(exc: BaseException, tls: bool = False) -> str:
    """What a failed connect() means, in words that point at the configuration key to check."""
    if tls and isinstance(exc, (ConnectionResetError, ssl.SSLEOFError, EOFError)):
        return "TLS handshake failed: the broker closed the connection (is mqtt.port a TLS listener?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS failure: the broker's certificate was not accepted: {exc.verify_message} "
                "(check mqtt.ca_file and that mqtt.host matches the certificate)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc} (check mqtt.ca_file, mqtt.cert_file and the broker's certificate)"
    if isinstance(exc, socket.gaierror):
        return "unknown broker host (check mqtt.host and DNS)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (broker not running or wrong mqtt.port)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connection timed out (network or firewall)"
    return f"{type(exc).__name__}: {exc}"


def refused(reason_code: object) -> str:
    return f"broker refused the connection: {reason_code} (check mqtt.username, mqtt.password and the broker's ACL)"


def connect_or_explain(cfg: Config, client: MqttClient, *, timeout: float, who: str = "kiosk",
                       on_connected: Callable[[Any], None] | None = None, clean: bool = False) -> None:
    """Connect `client`, start its network loop and wait for the CONNACK; KioskError naming the fix otherwise.

    on_connected(client) runs on paho's thread after every successful CONNACK (a consumer resubscribes there
    when paho reconnects by itself). The client is stopped again when the connection fails."""
    outcome: dict[str, Any] = {}
    answered = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        try:
            outcome["rc"] = reason_code
            if not reason_code.is_failure:
                tcp_nodelay(client)
                if on_connected is not None:
                    on_connected(client)
        except Exception:  # callbacks never raise into paho
            pass
        finally:
            answered.set()

    client.on_connect = on_connect
    where = f"{cfg.mqtt.host}:{cfg.mqtt.port}"
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=cfg.mqtt.keepalive, **connect_kwargs(cfg, clean=clean))
    except (OSError, ValueError) as exc:
        raise KioskError(f"{who} cannot reach the broker at {where}: {describe_error(exc, cfg.mqtt.tls)}") from None
    client.loop_start()
    if not answered.wait(timeout):
        close(client)
        raise KioskError(f"{who}: no answer from {where} within {timeout:.0f} s "
                         "(TLS port without mqtt.tls, or a firewall?)")
    if outcome["rc"].is_failure:
        close(client)
        raise KioskError(f"{who}: {refused(outcome['rc'])}")


def close(client: MqttClient) -> None:
    """Disconnect and stop the network loop; never raises."""
    try:
        client.disconnect()
        client.loop_stop()
    except Exception:
        pass
