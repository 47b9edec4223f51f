"""Checkpoint kiosk firmware: read a QR code, decide green/black/invalid, give feedback, journal, publish."""

__version__ = "0.1.0"
