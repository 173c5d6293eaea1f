"""Settings and counts in words: plurals, the augmentation summary, the size a backbone starts at."""

from __future__ import annotations

from tlcore import wording
from tlcore.config import AugmentationConfig


def test_counts_take_the_right_number():
    assert [wording.count(number, "photo") for number in (0, 1, 2)] == ["0 photos", "1 photo", "2 photos"]
    assert wording.count(1, "class", "classes") == "1 class" and wording.count(3, "class", "classes") == "3 classes"


def test_the_augmentation_summary_is_words_not_raw_values():
    text = wording.augmentation(AugmentationConfig())
    assert text == (
        "rotation up to 40°, shift up to 10% across and 10% down, zoom in or out up to 20%, "
        "flips left-right and upside down; edges filled with the nearest pixels"
    )
    assert "True" not in text and "0.0" not in text
    flips_only = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0, vertical_flip=False)
    assert wording.augmentation(flips_only) == "flips left-right"
    assert wording.augmentation(AugmentationConfig(**{**flips_only.to_dict(), "horizontal_flip": False})) == "none"


def test_the_default_preset_starts_efficientnet_lite0_at_its_own_size():
    assert wording.preset_size("efficientnet_lite0") == 160
    assert wording.preset_size("vgg16") is None
