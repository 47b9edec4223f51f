"""MQTT topic names (DESIGN section 5): one device's prefix, its site's `all` prefix, and the fleet filters."""
from __future__ import annotations

from dataclasses import dataclass

from kiosk.config import Config


@dataclass(frozen=True)
class Topics:
    prefix: str
    site_prefix: str

    @classmethod
    def of(cls, cfg: Config) -> "Topics":
        return cls(cfg.prefix(), cfg.mqtt.prefix.format(site=cfg.site.id, device="all"))

    @property
    def checkin(self) -> str:
        return f"{self.prefix}/checkin"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}/telemetry"

    @property
    def ack(self) -> str:
        return f"{self.prefix}/ack"

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        """What a kiosk subscribes to: its acks, its own commands and its site's."""
        return [(self.ack, 1), (f"{self.prefix}/cmd/+", 1), (f"{self.site_prefix}/cmd/+", 1)]

    def result(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}/result"

    def command_name(self, topic: str) -> str | None:
        for base in (self.prefix, self.site_prefix):
            head = f"{base}/cmd/"
            if topic.startswith(head) and "/" not in topic[len(head):]:
                return topic[len(head):]
        return None


def checkin_filter(cfg: Config, site: str | None) -> str:
    """`kiosk/{site}/+/checkin` (site None: every site) from the configured prefix."""
    return cfg.mqtt.prefix.format(site=site or "+", device="+") + "/checkin"


def ack_topic(checkin_topic: str) -> str:
    """The device's ack topic for a check-in topic: `.../checkin` -> `.../ack`."""
    return checkin_topic[: -len("/checkin")] + "/ack"
