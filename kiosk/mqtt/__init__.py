"""The one home of paho-mqtt: client setup (TLS, credentials), connect-or-explain, topics, backoff, the
kiosk's connection and drain, the downlink envelope and the installer probes.

Nothing outside this package imports paho. The device side (`Uplink`) and the fleet side (`kiosk.fleet`:
collector, tail, console) both build their clients with `kiosk.mqtt.client`.
"""
