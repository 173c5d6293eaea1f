"""The Train page: settings, a live run, reloads, comparisons, evaluation, the learning-rate finder."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.page_kit import (
    APP,
    TIMEOUT,
    TINY_BACKBONE,
    caption_lines,
    chart_specs,
    click,
    fake_finished_run,
    fake_running_run,
    markdown_table,
    metrics,
    open_page,
    plain,
    scan,
    texts,
    trained_run,
)
from tlcore import files
from tlcore.config import preset_augmentation
from tlcore.runs import catalog, store


def test_train_page_shows_strategies_presets_and_the_layer_stack(small_catsdogs):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    strategy = at.radio(key="train_strategy")
    assert list(strategy.options) == [
        "1 · Feature extraction",
        "2 · Frozen base + augmentation",
        "3 · Fine-tuning",
        "Baseline · a small CNN from scratch",
        "1 → 2 → 3 in sequence",
    ]
    assert "parameters trained" in texts(at)
    strategy.set_value("fine_tuning").run()
    assert "Unfreeze the base's top block" in texts(at)
    captions = texts(at)
    assert "frozen + augmentation: train a head on augmented images" in captions
    assert "fine-tuning: top block unfrozen, train again" in captions
    at.segmented_control(key="train_preset").set_value("seed").run()
    assert at.selectbox(key="train_backbone").value == "vgg16"
    assert at.number_input(key="train_image_size").value == 150
    assert at.number_input(key="train_learning_rate").value == pytest.approx(2e-5)
    assert "Augmentation (set on the Data page): rotation up to 10°" in texts(at)
    at.segmented_control(key="train_preset").set_value("quality").run()
    assert at.selectbox(key="train_backbone").value == "efficientnet_lite1"
    assert at.number_input(key="train_image_size").value == 240
    assert "ImageNet weights bundled (offline)." in texts(at)
    assert "EfficientNet-Lite1 at 240 px, left-right flips as the only augmentation" in texts(at)
    # The quality preset's augmentation, shown here and set on the Data page's sliders too.
    assert "Augmentation (set on the Data page): flips left-right\n" in texts(at) + "\n"
    at = open_page("pages/1_Data.py", at)
    assert at.slider(key="aug_rotation_degrees").value == 0 and at.slider(key="aug_zoom").value == 0
    at.toggle(key="aug_vertical_flip").set_value(True).run()  # A setting no preset sets stays as chosen.
    at = open_page("pages/2_Train.py", at)
    assert "Augmentation (set on the Data page): flips left-right and upside down\n" in texts(at) + "\n"
    at.segmented_control(key="train_preset").set_value("default").run()
    assert "rotation up to 10°" in texts(at) and "flips left-right and upside down" in texts(at)
    # The upside-down flip is kept through presets, and no preset has it: said under the preset (it trains).
    assert "Changed since: Flip upside down on." in texts(at)
    at.radio(key="train_strategy").set_value("feature_extraction").run()
    assert "Changed since" not in texts(at)  # Feature extraction trains on the photos as they are.
    at.radio(key="train_strategy").set_value("fine_tuning")
    at = open_page("pages/1_Data.py", at)
    at.toggle(key="aug_vertical_flip").set_value(False).run()
    at = open_page("pages/2_Train.py", at)
    assert "Changed since" not in texts(at)
    # Settings changed below a preset: it stays highlighted, so its caption says what differs from it.
    at.number_input(key="train_epochs").set_value(3)
    at.number_input(key="train_learning_rate").set_value(0.0005)
    at.selectbox(key="train_backbone").set_value("efficientnet_lite1").run()
    assert "Changed since: Backbone EfficientNet-Lite1, Epochs 3, Learning rate 0.0005." in texts(at)
    # Only what a run of the strategy and backbone chosen uses: not a disabled setting, nor MobileNet's width
    # multiplier kept after another backbone was chosen.
    at.number_input(key="train_fine_tuning_epochs").set_value(5)
    at.selectbox(key="train_backbone").set_value("mobilenet").run()
    at.select_slider(key="train_alpha").set_value(0.5).run()
    assert "Changed since: Backbone MobileNet, Width multiplier (alpha) 0.5, Epochs 3, Fine-tuning epochs 5" in texts(
        at
    )
    at.selectbox(key="train_backbone").set_value("efficientnet_lite0")
    at.radio(key="train_strategy").set_value("feature_extraction").run()
    assert "Changed since: Epochs 3, Learning rate 0.0005." in texts(at)
    assert not at.exception


def test_the_data_page_resets_the_augmentation_to_the_chosen_presets(small_catsdogs):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.segmented_control(key="train_preset").set_value("quality").run()
    at = open_page("pages/1_Data.py", at)
    at.slider(key="aug_rotation_degrees").set_value(20.0).run()
    assert at.session_state["augmentation"].rotation_degrees == 20.0
    # Named by its title on the Train page: "the seed preset" named an internal key.
    click(at, "Reset to the “Higher accuracy, slower (Lite1)” preset's settings")
    assert at.session_state["augmentation"] == preset_augmentation("quality")
    assert not at.exception


def test_train_page_starts_a_worker_and_shows_it_finished(small_catsdogs, folders):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    backbone, size = TINY_BACKBONE[1], int(TINY_BACKBONE[-1])
    at.selectbox(key="train_backbone").set_value(backbone).run()
    if "--weights" in TINY_BACKBONE:
        at.radio(key="train_weights").set_value("none").run()
    at.number_input(key="train_image_size").set_value(size)
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch_size").set_value(8).run()
    click(at, "Start training")
    run_id = at.session_state["run_id"]
    run = store.resolve(run_id, folders["runs"])
    assert run.config()["strategy"] == "feature_extraction" and run.config()["epochs"] == 2
    assert run_id in texts(at)
    deadline = time.time() + 240
    while run.state not in store.FINAL_STATES and time.time() < deadline:
        time.sleep(1)
    assert run.state == "done", run.status()
    at.run()
    assert "Done: every stage finished" in texts(at)
    assert run_id in list(at.dataframe[-1].value["run"]), "the runs table lists it"
    at = open_page("pages/2_Train.py", open_page("pages/3_Predict.py", at))
    assert run_id in texts(at) and "Done: every stage finished" in texts(at), "away and back: the same run"


def test_after_a_reload_the_train_page_shows_the_running_run_and_stop_works(folders, small_catsdogs):
    run = fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")  # A fresh session, as after a browser reload.
    assert at.session_state["run_id"] == run.id
    assert "Running: training" in texts(at)
    assert at.progress and "epoch 3 of 10, batch 2 of 4" in plain(at.progress[0].text)
    click(at, "Stop")
    assert run.stop_requested() and run.status()["state"] == "stopping"


def _renamed(run: store.Run, stamp: str) -> store.Run:
    """The run moved to an id with another creation time: run ids sort by it, newest first."""
    return store.Run(run.path.rename(run.path.with_name(stamp + run.id[len(stamp) :])))


def test_after_a_reload_the_running_run_wins_over_newer_queued_ones(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    config = TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction")
    running = _renamed(fake_running_run(folders["runs"], small_catsdogs), "20000101-000000")
    older_queued = _renamed(store.create(config, folders["runs"]), "20000101-000001")
    newest_queued = store.create(config, folders["runs"])  # Waiting for the running run to finish.
    assert [run.id for run in store.list_runs(folders["runs"])] == [newest_queued.id, older_queued.id, running.id]
    at = open_page("pages/2_Train.py")  # A fresh session, as after a browser reload.
    assert at.session_state["run_id"] == running.id
    assert "Running: training" in texts(at) and at.progress
    running.set_status("done")
    at = open_page("pages/2_Train.py")  # Nothing trains: the newest queued run is next.
    assert at.session_state["run_id"] == newest_queued.id


def test_a_stage_of_one_epoch_is_not_called_1_epochs(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="fine_tuning"), folders["runs"])
    run.append_metrics(
        {"stage": "frozen_augmented", "epoch": 1, "loss": 0.7, "val_loss": 0.6, "accuracy": 0.6, "val_accuracy": 0.75}
    )
    (run.path / "summary.json").write_text(
        json.dumps(
            {
                "results": {
                    "frozen_augmented": {"best_val_accuracy": 0.75, "epochs": 1, "seconds": 12},
                    "fine_tuning": {"best_val_accuracy": 0.8, "epochs": 2, "seconds": 30},
                }
            }
        )
    )
    run.set_status("done")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert (
        "frozen + augmentation: best validation accuracy 75.0% after 1 epoch, 12 s · "
        "fine-tuning: best validation accuracy 80.0% after 2 epochs, 30 s"
    ) in texts(at)


def test_each_stage_says_which_epoch_it_saved_and_why(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="fine_tuning"), folders["runs"])
    kept = {"val_accuracy": 0.78, "best_val_accuracy": 0.8, "seconds": 30}
    results = {
        "frozen_augmented": {**kept, "epochs": 5, "final_epoch": 3, "kept_weights": "best"},
        "fine_tuning": {**kept, "epochs": 1, "final_epoch": 1, "kept_weights": "last"},
    }
    (run.path / "summary.json").write_text(json.dumps({"results": results}))
    run.set_status("done")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert (
        "frozen + augmentation: saved model 78.0% (epoch 3 of 5, lowest validation loss), best epoch 80.0%, 30 s · "
        "fine-tuning: saved model 78.0% (last of 1 epoch), best epoch 80.0%, 30 s"
    ) in texts(at)


def test_a_finished_run_says_what_each_stage_added_and_which_beat_its_saved_model(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="all"), folders["runs"])
    scored = {"feature_extraction": 0.926, "frozen_augmented": 0.906, "fine_tuning": 0.904}
    results = {
        stage: {"val_accuracy": value, "best_val_accuracy": value, "epochs": 9} for stage, value in scored.items()
    }
    (run.path / "summary.json").write_text(json.dumps({"results": results}))
    run.set_status("done")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    shown = texts(open_page("pages/2_Train.py", at.run()))
    assert (
        "Frozen + augmentation scored 2.0 points below feature extraction: training on augmented copies cost "
        "accuracy on these photos."
    ) in shown
    assert "Its copies had rotation up to 10°" in shown and "the Data page's flip check measures" in shown
    assert "Fine-tuning scored 0.2 point below frozen + augmentation, within half a point" in shown
    assert "The saved model is fine-tuning's (90.4%); feature extraction's scored 2.2 points more" in shown


def test_a_queued_run_says_which_run_it_waits_for_or_that_its_process_is_starting(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    running = fake_running_run(folders["runs"], small_catsdogs)
    queued = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = queued.id
    at = open_page("pages/2_Train.py", at.run())
    assert plain(at.progress[0].text) == (
        f"Queued: waiting for run {running.id} to finish (one training runs at a time)."
    )
    running.set_status("done")
    at.run()
    assert not at.exception
    assert plain(at.progress[0].text) == "Queued: the training process is starting."


def test_scratch_runs_are_shown_as_a_small_cnn_not_a_backbone(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    scratch = store.create(
        TrainConfig(data_dir=str(small_catsdogs), strategy="scratch", image_size=96), folders["runs"]
    )
    scratch.set_status("done")
    transfer = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    transfer.set_status("done")
    home = {row["run"]: row["model"] for row in markdown_table(open_page(), "run")}
    # The backbone's name as people read it, not its registry key ("efficientnet_lite0").
    assert home == {scratch.id: "small CNN", transfer.id: "EfficientNet-Lite0"}
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = scratch.id
    at = open_page("pages/2_Train.py", at.run())
    table = at.dataframe[-1].value
    assert dict(zip(table["run"], table["model"])) == {scratch.id: "small CNN", transfer.id: "EfficientNet-Lite0"}
    assert f"{scratch.id} · small CNN · 96 px" in texts(at)
    at.session_state["run_id"] = transfer.id
    at.run()
    assert f"{transfer.id} · EfficientNet-Lite0 · 160 px" in texts(at)


def test_a_live_run_reruns_the_page_when_its_state_changes_and_seldom_for_epochs():
    from views import run_view

    seconds = run_view.PAGE_REFRESH_SECONDS
    assert 5 <= seconds <= 60, "a full page rerun is not a poll"
    assert run_view.page_is_stale(("queued", 0), 100.0, ("running", 0), 101.0)
    assert run_view.page_is_stale(("running", 3), 100.0, ("done", 3), 101.0)
    assert run_view.page_is_stale(("running", 3), 100.0, ("interrupted", 3), 101.0)
    assert not run_view.page_is_stale(("running", 3), 100.0, ("running", 3), 100.0 + 10 * seconds)
    assert not run_view.page_is_stale(("running", 3), 100.0, ("running", 4), 100.0 + seconds - 1)
    assert run_view.page_is_stale(("running", 3), 100.0, ("running", 4), 100.0 + seconds)
    assert run_view.page_is_stale(None, 100.0, ("running", 4), 101.0)


def test_compare_runs_overlays_the_selected_runs(folders, small_catsdogs):
    first = fake_running_run(folders["runs"], small_catsdogs)
    first.set_status("done")
    second = fake_running_run(folders["runs"], small_catsdogs)
    second.set_status("stopped")
    from tlcore.runs import catalog

    catalog.rename(first, "Lite0 at 96 px")  # Its name leads its legend entry: the ends of the ids were cut.
    at = open_page("pages/2_Train.py")
    assert sorted(at.dataframe[-1].value["run"]) == sorted([first.id, second.id])
    # The run column takes the width of the ids (a "medium" column cut "…-all-efficientnet_lite0-82b5" short).
    assert "width" not in json.loads(at.dataframe[-1].proto.columns)["run"]
    assert "Select runs in the table" in texts(at)
    at.session_state["runs_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    chart = at.get("vega_lite_chart")[-1]
    import pyarrow

    frame = pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
    assert sorted(frame["run"].unique()) == sorted([f"Lite0 at 96 px ({first.id})", second.id])
    assert set(frame["metric"]) == {"accuracy"} and set(frame["split"]) == {"validation"}


def test_a_killed_or_deleted_run_is_reported_and_the_page_keeps_working(folders, small_catsdogs):
    run = fake_running_run(folders["runs"], small_catsdogs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.set_status("running", pid=dead.pid, started=time.time())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert "Interrupted: The training process ended without finishing" in texts(at)
    shutil.rmtree(run.path)
    at.run()
    assert not at.exception and "run_id" not in at.session_state


def test_a_run_that_failed_before_its_first_epoch_says_no_curves_will_come(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    run.set_status("failed", error="WeightsUnavailableError: no weights here")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert not at.exception
    assert "Failed: WeightsUnavailableError: no weights here" in texts(at)
    # Not a chart "waiting for the first epoch": none will come.
    assert "No epoch finished before the run ended (failed): no curves to show." in texts(at)
    assert not at.get("vega_lite_chart")


def test_evaluation_view_shows_the_confusion_matrix_and_per_class_scores(trained_runs, monkeypatch):
    run = trained_run(trained_runs)
    for cached in run.path.glob("evaluation-*.json"):
        cached.unlink()
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert "Done: every stage finished" in texts(at)
    assert not any('"true class"' in spec for spec in chart_specs(at)), "nothing is computed before the button"
    click(at, "Evaluate on the validation split")
    assert not at.error, [element.value for element in at.error]
    assert (run.path / "evaluation-validation.json").is_file()
    assert sum('"true class"' in spec for spec in chart_specs(at)) == 1, "one confusion matrix"
    table = at.dataframe[0].value
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    assert list(table["class"]) == ["cats", "dogs"] and list(table["support"]) == [6, 6]
    # Every score to 0.1%, as the accuracies ("75%" beside "66.67%" before), and titled in words.
    columns = json.loads(at.dataframe[0].proto.columns)
    assert [columns[name]["label"] for name in ("precision", "recall", "f1", "support")] == [
        "precision",
        "recall",
        "F1",
        "images",
    ]
    assert all(columns[name]["type_config"]["format"] == "%.1f%%" for name in ("precision", "recall", "f1"))
    assert 0 <= min(table["recall"]) and max(table["recall"]) <= 100 and max(table["recall"]) > 1
    shown = metrics(at)
    assert shown["Validation images"] == "12" and shown["Accuracy"].endswith("%")
    at.toggle(key="current_normalised").set_value(True).run()
    assert not at.exception and any('"share of the true class"' in spec for spec in chart_specs(at))
    later = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    later.session_state["run_id"] = run.id
    later = open_page("pages/2_Train.py", later.run())
    assert not [button for button in later.button if button.label.startswith("Evaluate")], "cached: shown at once"
    assert metrics(later)["Accuracy"] == shown["Accuracy"]


def test_mistakes_gallery_pages_through_the_wrong_images_most_confident_first(folders, small_catsdogs):
    from tlcore.insight import evaluate

    run = fake_finished_run(folders["runs"], small_catsdogs)
    cats = sorted((small_catsdogs / "validation" / "cats").iterdir())
    dogs = sorted((small_catsdogs / "validation" / "dogs").iterdir())
    paths = [str(path) for path in cats + dogs] + [str(cats[0]) + ".gone"]
    # 13 images, all wrong (the model swaps the classes), ever less confident; one file deleted since.
    confidence = np.linspace(0.99, 0.51, len(paths))
    labels = [0] * len(cats) + [1] * (len(dogs) + 1)
    probabilities = np.where(
        np.array(labels)[:, None] == 0, np.c_[1 - confidence, confidence], np.c_[confidence, 1 - confidence]
    )
    result = evaluate.summarise(
        "validation",
        ["cats", "**dogs**"],
        probabilities,
        labels,
        paths,
        model_mtime_ns=run.model_path.stat().st_mtime_ns,
    )
    files.write_json(evaluate.cache_path(run, "validation"), result.to_dict())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert metrics(at)["Mistakes"] == "13" and metrics(at)["Accuracy"] == "0.0%"
    captions = [caption_lines(caption) for element in at.image for caption in element.captions]
    assert len(captions) == 12, "one page of 12"
    # Each photo named by its path in the data set, as the CLI's evaluate lists it, and class names as text.
    assert captions[0] == [f"validation/cats/{cats[0].name}", "true: cats · predicted: **dogs** (99%)"], (
        "most confident first"
    )
    assert captions[-1][0] == f"validation/dogs/{dogs[-1].name}"
    assert captions[-1][1].startswith("true: **dogs** · predicted: cats")
    at.pagination(key=f"current_{run.id}_validation_mistakes_page").set_value(2).run()
    assert not at.exception
    assert [plain(caption) for element in at.image for caption in element.captions] == []
    assert len(at.error) == 1 and plain(at.error[0].value).startswith(f"validation/cats/{cats[0].name}.gone: "), (
        "a deleted photo is named, not a crash"
    )
    assert "true: **dogs** · predicted: cats (51%)" in texts(at)


def test_a_mistake_is_captioned_with_its_file_name_as_text(folders, small_catsdogs, tmp_path):
    from tlcore.insight import evaluate

    data_dir = tmp_path / "photos"
    shutil.copytree(small_catsdogs, data_dir)
    photo = sorted((data_dir / "validation" / "cats").iterdir())[0]
    odd = photo.rename(photo.with_name("**bold** [link](x) <b>1.jpg"))
    run = fake_finished_run(folders["runs"], data_dir)
    result = evaluate.summarise(
        "validation",
        ["cats", "**dogs**"],
        np.array([[0.1, 0.9]]),
        [0],
        [str(odd)],
        model_mtime_ns=run.model_path.stat().st_mtime_ns,
    )
    files.write_json(evaluate.cache_path(run, "validation"), result.to_dict())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    [caption] = [caption for element in at.image for caption in element.captions]
    assert caption_lines(caption) == [
        "validation/cats/**bold** [link](x) <b>1.jpg",
        "true: cats · predicted: **dogs** (90%)",
    ]
    assert "\\*\\*bold\\*\\* \\[link\\]\\(x\\) \\<b\\>" in caption, "escaped: shown as typed, not as Markdown"


def test_a_single_run_picked_in_the_table_shows_its_evaluation(folders, small_catsdogs):
    from tlcore.insight import evaluate

    picked = fake_finished_run(folders["runs"], small_catsdogs)
    photo = str(sorted((small_catsdogs / "validation" / "cats").iterdir())[0])
    result = evaluate.summarise(
        "validation",
        ["cats", "**dogs**"],
        np.array([[0.8, 0.2], [0.3, 0.7]]),
        [0, 1],
        [photo, photo],
        model_mtime_ns=picked.model_path.stat().st_mtime_ns,
    )
    files.write_json(evaluate.cache_path(picked, "validation"), result.to_dict())
    current = fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    assert at.session_state["run_id"] == current.id and "Mistakes" not in metrics(at)
    rows = list(at.dataframe[-1].value["run"])
    at.session_state["runs_table"] = {"selection": {"rows": [rows.index(picked.id)], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert metrics(at)["Accuracy"] == "100.0%" and metrics(at)["Mistakes"] == "0"
    assert "None: the model classifies every image of this split correctly." in texts(at)


def test_learning_rate_finder_draws_the_sweep_and_uses_its_suggestion(small_catsdogs, folders):
    from tlcore.training import lr_finder  # Imports Keras, which only the tests that train need.

    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.selectbox(key="train_backbone").set_value(TINY_BACKBONE[1]).run()
    if "--weights" in TINY_BACKBONE:
        at.radio(key="train_weights").set_value("none").run()
    at.number_input(key="train_image_size").set_value(int(TINY_BACKBONE[-1]))
    at.number_input(key="train_batch_size").set_value(8).run()
    seeds_before = random.getstate(), np.random.get_state()[1].tolist()
    click(at, "Find a learning rate")
    deadline = time.monotonic() + TIMEOUT
    while "lr_sweep" not in at.session_state and time.monotonic() < deadline:
        time.sleep(1)
        at.run()  # As the page's poll does.
    assert not at.error, [element.value for element in at.error]
    assert not at.button(key="train_find_lr").disabled, "the button is free again once the find ended"
    # The sweep ran in a worker process: the server's global seeds are untouched.
    assert (random.getstate(), np.random.get_state()[1].tolist()) == seeds_before
    [job] = store.list_runs(folders["runs"] / ".lr-finds")
    assert job.raw_status()["pid"] != os.getpid() and job.state == "done"
    assert any('"learning rate (log scale)"' in spec for spec in chart_specs(at))
    sweep = at.session_state["lr_sweep"]["sweep"]
    assert sweep.suggestion == lr_finder.suggest(sweep.learning_rates, sweep.losses)
    assert f"Suggested learning rate: {sweep.suggestion:.2g}" in texts(at)
    assert (folders["runs"] / ".cache" / "features").is_dir(), "the features are cached for training"
    click(at, f"Use {sweep.suggestion:.2g} as the learning rate")
    assert at.number_input(key="train_learning_rate").value == pytest.approx(float(f"{sweep.suggestion:.2g}"))
    assert "set to the suggestion" in texts(at)


@pytest.fixture
def imbalanced(tmp_path, small_catsdogs) -> Path:
    """12 cats against 4 dogs for training, 6 + 6 for validation (links to the small set's photos)."""
    root = tmp_path / "imbalanced"
    for split, counts in (("train", {"cats": 12, "dogs": 4}), ("validation", {"cats": 6, "dogs": 6})):
        for name, count in counts.items():
            (root / split / name).mkdir(parents=True)
            for photo in sorted((small_catsdogs / split / name).iterdir())[:count]:
                (root / split / name / photo.name).symlink_to(photo)
    return root


def test_training_options_reach_the_started_runs_config(imbalanced, folders, monkeypatch):
    from tlcore.runs import worker

    monkeypatch.setattr(worker, "start", lambda config, runs_dir: store.create(config, runs_dir))  # No process.
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), imbalanced))
    notice = [plain(box.value) for box in at.info if "imbalanced" in box.value]
    assert notice and "12 training images in the largest class, 4 in the smallest" in notice[0]
    assert "cats ×0.67, dogs ×2.00" in notice[0], "said so, with the weights"
    at.radio(key="train_strategy").set_value("frozen_augmented").run()
    at.number_input(key="train_early_stopping_patience").set_value(3)
    at.number_input(key="train_augmented_views").set_value(4)
    at.selectbox(key="train_class_weight").set_value("none").run()
    assert not [box for box in at.info if "imbalanced" in box.value], "no notice once weighting is off"
    click(at, "Start training")
    # Said where the button is, and in a toast: the run's progress is drawn at the top, out of view.
    started = at.session_state["run_id"]
    assert [plain(toast.value) for toast in at.toast] == [
        f"Run {started} started: its progress is at the top of the page."
    ]
    assert [plain(box.value) for box in at.success] == [
        f"Run {started} started: its progress and Stop button are under [Current run](#current-run)."
    ]
    assert at.header[0].value == "Current run" and at.header[0].proto.anchor == "current-run"
    # The note stays while the run is queued or trains (the page redraws when its state changes); the toast not.
    at.run()
    assert not at.toast and "its progress and Stop button are under" in plain(at.success[0].value)
    store.resolve(started, folders["runs"]).set_status("done")
    at.run()
    assert not [box for box in at.success if "started" in box.value] and "started_run" not in at.session_state
    config = json.loads((folders["runs"] / at.session_state["run_id"] / "config.json").read_text())
    assert (
        config["strategy"],
        config["early_stopping_patience"],
        config["class_weight"],
        config["augmented_views"],
    ) == ("frozen_augmented", 3, "none", 4)
    at.selectbox(key="train_class_weight").set_value("balanced").run()
    assert 'Class weights "always" weight each class\'s loss' in texts(at)
    # Only strategy "all" trains a feature-extraction head for frozen + augmentation to continue; fine-tuning's
    # settings wait for a strategy with a fine-tuning stage.
    assert at.toggle(key="train_continue_head").disabled
    assert at.number_input(key="train_fine_tuning_epochs").disabled
    assert at.number_input(key="train_fine_tuning_learning_rate").disabled
    at.radio(key="train_strategy").set_value("all").run()
    assert not at.toggle(key="train_continue_head").disabled and at.toggle(key="train_continue_head").value
    at.toggle(key="train_continue_head").set_value(False).run()
    assert not at.number_input(key="train_fine_tuning_learning_rate").disabled
    click(at, "Start training")
    config = json.loads((folders["runs"] / at.session_state["run_id"] / "config.json").read_text())
    assert (config["strategy"], config["continue_head"]) == ("all", False)


