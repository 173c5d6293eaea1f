"""A run that trains several stages says what each one added, and which stage beat the saved model.

The numbers below are the quality preset's scenes run (seed 1337) and the classic cats/dogs run: augmentation
that costs two points must be called a cost, one within half a point no clear difference, and a saved
fine-tuned model 2.2 points under feature extraction's must name feature extraction.
"""

from __future__ import annotations

import argparse
import json

import pytest

from tlcore.cli_commands import _train_report
from tlcore.config import AugmentationConfig, TrainConfig
from tlcore.insight import stage_steps
from tlcore.runs import store

SCENES = {
    "feature_extraction": {"val_accuracy": 0.926, "stopped": False},
    "frozen_augmented": {"val_accuracy": 0.906, "stopped": False},
    "fine_tuning": {"val_accuracy": 0.904, "stopped": False},
}
CATSDOGS = {
    "feature_extraction": {"val_accuracy": 0.974},
    "frozen_augmented": {"val_accuracy": 0.982},
    "fine_tuning": {"val_accuracy": 0.978},
}


def test_each_step_is_a_gain_a_cost_or_no_clear_difference():
    assert [(step.stage, step.previous, step.points, step.verdict) for step in stage_steps.stage_steps(SCENES)] == [
        ("frozen_augmented", "feature_extraction", -2.0, "cost accuracy"),
        ("fine_tuning", "frozen_augmented", -0.2, "no clear difference"),
    ]
    assert [step.verdict for step in stage_steps.stage_steps(CATSDOGS)] == ["helped", "no clear difference"]
    # Half a point either way is the tie, as in the learning benchmark's targets.
    assert stage_steps.verdict(0.5) == stage_steps.verdict(-0.5) == "no clear difference"
    assert stage_steps.verdict(0.6) == "helped" and stage_steps.verdict(-0.6) == "cost accuracy"


def test_the_sentences_say_what_changed_and_which_stage_beat_the_saved_model():
    assert stage_steps.lines(SCENES, "fine_tuning") == [
        "Frozen + augmentation scored 2.0 points below feature extraction: training on augmented copies cost "
        "accuracy on these photos.",
        "Fine-tuning scored 0.2 point below frozen + augmentation, within half a point: unfreezing the top block "
        "made no clear difference on these photos.",
        "The saved model is fine-tuning's (90.4%); feature extraction's scored 2.2 points more on the same "
        "validation photos. A run of feature extraction alone, with the same settings and seed, trains that same "
        "model again from the features this run cached.",
    ]
    assert stage_steps.lines(CATSDOGS, "fine_tuning") == [
        "Frozen + augmentation scored 0.8 point above feature extraction: training on augmented copies helped on "
        "these photos.",
        "Fine-tuning scored 0.4 point below frozen + augmentation, within half a point: unfreezing the top block "
        "made no clear difference on these photos.",
    ]
    same = {"frozen_augmented": {"val_accuracy": 0.9}, "fine_tuning": {"val_accuracy": 0.9}}
    assert stage_steps.lines(same, "fine_tuning") == [
        "Fine-tuning scored the same as frozen + augmentation: unfreezing the top block made no clear difference on "
        "these photos."
    ]


def test_augmentation_that_cost_accuracy_is_named_with_where_to_change_it():
    # A person read "training on augmented copies cost accuracy" without seeing that the upside-down flip the
    # Data page's flip check had advised against was on.
    augmentation = AugmentationConfig(vertical_flip=True)
    sentences = stage_steps.lines(SCENES, "fine_tuning", augmentation=augmentation)
    assert sentences[1] == (
        "Its copies had rotation up to 10°, shift up to 10% left or right and 10% up or down, zoom in or out up to "
        "10%, flips left-right and upside down; edges filled with the nearest pixels: the Data page's flip check "
        "measures which flips suit these photos, and its preview shows what each setting does to them."
    )
    # Not when the copies helped, nor without the run's augmentation.
    assert len(stage_steps.lines(CATSDOGS, "fine_tuning", augmentation=augmentation)) == 2
    assert len(stage_steps.lines(SCENES, "fine_tuning")) == 3


def test_a_better_earlier_stage_other_than_feature_extraction_gets_no_retraining_hint():
    results = {"frozen_augmented": {"val_accuracy": 0.95}, "fine_tuning": {"val_accuracy": 0.93}}
    assert stage_steps.better_stage(results, "fine_tuning") == ("frozen_augmented", 2.0)
    # Frozen + augmentation alone would train a head of its own, not continue this run's: no promise of the same model.
    assert stage_steps.lines(results, "fine_tuning")[-1] == (
        "The saved model is fine-tuning's (93.0%); frozen + augmentation's scored 2.0 points more on the same "
        "validation photos."
    )


def test_stopped_unscored_single_and_scratch_stages_are_not_compared():
    stopped = {**SCENES, "frozen_augmented": {"val_accuracy": 0.5, "stopped": True}}
    assert stage_steps.stage_steps(stopped) == []
    partial = {**SCENES, "fine_tuning": {"val_accuracy": 0.5, "partial_epoch": True}}
    assert [step.stage for step in stage_steps.stage_steps(partial)] == ["frozen_augmented"]
    unscored = {**SCENES, "feature_extraction": {"val_accuracy": None}}
    assert [step.stage for step in stage_steps.stage_steps(unscored)] == ["fine_tuning"]
    assert stage_steps.lines({"feature_extraction": {"val_accuracy": 0.9}}, "feature_extraction") == []
    assert stage_steps.lines({"scratch": {"val_accuracy": 0.7}}, "scratch") == []
    # Which stage the model holds unknown (a run cut short without a believed record): no claim about it.
    assert stage_steps.better_stage(SCENES, None) is None
    assert stage_steps.better_stage(SCENES, "feature_extraction") is None


