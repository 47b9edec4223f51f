"""`kiosk run`: the service. With a replay camera it stops at the end of input or after --max-frames."""
from __future__ import annotations

import logging
import signal
from types import FrameType

from kiosk.commands import Args, Parser, Subparsers, emit, load_config

log = logging.getLogger(__name__)


def register(sub: Subparsers, common: Parser) -> None:
    p = sub.add_parser("run", parents=[common], help="run the kiosk (the systemd service runs this)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N camera frames")
    p.set_defaults(func=run)


def run(args: Args) -> int:
    from kiosk.app import App
    from kiosk.watchdog import Notifier, Watchdog

    cfg = load_config(args)
    logging.getLogger().setLevel(cfg.service.log_level.upper() if not args.verbose else logging.DEBUG)
    app = App(cfg)
    notifier = Notifier()
    watchdog = Watchdog(notifier, interval=None if cfg.service.watchdog else 0.0)  # 0: status lines, no pings

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        app.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("kiosk running: site %s device %s, mode %s, direction %s",
             cfg.site.id, cfg.site.device, cfg.site.mode, cfg.site.direction)
    result = app.run(max_frames=args.max_frames, watchdog=watchdog)
    notifier.stopping()
    emit({"stopped": result.stopped_because, **result.counters, "held_at_stop": result.held_at_stop})
    # 74 (EX_IOERR): check-ins the journal could not take by the end; systemd and the operator see it.
    return 74 if result.held_at_stop else 0