def test_a_new_run_on_the_same_data_set_names_it_in_the_sidebar_at_once(folders, small_catsdogs):
    finished = fake_running_run(folders["runs"], small_catsdogs)
    finished.set_status("done")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = finished.id  # The session's run; no data set chosen yet.
    at = open_page("pages/2_Train.py", at.run())
    assert plain(at.sidebar.caption[0].value) == "Data set: none chosen yet"
    click(at, "New run on the same data set")
    # The page goes on to "Select runs in the table" and stops there, before its bottom.
    assert "Select runs in the table" in texts(at)
    assert plain(at.sidebar.caption[0].value).startswith(f"Data set: {small_catsdogs.name}: 2 classes")


def test_the_compare_table_leads_with_accuracy_and_time_in_one_format_and_the_overlay_tells_stages_apart(
    folders, small_catsdogs
):
    from tests.runs.test_catalog import sequence_run
    from tlcore.config import TrainConfig

    sequence = sequence_run(folders["runs"], small_catsdogs)
    queued = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    at = open_page("pages/2_Train.py")
    table = at.dataframe[-1].value
    assert list(table.columns)[:3] == ["val. accuracy", "best stage", "time"], "visible without scrolling"
    rows = {row["run"]: row for row in table.to_dict("records")}
    assert rows[sequence.id]["val. accuracy"] == "75.0%" and rows[sequence.id]["time"] == "17 s"
    assert rows[sequence.id]["best stage"] == "92.0% in 1 · Feature extraction"
    assert rows[sequence.id]["strategy"] == "1 → 2 → 3 in sequence"
    assert rows[sequence.id]["data set"] == small_catsdogs.name, "which data set each run used"
    # What tells runs apart, next; the name only once a run has one (an empty column hid the strategy on a phone).
    assert list(table.columns)[3:6] == ["strategy", "model", "data set"]
    catalog.rename(sequence, "first try")
    table = at.run().dataframe[-1].value
    assert list(table.columns)[3:7] == ["name", "strategy", "model", "data set"]
    widths = {name: column.get("width") for name, column in json.loads(at.dataframe[-1].proto.columns).items()}
    assert widths["best stage"] == widths["name"] == "medium", "whole, not cut when the table is first drawn"
    assert rows[queued.id]["val. accuracy"] == "—" and rows[queued.id]["time"] == "—"
    assert "None" not in table.to_string()
    at.session_state["runs_table"] = {
        "selection": {"rows": [list(table["run"]).index(sequence.id)], "columns": [], "cells": []}
    }
    at.run()
    spec = json.loads(at.get("vega_lite_chart")[-1].proto.spec)
    assert spec["encoding"]["y"]["title"] == "validation accuracy"
    assert spec["encoding"]["strokeDash"]["field"] == "stage", "the stages of one run told apart"


