"""Adapters from the kiosk ports to hardware and third-party libraries; each module has `create(cfg)`."""
