"""tlcore.drafts: the settings a new session of the app starts from."""

from __future__ import annotations

import json

import pytest

from tlcore import drafts
from tlcore.drafts import SettingsDraft


def test_a_draft_comes_back_as_it_was_saved(tmp_path):
    draft = SettingsDraft(
        preset="quality",
        train={"backbone": "efficientnet_lite1", "image_size": 240, "epochs": 3, "learning_rate": 2e-5},
        augmentation={"rotation_degrees": 25.0, "vertical_flip": True},
    )
    drafts.save(tmp_path / "data", draft)  # The data folder is made when it is missing.
    assert drafts.load(tmp_path / "data") == draft


def test_no_file_gives_an_empty_draft(tmp_path):
    draft = drafts.load(tmp_path)
    assert draft.is_empty and draft == SettingsDraft()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"preset": "fastest"}),
        json.dumps({"train": {"epochs": 0}}),
        json.dumps({"train": {"backbone": "efficientnet_lite0", "alpha": 0.5}}),  # Alpha is MobileNet's only.
        json.dumps({"train": {"colour": "blue"}}),
        json.dumps({"train": ["epochs", 3]}),
        json.dumps({"augmentation": {"rotation_degrees": 400.0}}),
    ],
)
def test_a_damaged_or_refused_file_gives_an_empty_draft_so_the_form_starts_from_the_preset(tmp_path, text):
    (tmp_path / drafts.DRAFT_FILE).write_text(text, encoding="utf-8")
    assert drafts.load(tmp_path).is_empty


def test_a_draft_refuses_what_training_would_refuse_and_says_what_it_received():
    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1, received 0"):
        SettingsDraft(train={"epochs": 0})
    with pytest.raises(ValueError, match=r"Unknown train settings \['data_dir'\]"):
        SettingsDraft(train={"data_dir": "/elsewhere"})  # The data set is the library's, not the form's.
    with pytest.raises(ValueError, match=r"preset must be one of .*received 'fastest'"):
        SettingsDraft(preset="fastest")


def test_the_draft_holds_every_setting_the_train_page_draws_and_the_strategy():
    # The form's widgets are keyed train_<field> for these fields (views.train_options.PAGE_FIELDS).
    from views.train_options import PAGE_FIELDS

    assert set(drafts.TRAIN_FIELDS) == set(PAGE_FIELDS)