def test_a_run_picked_alone_can_be_renamed_and_deleted_after_a_confirmation_unless_it_runs(
    folders, small_catsdogs, caplog, monkeypatch
):
    from streamlit.elements.lib import policies

    # Streamlit logs that warning once per process: an earlier test in this worker must not have used it up.
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    done = fake_finished_run(folders["runs"], small_catsdogs)
    running = fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    at.session_state["run_id"] = done.id  # The page's current run, linked in the address: the one deleted below.
    ids = list(at.dataframe[-1].value["run"])
    at.session_state["runs_table"] = {"selection": {"rows": [ids.index(done.id)], "columns": [], "cells": []}}
    at.run()
    at.text_input(key=f"run_name_{done.id}").set_value("**first**   try")
    at = click(at, "Save the name")
    assert not at.exception
    # The name's field takes its value from the state alone (given both, Streamlit logged a warning).
    assert not [record for record in caplog.records if "default value" in record.getMessage()]
    assert f"Named {done.id} “**first** try”." in texts(at), "said, with the name as stored"
    assert at.text_input(key=f"run_name_{done.id}").value == "**first** try"
    row = at.dataframe[-1].value.set_index("run").loc[done.id]
    assert row["name"] == "**first** try"
    assert json.loads(at.dataframe[-1].proto.columns)["name"]["width"] == "medium", "a name is not cut to a word"
    delete = next(button for button in at.button if button.label == "Delete this run")
    assert delete.disabled, "not before the confirmation"
    at.checkbox(key=f"delete_confirmed_{done.id}").check().run()
    assert at.query_params["run"] == done.id
    at = click(at, "Delete this run")
    assert not at.exception and not done.path.exists()
    assert list(at.dataframe[-1].value["run"]) == [running.id]
    # Said, with the run now current (it changed unexplained), and the address no longer links the deleted run.
    assert [plain(toast.value) for toast in at.toast] == [
        f"Deleted run {done.id}; the current run is now {running.id}."
    ]
    assert at.query_params["run"] == running.id
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert next(button for button in at.button if button.label == "Delete this run").disabled
    assert at.checkbox(key=f"delete_confirmed_{running.id}").disabled and running.path.is_dir()