def test_a_step_refuses_stages_out_of_order_and_unknown_verdicts():
    with pytest.raises(ValueError, match="must be one of"):
        stage_steps.StageStep("fine_tuning", "feature_extraction", 1.0, "helped")
    with pytest.raises(ValueError, match="verdict must be one of"):
        stage_steps.StageStep("fine_tuning", "frozen_augmented", 1.0, "better")
    with pytest.raises(ValueError, match="verdict must be 'helped' for 5.0 points"):
        stage_steps.StageStep("fine_tuning", "frozen_augmented", 5.0, "cost accuracy")
    with pytest.raises(ValueError, match="finite"):
        stage_steps.StageStep("fine_tuning", "frozen_augmented", float("nan"), "helped")


def test_train_prints_the_steps_and_its_json_carries_them(tmp_path):
    run = store.create(TrainConfig(data_dir=str(tmp_path), strategy="all"), tmp_path / "runs")
    status = {"state": "done", "results": {stage: {**result, "seconds": 10} for stage, result in SCENES.items()}}
    text = _train_report(argparse.Namespace(json=False), run, status, is_chief=True)
    assert "  Frozen + augmentation scored 2.0 points below feature extraction" in text
    assert "  The saved model is fine-tuning's (90.4%); feature extraction's scored 2.2 points more" in text
    report = json.loads(_train_report(argparse.Namespace(json=True), run, status, is_chief=True))
    assert [(step["stage"], step["points"], step["verdict"], step["tie"]) for step in report["stage_steps"]] == [
        ("frozen_augmented", -2.0, "cost accuracy", 0.5),
        ("fine_tuning", -0.2, "no clear difference", 0.5),
    ]


def test_on_a_small_validation_set_two_photos_either_way_count_as_no_difference(tmp_path):
    # 40 validation photos: one photo is 2.5 points, so the tie is 5 points instead of half a point.
    assert stage_steps.tie_points(40) == 5.0
    assert stage_steps.tie_points(595) == stage_steps.tie_points(None) == stage_steps.tie_points(0) == 0.5
    results = {"feature_extraction": {"val_accuracy": 0.9}, "frozen_augmented": {"val_accuracy": 0.85}}
    assert stage_steps.lines(results, "frozen_augmented", 40) == [
        # "5.0 points below, within 5.0 points" read as a contradiction: the tie is said in photos.
        "Frozen + augmentation scored 5.0 points below feature extraction (2 of the 40 validation photos; up to 2 "
        "count as no difference): training on augmented copies made no clear difference on these photos."
    ]
    one_photo = {**results, "frozen_augmented": {"val_accuracy": 0.925}}
    assert "2.5 points above feature extraction (1 of the 40 validation photos; up to 2 count" in "".join(
        stage_steps.lines(one_photo, "frozen_augmented", 40)
    )
    # The count is kept whatever the tie (the JSON report's steps carry it); half a point is said in points.
    close = {**results, "frozen_augmented": {"val_accuracy": 0.898}}
    [step] = stage_steps.stage_steps(close, 595)
    assert (step.validation_images, step.tie) == (595, 0.5) and "within half a point" in stage_steps.describe(step)
    assert stage_steps.stage_steps(close, 0)[0].validation_images is None
    # Without the count, a tie wider than half a point is said in points.
    step = stage_steps.StageStep("frozen_augmented", "feature_extraction", -5.0, "no clear difference", 5.0)
    assert "5.0 points below feature extraction, within 5.0 points:" in stage_steps.describe(step)
    with pytest.raises(ValueError, match="validation_images must be a positive integer or None, received 0"):
        stage_steps.StageStep("frozen_augmented", "feature_extraction", 1.0, "helped", 0.5, 0)
    assert stage_steps.stage_steps(results, 595)[0].verdict == "cost accuracy"
    three_photos = {**results, "frozen_augmented": {"val_accuracy": 0.825}}
    assert stage_steps.stage_steps(three_photos, 40)[0].verdict == "cost accuracy"
    assert stage_steps.better_stage(three_photos, "frozen_augmented", 40) == ("feature_extraction", 7.5)

    # A run reads its count from dataset.json; a damaged record means the count is unknown, not an error.
    run = store.create(TrainConfig(data_dir=str(tmp_path), strategy="all"), tmp_path / "runs")
    assert stage_steps.validation_images(run) is None
    (run.path / "dataset.json").write_text(json.dumps({"splits": {"validation": {"cats": 20, "dogs": 20}}}))
    assert stage_steps.validation_images(run) == 40
    run.set_status("done")
    assert stage_steps.for_run(run, results) == stage_steps.lines(results, "frozen_augmented", 40)
    for damaged in ('{"splits": {"validation": {"cats": "20"}}}', '{"splits": [1]}', "[damaged"):
        (run.path / "dataset.json").write_text(damaged)
        assert stage_steps.validation_images(run) is None
