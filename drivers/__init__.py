"""Adapters from the kiosk ports to hardware and third-party libraries.

Each module builds its adapter from the configuration with the builder that `kiosk.driver_names` names
(usually `create(cfg)`), declared to return the port it implements so mypy checks the adapter against it."""