def test_what_transfer_bought_lists_the_data_sets_runs_beside_the_scratch_baseline(folders, small_catsdogs):
    done = fake_finished_run(folders["runs"], small_catsdogs)
    summary = {"results": {"feature_extraction": {"val_accuracy": 0.8}}, "final_stage": "feature_extraction"}
    files.write_json(done.path / "summary.json", {**summary, "parameters": {"trainable": 1281, "frozen": 9}})
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    at = open_page("pages/2_Train.py", at)
    (row,) = markdown_table(at, "strategy")
    assert (row["val. accuracy"], row["trained parameters"], row["frozen parameters"], row["run"]) == (
        "80.0%",
        "1,281",
        "9",
        done.id,
    )
    assert row["vs scratch"] == "—" and "No scratch baseline on this data set yet" in texts(at)


def test_start_with_a_full_queue_says_so_on_the_page(folders, small_catsdogs):
    # worker.start's refusal (a full queue, a second click of the same settings) went past the page: a traceback.
    from tlcore.config import TrainConfig
    from tlcore.runs import worker

    for _ in range(worker.MAX_QUEUED):
        store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="scratch"), folders["runs"])
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    click(at, "Start training")
    assert f"{worker.MAX_QUEUED} runs already wait in the queue" in plain(at.error[0].value)
    assert len(store.list_runs(folders["runs"])) == worker.MAX_QUEUED


