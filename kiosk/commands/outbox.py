"""`kiosk outbox status`: the upload queue's counts, oldest pending event and last ack, as one JSON line."""
from __future__ import annotations

from pathlib import Path

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.errors import StorageError


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("outbox", parents=[common], help="the MQTT upload queue (outbox status)")
    actions = p.add_subparsers(dest="outbox_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", parents=[common], help="pending, published, confirmed and dropped counts")
    status.set_defaults(func=run_status)


def run_status(args: Args) -> int:
    from kiosk.stores.outbox import Outbox

    cfg = load_config(args)
    path = Path(cfg.journal.path)
    if not path.exists():
        raise StorageError(f"no journal at {path} yet (the kiosk creates it on its first check-in)")
    outbox = Outbox(path, max_rows=cfg.mqtt.outbox_max_rows, full_policy=cfg.mqtt.outbox_full_policy,
                    final_on_puback=not cfg.mqtt.confirm)
    try:
        emit({"journal": str(path), "mqtt_enabled": cfg.mqtt.enabled, **outbox.status()})
    finally:
        outbox.close()
    return 0
