"""Settings and counts in words: plurals, the augmentation summary, the size a backbone starts at."""

from __future__ import annotations

import re

from tlcore import wording
from tlcore.config import AugmentationConfig


def test_counts_take_the_right_number():
    assert [wording.count(number, "photo") for number in (0, 1, 2)] == ["0 photos", "1 photo", "2 photos"]
    assert wording.count(1, "class", "classes") == "1 class" and wording.count(3, "class", "classes") == "3 classes"


def test_the_augmentation_summary_is_words_not_raw_values():
    text = wording.augmentation(AugmentationConfig(rotation_degrees=40, zoom=0.2, vertical_flip=True))
    assert text == (
        "rotation up to 40°, shift up to 10% left or right and 10% up or down, zoom in or out up to 20%, "
        "flips left-right and upside down; edges filled with the nearest pixels"
    )
    assert "True" not in text and "0.0" not in text
    flips_only = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0, vertical_flip=False)
    assert wording.augmentation(flips_only) == "flips left-right"
    vertical_shift_only = AugmentationConfig(**{**flips_only.to_dict(), "height_shift": 0.15})
    assert wording.augmentation(vertical_shift_only) == (
        "shift up to 15% up or down, flips left-right; edges filled with the nearest pixels"
    )
    assert wording.augmentation(AugmentationConfig(**{**flips_only.to_dict(), "horizontal_flip": False})) == "none"


def test_the_default_preset_starts_efficientnet_lite0_at_its_own_size():
    assert wording.preset_size("efficientnet_lite0") == 160
    assert wording.preset_size("vgg16") is None


def _texts_with_either_number(path) -> list[str]:
    """The string literals of a source file that hedge a plural, "image(s)"."""
    import io
    import re
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    strings = [token for token in tokens if token.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1))]
    return [f"{path}:{token.start[0]}: {token.string}" for token in strings if re.search(r"\w\(s\)", token.string)]


def test_no_message_of_the_package_or_the_app_says_image_s():
    """Counts go through wording.count ("1 image", "3 images"), never "image(s)"."""
    from tests.helpers.paths import PROJECT_ROOT

    sources = [*PROJECT_ROOT.glob("tlcore/**/*.py"), *PROJECT_ROOT.glob("views/*.py"), *PROJECT_ROOT.glob("pages/*.py")]
    assert len(sources) > 50
    assert [text for path in sources for text in _texts_with_either_number(path)] == []


def test_the_scan_says_one_image_and_one_class_folder_in_the_singular(tmp_path, small_catsdogs):
    import shutil

    import pytest

    from tlcore.data import folders
    from tlcore.data.dataset import DatasetError

    photo = sorted((small_catsdogs / "train" / "cats").iterdir())[0]
    for name in ("cats", "dogs"):
        (tmp_path / "flat" / name).mkdir(parents=True)
        shutil.copy2(photo, tmp_path / "flat" / name / photo.name)
    shutil.copy2(photo, tmp_path / "flat" / "dogs" / "second.jpg")
    with pytest.raises(DatasetError, match=r"Class 'cats' has 1 usable image; at least 2"):
        folders.scan(tmp_path / "flat")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    shutil.copy2(photo, tmp_path / "one" / "cats" / photo.name)
    shutil.copy2(photo, tmp_path / "one" / "cats" / "second.jpg")
    with pytest.raises(DatasetError, match=r"found 1 class folder \(cats\); at least 2"):
        folders.scan(tmp_path / "one")
    (tmp_path / "flat" / "birds").mkdir()
    (tmp_path / "flat" / "birds" / "notes.txt").write_text("no photo here")
    shutil.copy2(photo, tmp_path / "flat" / "cats" / "second.jpg")
    with pytest.raises(DatasetError, match=r"1 class folder \['birds'\] contains no usable image"):
        folders.scan(tmp_path / "flat")


def test_strategy_texts_hold_no_formula_letters():
    # "by default K augmented views" reached the Train page: K is the docstring's name, not a number a person knows.
    from tlcore.strategies import STRATEGIES

    texts = [text for strategy in STRATEGIES.values() for text in (strategy.description, strategy.phase)]
    assert not [text for text in texts if re.search(r"\b(?!A\b|I\b)[A-Z]\b", text)], texts


def test_the_train_pages_toggles_have_labels_short_enough_for_their_column():
    """A toggle's label is cut with an ellipsis past its third of the options row (seen in the browser at 1400 px:
    "Frozen + augmentation continues f…"); the help tooltip holds the explanation."""
    from tlcore.config import TrainConfig
    from tlcore.settings import setting_type, settings_of

    toggles = [item for item in settings_of(TrainConfig) if item.metadata.get("page") and setting_type(item) is bool]
    assert toggles, "the page has toggles"
    too_long = {item.name: item.metadata["label"] for item in toggles if len(item.metadata["label"]) > 30}
    assert too_long == {}