def test_a_run_started_with_another_seed_keeps_the_data_pages_split_seed(flat_small, folders, monkeypatch):
    from tlcore.runs import worker

    monkeypatch.setattr(worker, "start", lambda config, runs_dir: store.create(config, runs_dir))  # No process.
    at = scan(open_page("pages/1_Data.py"), flat_small)
    at.number_input(key="split_seed").set_value(7).run()
    at = open_page("pages/2_Train.py", at)
    at.number_input(key="train_seed").set_value(99)
    click(at, "Start training")
    config = json.loads((folders["runs"] / at.session_state["run_id"] / "config.json").read_text())
    assert (config["seed"], config["split_seed"], config["validation_fraction"]) == (99, 7, 0.2)


def test_a_link_to_a_run_opens_it_as_the_current_run_and_a_path_is_never_taken(folders, small_catsdogs, tmp_path):
    linked = fake_finished_run(folders["runs"], small_catsdogs)
    newer = fake_finished_run(folders["runs"], small_catsdogs)  # The link's run still wins.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = linked.id
    at = open_page("pages/2_Train.py", at.run())
    assert plain(at.sidebar.caption[1].value) == f"Current run: {linked.id} (done)"
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = str(linked.path)  # A path, not an id of the runs folder: as if no link.
    at = open_page("pages/2_Train.py", at.run())
    assert plain(at.sidebar.caption[1].value) == f"Current run: {newer.id} (done)"


