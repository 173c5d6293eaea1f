"""Settings and counts in words, as the app's pages print them. No Streamlit."""

from __future__ import annotations

from typing import Any

from tlcore.config import PRESETS, AugmentationConfig, TrainConfig

# What fills the pixels a shift, rotation or zoom brings in from outside the image.
FILLS = {
    "nearest": "the nearest pixels",
    "reflect": "a mirror image",
    "constant": "black",
    "wrap": "the opposite side",
}


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 photo', '3 photos', '0 files': a count with its noun in the right number.

    Args:
        number: how many.
        noun: the singular.
        plural: the plural, where it is not the singular plus "s".
    """
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def setting_value(value: Any) -> str:
    """A setting's value in a sentence: on/off for a flag, a float without trailing zeros (0.002, 2e-05)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def augmentation(settings: AugmentationConfig) -> str:
    """'rotation up to 40°, shift up to 10% left or right and 10% up or down, ...' or 'none'; switched-off
    transforms left out. Each shift and the rotation go either way (Keras draws them from -factor to +factor)."""
    parts = []
    if settings.rotation_degrees:
        parts.append(f"rotation up to {settings.rotation_degrees:g}°")
    shifts = [
        f"{share:.0%} {directions}"
        for share, directions in ((settings.width_shift, "left or right"), (settings.height_shift, "up or down"))
        if share
    ]
    if shifts:
        parts.append("shift up to " + " and ".join(shifts))
    if settings.zoom:
        parts.append(f"zoom in or out up to {settings.zoom:.0%}")
    flips = [
        name for name, on in (("left-right", settings.horizontal_flip), ("upside down", settings.vertical_flip)) if on
    ]
    if flips:
        parts.append("flips " + " and ".join(flips))
    if settings.brightness:
        parts.append(f"brightness up to ±{settings.brightness:.0%}")
    if settings.contrast:
        parts.append(f"contrast up to ±{settings.contrast:.0%}")
    if not parts:
        return "none"
    # The fill only matters where a transform moves pixels in from outside the image.
    moves = settings.rotation_degrees or settings.width_shift or settings.height_shift or settings.zoom
    return ", ".join(parts) + (
        f"; edges filled with {FILLS.get(settings.fill_mode, settings.fill_mode)}" if moves else ""
    )


def preset_size(backbone: str) -> int | None:
    """The image size the default preset trains a backbone at, where it sets one (None: the backbone's own)."""
    values = {"backbone": TrainConfig.backbone, "image_size": TrainConfig.image_size, **PRESETS["default"]}
    return values["image_size"] if values["backbone"] == backbone else None
