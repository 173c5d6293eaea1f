"""The settings last chosen in the app, kept for its next session.

A Streamlit session ends with a reload or a closed tab, and with it the Train page's form and the Data page's
augmentation sliders. The runs and the data set library outlive it, and so does this: one JSON file in the
app's data folder (`settings.json`) holds the Train page's preset and settings and the augmentation as last
changed. A new session starts from it, as it reopens the library's last data set. It is one file for the app,
like the library: of two tabs changing settings at once, the last change is what a new session gets.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcore.augmentation_settings import AugmentationConfig
from tlcore.config import PRESETS, TrainConfig
from tlcore.files import read_json_object, write_json
from tlcore.settings import settings_of

DRAFT_FILE = "settings.json"
# The TrainConfig fields the Train page sets (field metadata "page"): the strategy and every setting on it.
TRAIN_FIELDS = tuple(item.name for item in settings_of(TrainConfig) if item.metadata.get("page") is not None)
AUGMENTATION_FIELDS = tuple(item.name for item in dataclasses.fields(AugmentationConfig))


@dataclass(frozen=True)
class SettingsDraft:
    """The settings a session had: what the next one starts from.

    Attributes:
        preset: the Train page's preset (a key of PRESETS), or None when no session chose one.
        train: TrainConfig field -> value, for fields of TRAIN_FIELDS; together they must make a valid
            TrainConfig (the other fields at their defaults), so the form never starts from a refused one.
        augmentation: AugmentationConfig field -> value, some or all of them.
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
        TrainConfig(data_dir="settings draft", **self.train)
        AugmentationConfig(**self.augmentation)

    @property
    def is_empty(self) -> bool:
        return self.preset is None and not self.train and not self.augmentation

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "train": dict(self.train), "augmentation": dict(self.augmentation)}


def draft_path(data_dir: str | os.PathLike) -> Path:
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