def test_a_new_session_shows_the_newest_run_once_training_has_ended(folders, small_catsdogs):
    # A new tab, no link: the page said "none running" and showed nothing of the run that had just ended.
    fake_finished_run(folders["runs"], small_catsdogs)
    newest = fake_finished_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    assert plain(at.sidebar.caption[1].value) == f"Current run: {newest.id} (done)"
    assert "Current run" in [header.value for header in at.header]
    # Shown, not kept: a run started in another tab or by the CLI takes its place on the next rerun.
    assert "run" not in at.query_params and "run_id" not in at.session_state
    running = fake_running_run(folders["runs"], small_catsdogs)
    at.run()
    assert plain(at.sidebar.caption[1].value) == f"Current run: {running.id} (running)"
    assert at.query_params["run"] == running.id


def test_the_current_run_is_in_the_address_so_a_reload_opens_it_again(folders, small_catsdogs):
    # A reload starts a fresh session: once its training had ended, the run vanished from the Train page.
    finished = fake_finished_run(folders["runs"], small_catsdogs)
    fake_finished_run(folders["runs"], small_catsdogs)  # Newer, and not the one being looked at.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = finished.id
    at = open_page("pages/2_Train.py", at.run())
    assert at.query_params["run"] == finished.id
    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    reloaded.query_params["run"] = at.query_params["run"]
    reloaded = open_page("pages/2_Train.py", reloaded.run())
    assert plain(reloaded.sidebar.caption[1].value) == f"Current run: {finished.id} (done)"
    assert "Current run" in [header.value for header in reloaded.header]


def test_choices_are_shown_by_their_names_not_their_keys(small_catsdogs):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    assert at.selectbox(key="train_optimizer").options == ["RMSprop", "Adam"]
    assert at.selectbox(key="train_backbone").value == "efficientnet_lite0"
    assert "EfficientNet-Lite0 (available offline)" in at.selectbox(key="train_backbone").options


