"""The settings last chosen in the app, kept for its next session.

A Streamlit session ends with a reload or a closed tab, and with it the Train page's form and the Data page's
augmentation sliders. The runs and the data set library outlive it, and so does this: one JSON file in the
app's data folder (`settings.json`) holds the Train page's preset, the settings changed from it and the
augmentation as last changed. A new session starts from it, as it reopens the library's last data set; a
setting the file does not hold comes from the preset. A session saves what it changed, setting by setting
(`apply_changes`): of two tabs open at once, each one's changes are kept, and where both changed the same
setting, the later change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcore.augmentation_settings import AugmentationConfig
from tlcore.config import PRESETS, TrainConfig, from_preset, preset_augmentation
from tlcore.files import read_json_object, write_json
from tlcore.settings import settings_of

DRAFT_FILE = "settings.json"
# The TrainConfig fields the Train page sets (field metadata "page"): the strategy and every setting on it.
TRAIN_FIELDS = tuple(item.name for item in settings_of(TrainConfig) if item.metadata.get("page") is not None)
AUGMENTATION_FIELDS = tuple(item.name for item in dataclasses.fields(AugmentationConfig))


@dataclass(frozen=True)
class SettingsDraft:
    """The settings a session had: what the next one starts from. Read-only, like its dicts.

    Attributes:
        preset: the Train page's preset (a key of PRESETS), or None when no session chose one.
        train: TrainConfig field -> value, for some fields of TRAIN_FIELDS; with the preset's values for the
            others they must make a valid TrainConfig, so the form never starts from one a run would refuse.
        augmentation: AugmentationConfig field -> value, some or all of them (the preset's for the others).
    """

    preset: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    augmentation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, received {self.preset!r}.")
        for name, values, known in (
            ("train", self.train, TRAIN_FIELDS),
            ("augmentation", self.augmentation, AUGMENTATION_FIELDS),
        ):
            if not isinstance(values, dict):
                raise ValueError(f"{name} must be a dict of settings, received {type(values).__name__}.")
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise ValueError(f"Unknown {name} settings {unknown}. Expected some of {sorted(known)}.")
        # Each raises ValueError (or TypeError, for a value of the wrong kind) naming what it refuses.
        from_preset(self.preset or "default", data_dir="settings draft", **self.train)
        preset_augmentation(self.preset or "default", self.augmentation)

    @property
    def is_empty(self) -> bool:
        """Whether it holds nothing: no session saved settings yet."""
        return self.preset is None and not self.train and not self.augmentation

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "train": dict(self.train), "augmentation": dict(self.augmentation)}


def apply_changes(stored: SettingsDraft, before: SettingsDraft, after: SettingsDraft) -> SettingsDraft:
    """`stored` with the settings that changed from `before` to `after`, one session's settings then and now.

    Setting by setting, so that what another session saved meanwhile to other settings stays. A setting that
    `after` holds and `before` did not is no change: a page filling its form from the preset for the first time
    chose nothing. One that `after` no longer holds (a width multiplier, once the backbone has none) goes.

    Raises:
        ValueError: when the changes and the other session's settings make a combination a run would refuse
            (the caller then saves `after` whole).
    """

    def changed(stored_values: dict, before_values: dict, after_values: dict) -> dict:
        dropped = set(before_values) - set(after_values)
        values = {name: value for name, value in stored_values.items() if name not in dropped}
        for name, value in after_values.items():
            if name in before_values and before_values[name] != value:
                values[name] = value
        return values

    preset_changed = before.preset is not None and after.preset != before.preset
    return SettingsDraft(
        preset=after.preset if preset_changed else stored.preset,
        train=changed(stored.train, before.train, after.train),
        augmentation=changed(stored.augmentation, before.augmentation, after.augmentation),
    )


def draft_path(data_dir: str | os.PathLike) -> Path:
    """The draft's file in the app's data folder."""
    return Path(data_dir) / DRAFT_FILE


def load(data_dir: str | os.PathLike) -> SettingsDraft:
    """The settings last saved in this data folder; an empty draft when there are none.

    A file that is damaged, or holds a setting or combination TrainConfig refuses (written by another version,
    edited by hand), gives an empty draft too: the form then starts from the preset, as it did before any draft.
    """
    values = read_json_object(draft_path(data_dir))
    try:
        return SettingsDraft(
            preset=values.get("preset"),
            train=values.get("train") or {},
            augmentation=values.get("augmentation") or {},
        )
    except (ValueError, TypeError):
        return SettingsDraft()


def save(data_dir: str | os.PathLike, draft: SettingsDraft) -> None:
    """Writes the draft (atomically: a session reading it meanwhile reads the old or the new one)."""
    write_json(draft_path(data_dir), draft.to_dict())
