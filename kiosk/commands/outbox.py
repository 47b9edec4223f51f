"""`kiosk outbox status`: the upload queue's counts, oldest pending event and last ack, as one JSON line.
`kiosk outbox confirm --bundle-receipt FILE`: the console's receipt for an offline bundle marks its events confirmed."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.commands import Args, Parser, Subparsers, emit, load_config
from kiosk.config import Config
from kiosk.errors import DataError, StorageError

if TYPE_CHECKING:
    from kiosk.stores.outbox import Outbox


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("outbox", parents=[common], help="the MQTT upload queue (outbox status)")
    actions = p.add_subparsers(dest="outbox_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", parents=[common], help="pending, published, confirmed and dropped counts")
    status.set_defaults(func=run_status)
    confirm = actions.add_parser("confirm", parents=[common], help="mark events confirmed from a console's receipt")
    confirm.add_argument("--bundle-receipt", metavar="FILE", required=True,
                         help="the receipt kiosk console import (or its upload page) gave for this kiosk's bundle")
    confirm.set_defaults(func=run_confirm)


def _outbox(cfg: Config) -> Outbox:
    from kiosk.stores.outbox import Outbox

    path = Path(cfg.journal.path)
    if not path.exists():
        raise StorageError(f"no journal at {path} yet (the kiosk creates it on its first check-in)")
    return Outbox(path, max_rows=cfg.mqtt.outbox_max_rows, full_policy=cfg.mqtt.outbox_full_policy,
                  final_on_puback=not cfg.mqtt.confirm)


def run_status(args: Args) -> int:
    cfg = load_config(args)
    outbox = _outbox(cfg)
    try:
        emit({"journal": str(cfg.journal.path), "mqtt_enabled": cfg.mqtt.enabled, **outbox.status()})
    finally:
        outbox.close()
    return 0


def run_confirm(args: Args) -> int:
    from kiosk.identity import load_keys_for
    from kiosk.stores import bundle

    cfg = load_config(args)
    try:
        with open(args.bundle_receipt, "rb") as f:
            data = f.read(bundle.MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read {args.bundle_receipt}: {exc.strerror}") from None
    receipt, _ = bundle.unseal(data, [k.key for k in load_keys_for(cfg).keys], bundle.RECEIPT)
    if (receipt["site"], receipt["device"]) != (cfg.site.id, cfg.site.device):
        raise DataError(f"this receipt is for {receipt['site']}/{receipt['device']}, not this kiosk "
                        f"({cfg.site.id}/{cfg.site.device})")
    ids = [i for i in receipt.get("ids") or [] if isinstance(i, str)]
    outbox = _outbox(cfg)
    try:
        confirmed = outbox.confirm_bundle(ids)
    finally:
        outbox.close()
    emit({"receipt": args.bundle_receipt, "ids": len(ids), "confirmed": confirmed,
          "already_confirmed": len(ids) - confirmed})
    return 0