def test_a_live_runs_curves_are_built_once_per_epoch_not_on_every_poll(folders, small_catsdogs, monkeypatch):
    import streamlit as st

    from tlcore.insight import charts

    built = []
    original = charts.history  # Counted, not replaced: the page still draws the real charts.
    monkeypatch.setattr(
        charts, "history", lambda records, *rest: built.append(len(records)) or original(records, *rest)
    )
    st.cache_resource.clear()
    run = fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    for _ in range(3):  # As the live view's polls and another session's visit redraw it.
        at.run()
    open_page("pages/2_Train.py")
    assert built == [2] and len(chart_specs(at)) == 2
    run.append_metrics({"stage": "feature_extraction", "epoch": 3, "loss": 0.6, "accuracy": 0.7, "val_loss": 0.5})
    at.run()
    assert built == [2, 3], "a new epoch draws new curves"


def test_the_feature_levels_check_says_what_it_measured_and_sets_the_levels(small_catsdogs, folders):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    click(at, "Check which feature levels suit these photos")
    assert not at.error, [element.value for element in at.error]
    suggestion = at.session_state["levels_suggestion"]["result"]
    assert suggestion.images == len(list((small_catsdogs / "train").rglob("*.jpg")))
    assert f"Feature levels: {suggestion.reason}" in texts(at)
    assert (folders["runs"] / ".cache" / "features").is_dir(), "the features are cached for training"
    # On these photos of cats and dogs the stack does not lead by more than chance: 1 level, as set already.
    assert suggestion.p_value > 0.05
    assert suggestion.levels == 1 and at.number_input(key="train_feature_levels").value == 1
    assert "Feature levels are set as suggested." in texts(at)

    at.number_input(key="train_feature_levels").set_value(3).run()
    click(at, "Use 1 feature level")
    assert at.number_input(key="train_feature_levels").value == 1
    assert "Feature levels are set as suggested." in texts(at)

    at.selectbox(key="train_backbone").set_value("vgg16").run()
    assert "Feature levels: VGG16 registers no stages to stack, so 1." in texts(at)
    assert not [button for button in at.button if button.label == "Check which feature levels suit these photos"]


def test_naming_a_run_another_tab_deleted_says_so_and_leaves_no_folder(folders, small_catsdogs):
    # The name was written into a folder made again for it, and the page said "Named ...".
    import shutil

    done = fake_finished_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.text_input(key=f"run_name_{done.id}").set_value("late")
    shutil.rmtree(done.path)
    at = click(at, "Save the name")
    assert [plain(toast.value) for toast in at.toast] == [f"Run {done.id} no longer exists: it was deleted."]
    assert not done.path.exists()


def test_the_sidebar_names_the_run_and_the_current_run_says_its_data_set(folders, small_catsdogs):
    # The sidebar showed the id alone, and the current run did not say which data set it trained on, while
    # "New run" below it named the data set chosen since.
    from tlcore.runs import catalog

    done = fake_finished_run(folders["runs"], small_catsdogs)
    catalog.rename(done, "first try")
    at = open_page("pages/2_Train.py")
    assert plain(at.sidebar.caption[1].value) == f"Current run: {done.id} “first try” (done)"
    assert f"{done.id} (first try) · EfficientNet-Lite0 · 160 px · on {small_catsdogs.name}" in texts(at)


def test_the_current_runs_settings_can_be_brought_back_into_the_form(folders, small_catsdogs, monkeypatch):
    # The form may hold other settings (the preset's, or the last session's) than the run the page shows.
    from tlcore.augmentation_settings import AugmentationConfig
    from tlcore.config import TrainConfig
    from tlcore.runs import worker

    monkeypatch.setattr(worker, "start", lambda config, runs_dir: store.create(config, runs_dir))  # No process.

    config = TrainConfig(
        data_dir=str(small_catsdogs),
        strategy="frozen_augmented",
        epochs=4,
        learning_rate=0.002,
        augmentation=AugmentationConfig(rotation_degrees=25.0),
    )
    run = store.create(config, folders["runs"])
    run.set_status("done")
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    assert at.number_input(key="train_epochs").value == 30 and "Changed since" not in texts(at)
    at = click(at, "Use the current run's settings")
    assert at.radio(key="train_strategy").value == "frozen_augmented"
    assert at.number_input(key="train_epochs").value == 4
    assert at.number_input(key="train_learning_rate").value == pytest.approx(0.002)
    assert at.session_state["augmentation"].rotation_degrees == 25.0
    assert "rotation up to 25°" in texts(
        at
    ) and "Changed since: Epochs 4, Learning rate 0.002, Rotation (degrees, either way) 25." in texts(at)
    click(at, "Start training")
    started = json.loads((folders["runs"] / at.session_state["run_id"] / "config.json").read_text())
    assert {key: started[key] for key in ("strategy", "epochs", "learning_rate")} == {
        "strategy": "frozen_augmented",
        "epochs": 4,
        "learning_rate": 0.002,
    }
    assert started["augmentation"]["rotation_degrees"] == 25.0


