"""The site's runtime state: mode and direction change at runtime without touching the configuration."""
import pytest

from kiosk.errors import DataError
from kiosk.site import SiteState


def test_update_changes_only_what_is_given_and_validates_everything_first():
    state = SiteState("health", "in")
    before = state.now
    assert state.update(direction="out").direction == "out"
    assert state.mode == "health" and before.direction == "in"  # a snapshot never changes under its reader
    for bad in ({"mode": "party"}, {"direction": None}, {"retention_days": 1}, {"mode": "trace", "direction": "up"}):
        with pytest.raises(DataError) as exc:
            state.update(**bad)
        assert exc.value.problems
        assert (state.mode, state.direction) == ("health", "out")


def test_toggle_direction_alternates():
    state = SiteState("trace", "in")
    assert [state.toggle_direction() for _ in range(3)] == ["out", "in", "out"]


def test_bad_starting_values_are_refused():
    with pytest.raises(DataError):
        SiteState("everything", "in")
