"""What the app says about runs: the saved model's accuracy as the headline, the best stage beside it."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from tlcore import files
from tlcore.config import TrainConfig
from tlcore.runs import catalog, store

# A 1 -> 2 -> 3 run whose first stage peaked above the fine-tuned model it saved.
SEQUENCE_SUMMARY = {
    "results": {
        "feature_extraction": {"val_accuracy": 0.9, "best_val_accuracy": 0.92, "epochs": 2, "seconds": 3},
        "frozen_augmented": {"val_accuracy": 0.8, "best_val_accuracy": 0.85, "epochs": 2, "seconds": 5},
        "fine_tuning": {"val_accuracy": 0.75, "best_val_accuracy": 0.8, "epochs": 2, "seconds": 9},
    },
    "final_stage": "fine_tuning",
    "seconds": 17,
}


def sequence_run(runs_dir: Path, data_dir: Path, summary: dict = SEQUENCE_SUMMARY) -> store.Run:
    """A done 1 -> 2 -> 3 run folder with the summary given and one epoch record per stage peak."""
    run = store.create(TrainConfig(data_dir=str(data_dir), strategy="all"), runs_dir)
    for epoch, (stage, result) in enumerate(summary["results"].items(), 1):
        run.append_metrics({"stage": stage, "epoch": epoch, "val_accuracy": result["best_val_accuracy"]})
    files.write_json(run.path / "summary.json", summary)
    run.set_status("done")
    return run


def test_the_headline_is_the_saved_models_accuracy_and_the_best_stage_is_named_beside_it(tmp_path):
    row = catalog.describe(sequence_run(tmp_path / "runs", tmp_path))
    assert row["accuracy"] == 0.75, "the fine-tuned model that model.keras holds, not stage 1's peak"
    assert (row["best_stage"], row["best_stage_accuracy"]) == ("feature_extraction", 0.92)
    assert catalog.percent(row["accuracy"]) == "75.0%"
    assert catalog.best_stage_text(row) == "92.0% in 1 · Feature extraction"


def test_a_single_stage_or_queued_run_names_no_best_stage(tmp_path):
    single = {"results": {"scratch": {"val_accuracy": 0.6, "best_val_accuracy": 0.7}}, "final_stage": "scratch"}
    row = catalog.describe(sequence_run(tmp_path / "runs", tmp_path, single))
    assert row["accuracy"] == 0.6 and row["best_stage"] is None and catalog.best_stage_text(row) == "—"
    queued = catalog.describe(store.create(TrainConfig(data_dir=str(tmp_path)), tmp_path / "runs"))
    assert queued["accuracy"] is None and catalog.percent(queued["accuracy"]) == "—"


def test_predict_defaults_to_the_most_accurate_done_run_not_the_newest():
    rows = [
        {"run": "newest-stopped-scratch", "state": "stopped", "accuracy": 0.48},
        {"run": "done-unmeasured", "state": "done", "accuracy": None},
        {"run": "done-good", "state": "done", "accuracy": 0.91},
        {"run": "done-fair", "state": "done", "accuracy": 0.8},
    ]
    assert catalog.best_finished(rows) == "done-good"
    assert catalog.best_finished(rows[:2]) == "newest-stopped-scratch", "a measured model before an unmeasured one"
    assert catalog.best_finished([]) is None


def test_a_run_is_named_beside_its_id_and_the_name_can_be_removed(tmp_path):
    run = store.create(TrainConfig(data_dir=str(tmp_path)), tmp_path / "runs")
    assert catalog.rename(run, "  Lite0 at   160 px\n") == "Lite0 at 160 px"
    row = catalog.describe(store.resolve(run.id, tmp_path / "runs"))
    assert (row["run"], row["label"], catalog.compare_row(row)["name"]) == (
        run.id,
        "Lite0 at 160 px",
        "Lite0 at 160 px",
    )
    assert len(catalog.rename(run, "x" * 500)) == catalog.LABEL_MAX_CHARACTERS
    assert catalog.rename(run, "  ") is None and catalog.label(run) is None
    # A run deleted meanwhile (another tab): refused by name, and its folder is not made again for the name.
    run.set_status("done")
    catalog.delete(run)
    with pytest.raises(ValueError, match=f"Run {run.id} no longer exists"):
        catalog.rename(run, "late")
    assert not run.path.exists()


def test_deleting_a_run_removes_its_folder_but_not_the_shared_caches_and_never_a_live_run(tmp_path):
    import os

    import psutil

    runs_dir = tmp_path / "runs"
    cache = runs_dir / ".cache" / "features" / "entry"
    cache.mkdir(parents=True)
    finished = store.create(TrainConfig(data_dir=str(tmp_path)), runs_dir)
    finished.set_status("done")
    running = store.create(TrainConfig(data_dir=str(tmp_path)), runs_dir)
    running.set_status("running", pid=os.getpid(), started=psutil.Process().create_time())
    catalog.delete(finished)
    assert not finished.path.exists() and cache.is_dir()
    with pytest.raises(ValueError, match="is running"):
        catalog.delete(running)
    assert running.path.is_dir()


def test_what_transfer_bought_puts_each_run_of_the_data_set_beside_the_scratch_baseline(tmp_path):
    runs_dir, data, other = tmp_path / "runs", tmp_path / "data", tmp_path / "other"

    def done(strategy: str, data_dir: Path, accuracy: float, trainable: int, frozen: int) -> store.Run:
        run = store.create(TrainConfig(data_dir=str(data_dir), strategy=strategy), runs_dir)
        summary = {
            "results": {strategy: {"val_accuracy": accuracy, "best_val_accuracy": accuracy}},
            "final_stage": strategy,
            "seconds": 30,
            "parameters": {"trainable": trainable, "frozen": frozen, "total": trainable + frozen},
        }
        files.write_json(run.path / "summary.json", summary)
        run.set_status("done")
        return run

    transfer = done("feature_extraction", data, 0.9, 1_281, 3_413_024)
    scratch = done("scratch", data, 0.625, 120_000, 0)
    done("feature_extraction", other, 0.99, 1, 1)  # Another data set: left out.
    store.create(TrainConfig(data_dir=str(data)), runs_dir)  # Queued: no model yet, left out.
    rows, has_baseline = catalog.transfer_rows(store.list_runs(runs_dir), str(data))
    assert has_baseline and [row["run"] for row in rows] == [transfer.id, scratch.id]
    assert rows[0] == {
        "strategy": "1 · Feature extraction",
        "model": "EfficientNet-Lite0",
        "val. accuracy": "90.0%",
        "vs scratch": "+27.5 points",
        "trained parameters": "1,281",
        "frozen parameters": "3,413,024",
        "time": "30 s",
        "run": transfer.id,
    }
    assert (rows[1]["model"], rows[1]["vs scratch"]) == ("small CNN", "+0.0 points")
    rows, has_baseline = catalog.transfer_rows([transfer], str(data))
    assert not has_baseline and rows[0]["vs scratch"] == "—"


def test_a_data_set_whose_scratch_baseline_was_stopped_is_told_so_not_to_train_one(tmp_path):
    # The Train page said "No scratch baseline on this data set yet" beside a stopped one.
    runs_dir, data, other = tmp_path / "runs", tmp_path / "data", tmp_path / "other"
    assert catalog.missing_baseline_note([], str(data)) == (
        "No scratch baseline on this data set yet: train one to compare."
    )
    stopped = store.create(TrainConfig(data_dir=str(data), strategy="scratch"), runs_dir)
    stopped.set_status("stopped")
    store.create(TrainConfig(data_dir=str(other), strategy="scratch"), runs_dir).set_status("done")
    store.create(TrainConfig(data_dir=str(data), strategy="feature_extraction"), runs_dir).set_status("done")
    runs = store.list_runs(runs_dir)
    assert catalog.missing_baseline_note(runs, str(data)) == (
        f"No finished scratch baseline on this data set ({stopped.id} is stopped): resume or retrain it to compare."
    )
    queued = store.create(TrainConfig(data_dir=str(data), strategy="scratch"), runs_dir)
    assert catalog.missing_baseline_note(store.list_runs(runs_dir), str(data)) == (
        f"The scratch baseline is not finished yet ({queued.id} is queued): it is compared here once it is done."
    )
    # Stopping ends as "stopped", never "done": not on its way.
    queued.set_status("stopping", pid=os.getpid(), started=psutil.Process().create_time())
    assert catalog.missing_baseline_note(store.list_runs(runs_dir), str(data)) == (
        f"No finished scratch baseline on this data set ({queued.id} is stopping, {stopped.id} is stopped): "
        "resume or retrain one to compare."
    )
    queued.set_status("done")  # Without a summary: no accuracy, so transfer_rows has no baseline either.
    assert catalog.transfer_rows(store.list_runs(runs_dir), str(data)) == ([], False)
    assert f"{queued.id} recorded no accuracy" in catalog.missing_baseline_note(store.list_runs(runs_dir), str(data))
    summary = {"results": {"scratch": {"val_accuracy": 0.6}}, "final_stage": "scratch"}
    files.write_json(queued.path / "summary.json", summary)
    assert catalog.missing_baseline_note(store.list_runs(runs_dir), str(data)) is None


def test_a_runs_changed_settings_tell_it_apart_from_runs_alike_in_the_other_columns(tmp_path):
    # Two frozen + augmentation runs, 5 cached views against end to end, looked the same in the compare table.
    from tlcore.augmentation_settings import AugmentationConfig
    from tlcore.config import from_preset

    assert catalog.changed_settings(TrainConfig(data_dir="x").to_dict()) == ""
    config = TrainConfig(
        data_dir="x",
        strategy="frozen_augmented",
        backbone="vgg16",
        image_size=96,
        epochs=4,
        augmented_views=0,
        learning_rate=0.002,
        augmentation=AugmentationConfig(rotation_degrees=25.0, vertical_flip=True),
    ).to_dict()
    assert catalog.changed_settings(config) == (
        "epochs 4, learning rate 0.002, augmented views 0, rotation degrees 25, vertical flip on"
    ), "strategy, backbone and size have columns of their own"
    assert catalog.changed_settings(from_preset("seed", data_dir="x").to_dict()) == (
        "batch size 64, learning rate 2e-05, head flatten, continue head off"
    )
    older = {key: value for key, value in config.items() if key != "augmented_views"}  # Before the setting existed.
    assert "augmented views" not in catalog.changed_settings(older)
    run = store.create(TrainConfig(data_dir=str(tmp_path), epochs=4), tmp_path / "runs")
    assert catalog.compare_row(catalog.describe(run))["settings changed"] == "epochs 4"


def test_same_folder_takes_a_damaged_configs_data_dir_for_no_folder(tmp_path):
    # A run whose config.json held "data_dir": 5 made the Library tab and "What transfer bought" raise.
    assert catalog.same_folder(str(tmp_path), tmp_path) and catalog.same_folder(tmp_path / "a" / "..", str(tmp_path))
    assert not catalog.same_folder(5, str(tmp_path)) and not catalog.same_folder(None, str(tmp_path))
    assert not catalog.same_folder("", str(tmp_path)) and not catalog.same_folder(str(tmp_path), ["x"])