def test_copying_a_runs_width_multiplier_the_page_does_not_offer_says_so(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    config = TrainConfig(data_dir=str(small_catsdogs), backbone="mobilenet", weights="none", alpha=0.3)
    store.create(config, folders["runs"]).set_status("done")
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at = click(at, "Use the current run's settings")
    assert at.selectbox(key="train_backbone").value == "mobilenet" and at.select_slider(key="train_alpha").value == 1.0
    assert "Its width multiplier 0.3 is not one the page offers (0.25, 0.5, 0.75, 1): 1.0 is set instead." in [
        plain(box.value) for box in at.warning
    ]


def test_a_run_whose_config_holds_a_data_dir_that_is_not_text_is_shown_not_a_crash(folders, small_catsdogs):
    # The run's title and the compare table named its data set with Path(5): a TypeError, the whole page lost.
    done = fake_finished_run(folders["runs"], small_catsdogs)
    config = json.loads((done.path / "config.json").read_text())
    files.write_json(done.path / "config.json", {**config, "data_dir": 5})
    at = open_page("pages/2_Train.py")
    assert f"{done.id} · EfficientNet-Lite0 · 160 px · on 5" in texts(at)
    assert list(at.dataframe[-1].value["data set"]) == ["5"]


def test_a_new_session_starts_from_the_settings_and_augmentation_last_chosen(folders, small_catsdogs):
    # A reload or a new tab is a new Streamlit session: it lost the form and the augmentation (the data set came
    # back from the library). Saved in the data folder (tlcore.drafts), they come back on any page.
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.segmented_control(key="train_preset").set_value("quality").run()
    at.number_input(key="train_epochs").set_value(3).run()
    at.radio(key="train_strategy").set_value("fine_tuning").run()
    at = open_page("pages/1_Data.py", at)
    at.toggle(key="aug_vertical_flip").set_value(True).run()

    again = open_page("pages/2_Train.py")  # A new session.
    assert again.segmented_control(key="train_preset").value == "quality"
    assert again.selectbox(key="train_backbone").value == "efficientnet_lite1"
    assert again.number_input(key="train_epochs").value == 3
    assert again.radio(key="train_strategy").value == "fine_tuning"
    assert "Changed since: Epochs 3, Flip upside down on." in texts(again)
    assert "Augmentation (set on the Data page): flips left-right and upside down\n" in texts(again) + "\n"
    on_data = open_page("pages/1_Data.py")  # Another session, opened on the Data page.
    assert on_data.toggle(key="aug_vertical_flip").value is True
    assert on_data.slider(key="aug_rotation_degrees").value == 0  # The quality preset's, not the default's.
    assert not again.exception and not on_data.exception


def test_settings_a_run_would_refuse_are_not_saved_over_the_last_accepted_ones(folders, small_catsdogs):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.number_input(key="train_epochs").set_value(4).run()
    at.selectbox(key="train_backbone").set_value("mobilenet").run()
    at.select_slider(key="train_alpha").set_value(0.5).run()
    # Back on a backbone without a width multiplier: the widget keeps 0.5, which the page does not train with.
    at.selectbox(key="train_backbone").set_value("efficientnet_lite0").run()
    at.number_input(key="train_epochs").set_value(5).run()
    again = open_page("pages/2_Train.py")
    assert again.selectbox(key="train_backbone").value == "efficientnet_lite0"
    assert again.number_input(key="train_epochs").value == 5
    assert "Changed since: Epochs 5." in texts(again)


def test_a_setting_the_page_corrects_after_a_backbone_change_is_what_a_new_session_gets(folders, small_catsdogs):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.selectbox(key="train_backbone").set_value("mobilenet").run()
    at.select_slider(key="train_alpha").set_value(0.25).run()
    # MobileNetV2's weights have no 0.25: the page sets 1.0 as it draws, after the page's start has looked.
    at.selectbox(key="train_backbone").set_value("mobilenet_v2").run()
    assert at.select_slider(key="train_alpha").value == 1.0
    again = open_page("pages/2_Train.py")
    assert again.selectbox(key="train_backbone").value == "mobilenet_v2"
    assert again.select_slider(key="train_alpha").value == 1.0


def test_two_tabs_each_keep_what_they_changed_for_a_new_session(folders, small_catsdogs):
    # Tab B opens on the Data page before any setting was saved; tab A then sets the quality preset and epochs.
    tab_b = open_page("pages/1_Data.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    tab_a = open_page("pages/2_Train.py")
    tab_a.segmented_control(key="train_preset").set_value("quality").run()
    tab_a.number_input(key="train_epochs").set_value(3).run()
    tab_b.slider(key="aug_brightness").set_value(0.3).run()  # Tab B's only change.
    again = open_page("pages/2_Train.py")
    assert again.segmented_control(key="train_preset").value == "quality"
    assert again.number_input(key="train_epochs").value == 3
    assert again.session_state["augmentation"].brightness == 0.3
    assert again.session_state["augmentation"].rotation_degrees == 0  # The quality preset's, kept.


def test_a_run_whose_data_set_is_gone_offers_no_new_run_on_it_nor_an_evaluation(folders, small_catsdogs, tmp_path):
    # Both buttons were offered and only named a missing path, after the data set was deleted from the library.
    import shutil

    data = tmp_path / "deleted later"
    shutil.copytree(small_catsdogs, data, symlinks=True)
    run = fake_finished_run(folders["runs"], data)
    shutil.rmtree(data)
    at = open_page("pages/2_Train.py")
    labels = [button.label for button in at.button]
    assert "New run on the same data set" not in labels and "Evaluate on the validation split" not in labels
    assert f"No new run on the current run's data set: {data} is no longer there (deleted from the library" in (
        texts(at)
    )
    assert f"Not evaluated: its data set, {data}, is no longer there." in texts(at)
    assert run.id in texts(at)


def test_a_finished_sequence_says_its_whole_time_beside_its_stages(folders, small_catsdogs):
    # Its stages' seconds added up to less than the runs table's time, which read as a disagreement.
    from tests.runs.test_catalog import sequence_run

    run = sequence_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    [line] = [plain(caption.value) for caption in at.caption if "saved model" in caption.value]
    assert line.endswith(", 9 s · 17 s in all, building and saving the models included"), line
    assert run.id in texts(at)


def test_deleting_a_run_that_is_not_the_current_one_says_only_that(folders, small_catsdogs):
    # "Deleted run A; the current run is now B" was said when B had been current all along.
    other = fake_finished_run(folders["runs"], small_catsdogs)
    current = fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    ids = list(at.dataframe[-1].value["run"])
    at.session_state["runs_table"] = {"selection": {"rows": [ids.index(other.id)], "columns": [], "cells": []}}
    at.run()
    at.checkbox(key=f"delete_confirmed_{other.id}").check().run()
    at = click(at, "Delete this run")
    assert not other.path.exists() and [plain(toast.value) for toast in at.toast] == [f"Deleted run {other.id}."]
    assert at.session_state["run_id"] == current.id
