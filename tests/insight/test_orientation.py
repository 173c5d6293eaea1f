"""The flip check measures, on the photos, whether a flip suits a data set.

Real photos taken upright (../shared scenes) must get "vertical flips off" and "left-right flips on";
the offline demo's textures, which have no up, must get both flips on. A check that always answered one
way, or scored a photo against a model that saw its flipped copy, would fail one of them.
"""

from __future__ import annotations

import pytest

from tests.helpers.cli import last_json, tlcore
from tests.helpers.paths import shared_path
from tlcore.data import demo, folders
from tlcore.insight import orientation

PER_CLASS = 20


@pytest.fixture(scope="module")
def scenes_suggestions():
    return {
        suggestion.setting: suggestion
        for suggestion in orientation.suggest_flips(
            folders.scan(shared_path() / "data" / "scenes"), per_class=PER_CLASS
        )
    }


def test_upright_photos_get_no_vertical_flips_and_left_right_flips(scenes_suggestions):
    vertical, horizontal = scenes_suggestions["vertical_flip"], scenes_suggestions["horizontal_flip"]
    assert vertical.images == 6 * PER_CLASS
    assert not vertical.suggested and vertical.accuracy >= orientation.TELLING_APART_LIMIT
    assert vertical.reason.startswith("off, because ") and f"{vertical.accuracy:.0%}" in vertical.reason
    assert horizontal.suggested and horizontal.accuracy < orientation.TELLING_APART_LIMIT
    assert orientation.train_flag(vertical) == "--no-vertical-flip"
    assert orientation.train_flag(horizontal) == "--horizontal-flip"


def test_textures_without_an_up_get_both_flips(tmp_path):
    textures = folders.scan(demo.build_offline_demo(tmp_path / "textures"))
    suggestions = orientation.suggest_flips(textures, per_class=PER_CLASS)
    assert [suggestion.setting for suggestion in suggestions] == ["vertical_flip", "horizontal_flip"]
    assert all(suggestion.suggested for suggestion in suggestions), suggestions


def test_the_sample_is_per_class_and_seeded(tmp_path):
    textures = folders.scan(demo.build_offline_demo(tmp_path / "textures"))
    first = orientation.sample_paths(textures, 5, seed=1)
    assert len(first) == 5 * textures.num_classes
    assert first == orientation.sample_paths(textures, 5, seed=1) != orientation.sample_paths(textures, 5, seed=2)
    with pytest.raises(ValueError, match="per_class must be an integer >= 3, received 2"):
        orientation.sample_paths(textures, 2, seed=1)


def test_an_image_size_a_run_would_refuse_is_refused_before_any_photo_is_decoded(small_catsdogs, monkeypatch):
    # suggest --image-size 100000 decoded photos at that size until memory ran out; a run refuses it up front.
    decoded = []
    monkeypatch.setattr(orientation, "load_resized", lambda *arguments: decoded.append(arguments))
    with pytest.raises(ValueError, match="image_size"):
        orientation.suggest_flips(folders.scan(small_catsdogs), image_size=100_000)
    assert decoded == []


def test_a_suggestion_is_validated():
    with pytest.raises(ValueError, match="setting must be one of"):
        orientation.FlipSuggestion("rotation", True, 0.5, 10, "")
    with pytest.raises(ValueError, match=r"accuracy must lie in \[0, 1\], received 1.5"):
        orientation.FlipSuggestion("vertical_flip", True, 1.5, 10, "")


def test_cli_suggest_prints_json_and_the_train_flags(small_catsdogs, tmp_path):
    runs = ("--runs-dir", str(tmp_path))
    result = tlcore("suggest", "--data", str(small_catsdogs), "--per-class", "12", *runs, "--json")
    assert result.returncode == 0, result.stderr
    answer = last_json(result)
    assert [flip["setting"] for flip in answer["flips"]] == ["vertical_flip", "horizontal_flip"]
    assert answer["flags"][0] == "--no-vertical-flip", answer
    assert answer["flips"][0]["images"] == 24


def test_cli_suggest_names_a_missing_folder(tmp_path):
    result = tlcore("suggest", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert str(tmp_path / "nowhere") in result.stderr
