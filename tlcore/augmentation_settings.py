"""Augmentation settings: the random transformations training applies to images, frozen and validated.

Plain types only, so the settings round-trip through JSON into a run folder and back. `tlcore.config`
re-exports them beside the training settings; `tlcore.data.augment` turns them into Keras layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tlcore.settings import check_settings, setting

FILL_MODES = ("nearest", "reflect", "constant", "wrap")


@dataclass(frozen=True)
class AugmentationConfig:
    """Random transformations applied to training images.

    Each field's metadata describes it (see `tlcore.settings.SETTING_KEYS`); each transformation is drawn
    anew for every image, a flip half of the time. The defaults are mild: rotations up to 10 degrees, zoom
    up to 10%, left-right flips only. The seed's (40 degrees, 20%, upside-down flips too) cost frozen +
    augmentation several points on natural scenes, where the sky is always up (README, "Learning quality").
    """

    rotation_degrees: float = setting(
        10.0,
        "maximum rotation either way, in degrees",
        label="Rotation (degrees, either way)",
        min=0.0,
        max=180.0,
        step=5.0,
        flag="--rotation",
    )
    width_shift: float = setting(
        0.1,
        "maximum horizontal shift, as a share of the width",
        label="Horizontal shift (share of the width)",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    height_shift: float = setting(
        0.1,
        "maximum vertical shift, as a share of the height",
        label="Vertical shift (share of the height)",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    zoom: float = setting(
        0.1,
        "maximum zoom in or out, as a share (0.2: 80% to 120%)",
        label="Zoom in or out",
        min=0.0,
        max=0.9,
        step=0.05,
    )
    horizontal_flip: bool = setting(True, "random left-right flips", label="Flip left-right")
    vertical_flip: bool = setting(False, "random upside-down flips", label="Flip upside down")
    brightness: float = setting(
        0.0,
        "maximum brightness change, as a share of the value range (0 turns it off)",
        label="Brightness change",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    contrast: float = setting(
        0.0,
        "maximum contrast change, as a share (0 turns it off)",
        label="Contrast change",
        min=0.0,
        max=1.0,
        step=0.05,
    )
    fill_mode: str = setting(
        "nearest",
        "how the pixels a rotation, shift or zoom uncovers are filled",
        label="Fill the uncovered corners by",
        choices=FILL_MODES,
    )

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def is_identity(self) -> bool:
        """True when no transformation is enabled."""
        return not (
            self.rotation_degrees
            or self.width_shift
            or self.height_shift
            or self.zoom
            or self.horizontal_flip
            or self.vertical_flip
            or self.brightness
            or self.contrast
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AugmentationConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown augmentation settings {unknown}. Expected some of {sorted(known)}.")
        return cls(**values)
