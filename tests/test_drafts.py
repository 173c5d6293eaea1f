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


def test_settings_are_checked_with_the_presets_values_for_those_the_draft_does_not_hold():
    # A width multiplier goes with MobileNet only: with the seed preset's VGG16 the draft is refused, with
    # MobileNet set in the draft itself it is not.
    SettingsDraft(preset="seed", train={"epochs": 3})
    with pytest.raises(ValueError, match=r"alpha applies to MobileNet and MobileNetV2 only"):
        SettingsDraft(preset="seed", train={"alpha": 0.5})
    SettingsDraft(preset="seed", train={"backbone": "mobilenet", "alpha": 0.5})


def test_what_one_session_changed_is_saved_over_what_another_saved_setting_by_setting():
    stored = SettingsDraft(preset="quality", train={"epochs": 3}, augmentation={"vertical_flip": True})
    # A tab opened before those were saved: it holds the default preset and its values, and moved one slider.
    before = SettingsDraft(preset="default", train={"epochs": 30, "dropout": 0.5}, augmentation={"zoom": 0.1})
    after = SettingsDraft(preset="default", train={"epochs": 30, "dropout": 0.5}, augmentation={"zoom": 0.2})
    assert drafts.apply_changes(stored, before, after) == SettingsDraft(
        preset="quality", train={"epochs": 3}, augmentation={"vertical_flip": True, "zoom": 0.2}
    )
    # The same tab choosing a preset and a dropout: its preset and its dropout now, the other tab's epochs stay.
    chosen = SettingsDraft(preset="seed", train={"epochs": 30, "dropout": 0.3}, augmentation={"zoom": 0.2})
    assert drafts.apply_changes(stored, after, chosen) == SettingsDraft(
        preset="seed", train={"epochs": 3, "dropout": 0.3}, augmentation={"vertical_flip": True}
    )


def test_settings_a_page_fills_in_for_the_first_time_are_no_change_and_one_no_longer_held_goes():
    stored = SettingsDraft(train={"epochs": 3, "backbone": "mobilenet", "alpha": 0.5})
    first_draw = SettingsDraft(train={"epochs": 30, "backbone": "mobilenet", "alpha": 0.5})
    assert drafts.apply_changes(stored, SettingsDraft(), first_draw) == stored
    # Another backbone: the width multiplier is no longer one of the session's settings.
    other_backbone = SettingsDraft(train={"epochs": 30, "backbone": "vgg16"})
    assert drafts.apply_changes(stored, first_draw, other_backbone) == SettingsDraft(
        train={"epochs": 3, "backbone": "vgg16"}
    )


def test_changes_that_do_not_go_with_another_sessions_settings_are_refused():
    stored = SettingsDraft(train={"backbone": "mobilenet", "alpha": 0.5})
    before = SettingsDraft(train={"backbone": "mobilenet", "image_size": 160})
    after = SettingsDraft(train={"backbone": "efficientnet_lite0", "image_size": 160})
    # Here alpha stays (the session never held it), and EfficientNet-Lite0 refuses it: the caller saves `after`.
    with pytest.raises(ValueError, match=r"alpha applies to MobileNet"):
        drafts.apply_changes(stored, before, after)
