"""The choices a person picks for a file on the Data page, and the cleaning decisions they stand for."""

from __future__ import annotations

import pytest

from tlcore.data import cleaning


def test_every_choice_round_trips_through_its_decision():
    options = cleaning.choices(["cats", "dogs"])
    assert options == ["keep", "drop", "relabel to cats", "relabel to dogs"]
    for option in options:
        assert cleaning.choice_of(cleaning.decision_for("/photos/a.jpg", option)) == option
    assert cleaning.decision_for("/photos/a.jpg", "relabel to dogs") == cleaning.Decision(
        "/photos/a.jpg", "relabel", "dogs"
    )
    assert cleaning.choice_of(None) == "keep"


def test_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="action must be one of"):
        cleaning.decision_for("/photos/a.jpg", "burn")
