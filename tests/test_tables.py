"""Tables instead of if-chains: driver names (kiosk.driver_names) and code types (kiosk.codes.CODE_TYPES)."""
import importlib

import pytest

from kiosk import config, driver_names
from kiosk.app import build_camera, build_decoder, build_display, build_reader
from kiosk.codes import CODE_TYPES, classify
from kiosk.model import BADGE, CCCD, DCC, PERSONAL_QR

FAMILIES = [("camera", "type", driver_names.CAMERAS), ("reader", "type", driver_names.READERS),
            ("decoder", "type", driver_names.DECODERS), ("display", "type", driver_names.DISPLAYS),
            ("gpio", "pin_factory", driver_names.PIN_FACTORIES)]
PERSONAL = "079090000001|NGUYEN VAN THU|1990-12-01|0|163000000000000001|<1<DN4790000000001<0900000001"


@pytest.mark.parametrize("table", [t for *_, t in FAMILIES])
def test_every_driver_name_names_a_builder_in_drivers(table):
    for name, driver in table.items():
        if driver is not None:
            builder = getattr(importlib.import_module(f"drivers.{driver.module}"), driver.builder, None)
            assert callable(builder), f"{name}: drivers.{driver.module}.{driver.builder} is not a function"


@pytest.mark.parametrize("section, key, table", FAMILIES)
def test_the_configuration_offers_exactly_the_table_names(section, key, table):
    assert config.SCHEMA[section][key].choices == tuple(table)
    with pytest.raises(config.ConfigError, match="is not one of"):
        config.load(data={section: {key: "not-a-driver"}})


def test_builders_go_through_the_tables(tmp_path):
    cfg = config.load(data={"camera": {"type": "none"}, "reader": {"type": "none"}, "decoder": {"type": "zbar"},
                            "display": {"type": "png", "path": str(tmp_path / "screens"), "width": 128,
                                        "height": 64}})
    assert build_camera(cfg) is None and build_reader(cfg) is None  # "none": no device
    assert build_decoder(cfg).name == "zbar"
    display = build_display(cfg)
    assert type(display).__name__ == "PngDisplay" and display.size == (128, 64)


def test_code_types_keep_the_spec_order():
    assert [c.kind for c in CODE_TYPES] == [DCC, BADGE, PERSONAL_QR, CCCD]


def test_the_first_matching_code_type_reads_the_payload():
    assert classify("HC1:" + PERSONAL).kind == DCC  # the HC1: prefix wins over a personal QR shape
    badge = classify(PERSONAL, badge_prefix="0790")  # the badge prefix wins over the personal QR shape
    assert (badge.kind, badge.error, badge.detail) == (BADGE, "malformed", "badge_id")
    assert classify(PERSONAL).kind == PERSONAL_QR
    seven = classify("079090000001||Nguyễn Văn Thử|01121990|Nam|Số 1 Phường 2|01012021")
    assert (seven.kind, seven.ok) == (CCCD, True)
