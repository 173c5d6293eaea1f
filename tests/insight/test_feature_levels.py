"""The feature-levels check measures, on the training photos, whether stacking the base's last stages suits a data set.

Natural scenes (../shared scenes) must get the stack, whose whole runs score higher there; cats and dogs, where
whole runs with the stack score a little lower, must keep the base's output alone (benchmarks/RESULTS.md). A
check that always answered one way, or compared the two on different photos or folds, would fail one of them.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.paths import shared_path
from tlcore import cli
from tlcore.config import from_preset
from tlcore.data import folders
from tlcore.insight import feature_levels


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("levels_runs")


@pytest.fixture(scope="module")
def scenes(runs_dir):
    dataset = folders.scan(shared_path() / "data" / "scenes")
    return dataset, feature_levels.suggest_feature_levels(dataset, runs_dir=runs_dir)


def test_natural_scenes_get_the_stacked_levels(scenes):
    dataset, suggestion = scenes
    assert suggestion.images == len(dataset.paths("train")) == 1787
    assert suggestion.levels == suggestion.stacked_levels == 3
    # Floors under what was measured over fold seeds (benchmarks/RESULTS.md).
    assert suggestion.stacked_accuracy - suggestion.single_accuracy >= 0.005
    assert suggestion.single_accuracy >= 0.88
    assert suggestion.p_value <= feature_levels.SIGNIFICANCE
    assert suggestion.only_stacked > suggestion.only_single
    assert suggestion.reason.startswith("3, because ") and f"{suggestion.stacked_accuracy:.1%}" in suggestion.reason
    assert suggestion.train_flag() == "--feature-levels 3"


def test_cats_and_dogs_keep_the_base_output_alone(catsdogs_subset, runs_dir):
    # 400 photos per class: the whole set gives the same answer at every fold seed (benchmarks/RESULTS.md).
    dataset = folders.scan(catsdogs_subset("levels_catsdogs", train=400, validation=1))
    suggestion = feature_levels.suggest_feature_levels(dataset, runs_dir=runs_dir)
    assert suggestion.images == 800
    assert suggestion.levels == 1
    assert suggestion.single_accuracy >= 0.96 and suggestion.stacked_accuracy >= 0.96
    assert suggestion.p_value > feature_levels.SIGNIFICANCE
    assert suggestion.reason.startswith("1, because ") and "the base's output alone stays" in suggestion.reason


def test_a_run_with_the_suggested_levels_reuses_the_features_the_check_extracted(scenes, runs_dir):
    from tlcore.models import backbones, heads
    from tlcore.training import extraction, training_context

    dataset, suggestion = scenes
    config = from_preset(
        "default", data_dir=dataset.root, strategy="all", seed=7, feature_levels=suggestion.levels, epochs=2
    )
    context = training_context.TrainingContext(config=config, dataset=dataset, stream=None, runs_dir=str(runs_dir))
    try:
        base = heads.build_frozen_base(config)
        preprocess = backbones.preprocessing_layer(config.backbone)
        _, _, from_cache = extraction.extract_features(context, base, preprocess, splits=("train",))
    finally:
        context.close()
    assert from_cache


def test_the_chance_of_a_lead_is_mcnemars_exact_one_sided_p_value():
    assert feature_levels.chance_of_lead(0, 0) == 1.0
    # Three photos to none: the normal approximation's statistic (1.73) would pass 5%; exactly, 1/8 does not.
    assert feature_levels.chance_of_lead(3, 0) == 0.125
    assert feature_levels.chance_of_lead(5, 0) == 1 / 32
    assert feature_levels.chance_of_lead(0, 3) == 1.0
    # Scenes' counts at fold seed 1337: P(X >= 30) for X ~ Binomial(44, 1/2).
    assert feature_levels.chance_of_lead(30, 14) == pytest.approx(0.011314, abs=1e-6)
    with pytest.raises(ValueError, match="Counts must be >= 0, received -1 and 2"):
        feature_levels.chance_of_lead(-1, 2)


def test_a_backbone_without_stages_to_stack_is_refused_before_anything_is_extracted(small_catsdogs):
    with pytest.raises(ValueError, match="VGG16 registers no stages to stack"):
        feature_levels.suggest_feature_levels(folders.scan(small_catsdogs), backbone="vgg16")
    with pytest.raises(ValueError, match="image_size"):
        feature_levels.suggest_feature_levels(folders.scan(small_catsdogs), image_size=100_000)


def test_a_suggestion_is_validated():
    with pytest.raises(ValueError, match="levels must be 1 or stacked_levels"):
        feature_levels.LevelsSuggestion(2, 3, 0.9, 0.9, 0, 0, 10, "")
    with pytest.raises(ValueError, match=r"stacked_accuracy must be within \[0, 1\], received 1.5"):
        feature_levels.LevelsSuggestion(1, 3, 0.9, 1.5, 0, 0, 10, "")
    with pytest.raises(ValueError, match="counts of at most 10 photos together"):
        feature_levels.LevelsSuggestion(1, 3, 0.9, 0.9, 6, 5, 10, "")


def test_cli_suggest_prints_the_levels_and_their_flag(runs_dir, scenes, capsys):
    scenes_dir = str(shared_path() / "data" / "scenes")
    # Few photos for the flips: this test is about the levels, which are measured on every training photo.
    # In this process, where TensorFlow is imported and the features cached (tests/test_cli.py runs the command).
    arguments = ["suggest", "--data", scenes_dir, "--per-class", "5", "--runs-dir", str(runs_dir)]
    assert cli.main([*arguments, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["feature_levels"] == vars(scenes[1])
    assert len(answer["flags"]) == 3 and answer["flags"][-1] == "--feature-levels 3"

    assert cli.main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"feature levels: {scenes[1].reason}\n" in printed
    assert printed.rstrip().endswith(" --feature-levels 3")
