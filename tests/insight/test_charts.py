"""The UI-free helpers behind the training curves, the evaluation view, the learning-rate finder and the
Predict page's exports."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from tlcore.data import folders
from tlcore.insight import charts, evaluate, explore_chart, learning_rate_chart
from tlcore.serving import export_archive
from tlcore.training.lr_finder import LearningRateSweep


def layers_data(chart) -> list[dict]:
    """The rows of every dataset in a chart's Vega-Lite spec."""
    spec = chart.to_dict()
    return [row for rows in spec.get("datasets", {}).values() for row in rows]


@pytest.fixture
def evaluation() -> evaluate.Evaluation:
    # 3 classes; rows = true class. cats: 4 right, 1 called dogs; dogs: 3 right, 1 <b>; "<b>x</b>": 2 right.
    probabilities = np.array(
        [[0.9, 0.05, 0.05]] * 4 + [[0.2, 0.7, 0.1]] + [[0.1, 0.8, 0.1]] * 3 + [[0.1, 0.3, 0.6]] + [[0.1, 0.1, 0.8]] * 2
    )
    labels = [0] * 5 + [1] * 4 + [2] * 2
    return evaluate.summarise(
        "validation",
        ["cats", "dogs", "<b>x</b>"],
        probabilities,
        labels,
        [f"/photos/{index}.jpg" for index in range(11)],
    )


def test_confusion_matrix_chart_has_a_cell_per_class_pair_with_counts_or_shares(evaluation):
    counts = charts.confusion_frame(evaluation)
    assert len(counts) == 9
    cell = counts.set_index(["true", "predicted"])
    assert cell.loc[("cats", "cats"), "count"] == 4 and cell.loc[("cats", "dogs"), "label"] == "1"
    assert cell.loc[("dogs", "<b>x</b>"), "count"] == 1
    shares = charts.confusion_frame(evaluation, normalised=True).set_index(["true", "predicted"])
    assert shares.loc[("cats", "cats"), "value"] == pytest.approx(0.8)
    assert shares.loc[("cats", "cats"), "label"] == "80%"
    assert shares.groupby(level="true")["value"].sum().to_dict() == pytest.approx({"cats": 1, "dogs": 1, "<b>x</b>": 1})
    for normalised in (False, True):
        chart = charts.confusion_matrix(evaluation, normalised)
        spec = chart.to_dict()
        assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]
        assert spec["layer"][0]["encoding"]["x"]["sort"] == ["cats", "dogs", "<b>x</b>"]  # Label order, not A-Z.
        assert len(layers_data(chart)) == 9
        colour = spec["layer"][0]["encoding"]["color"]
        assert colour["condition"]["scale"]["domain"] == [0, 1.0 if normalised else 4.0]
        # An empty cell is white (the scheme's palest blue looked like one mistake), whether counts or shares.
        assert colour["condition"]["test"] == "(datum.count > 0)" and colour["value"] == "white"
        # The first class's label under its own column (flush, "buildings" sat a cell's third to the right), and
        # the legend under the matrix, so that a narrow column gives its room to the cells.
        assert spec["layer"][0]["encoding"]["x"]["axis"]["labelFlush"] is False
        assert colour["condition"]["legend"]["orient"] == "bottom"


def test_class_counts_chart_gives_every_bar_its_height():
    # Three classes of two splits once got 120 px in all: bars of a few pixels, and the middle
    # class's name dropped from the axis for want of room.
    counts = {"train": {"cats": 48, "dogs": 48, "sketches": 48}, "validation": {"cats": 12, "dogs": 12, "sketches": 12}}
    chart = charts.split_counts(counts)
    spec = chart.to_dict()
    assert spec["height"] == charts.SPLIT_CHART_FRAME + 6 * charts.SPLIT_BAR_HEIGHT
    assert spec["encoding"]["y"]["field"] == "class" and spec["encoding"]["yOffset"]["field"] == "split"
    assert sorted((row["split"], row["class"], row["images"]) for row in layers_data(chart))[:2] == [
        ("train", "cats", 48),
        ("train", "dogs", 48),
    ]
    many = {
        "train": {f"class {index}": 10 for index in range(12)},
        "validation": {f"class {index}": 2 for index in range(12)},
    }
    assert charts.split_counts(many).to_dict()["height"] == charts.SPLIT_CHART_FRAME + 24 * charts.SPLIT_BAR_HEIGHT
    assert charts.split_counts(counts, height=300).to_dict()["height"] == 300
    # A small set's axis read 0.0, 0.5, ... 4.5 images: whole images only.
    axis = charts.split_counts({"train": {"a": 4, "b": 5}}).to_dict()["encoding"]["x"]["axis"]
    assert (axis["tickMinStep"], axis["format"]) == (1, ",d")


def test_learning_rate_chart_is_log_scaled_and_marks_the_suggestion():
    rates = tuple(float(rate) for rate in np.geomspace(1e-6, 1.0, 20))
    losses = tuple([0.7] * 8 + [0.6, 0.4, 0.2, 0.15, 0.14, 0.2, 0.5, 1.5, 3.0] + [float("nan"), float("inf"), 9.0])
    sweep = LearningRateSweep(rates, losses, suggestion=rates[9])
    frame = learning_rate_chart.learning_rate_frame(sweep)
    assert len(frame) == 18, "non-finite losses are left out"
    spec = learning_rate_chart.learning_rate_sweep(sweep).to_dict()
    line, rule, text = spec["layer"]
    assert line["mark"]["type"] == "line" and line["encoding"]["x"]["scale"]["type"] == "log"
    assert rule["mark"]["type"] == "rule"
    marker = [row for row in layers_data(learning_rate_chart.learning_rate_sweep(sweep)) if "label" in row]
    assert marker == [{"learning_rate": pytest.approx(rates[9]), "label": f"suggested {rates[9]:.1e}"}]


def test_split_names_reads_the_folders_without_decoding_anything(tmp_path):
    for split in ("train", "validation", "Test"):
        (tmp_path / "wrapped" / "set" / split / "cats").mkdir(parents=True)
    (tmp_path / "wrapped" / "set" / "train" / "cats" / "a.jpg").write_bytes(b"not decoded")
    assert folders.split_names(tmp_path / "wrapped") == ("train", "validation", "test")
    (tmp_path / "two" / "train" / "cats").mkdir(parents=True)
    (tmp_path / "two" / "val" / "cats").mkdir(parents=True)
    assert folders.split_names(tmp_path / "two") == ("train", "validation")
    (tmp_path / "flat" / "cats").mkdir(parents=True)
    (tmp_path / "flat" / "dogs").mkdir(parents=True)
    assert folders.split_names(tmp_path / "flat") == ("train", "validation")
    assert folders.split_names(tmp_path / "missing") == ()


def test_archive_bundles_each_export_with_its_labels(tmp_path):
    labels = ["cats", "dogs"]
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"TFL3 weights")
    (tmp_path / "model.labels.json").write_text(json.dumps(labels))
    with zipfile.ZipFile(io.BytesIO(export_archive.archive(tflite, "tflite"))) as bundle:
        assert sorted(bundle.namelist()) == ["labels.json", "model.tflite"]
        assert json.loads(bundle.read("labels.json")) == labels
    # What the Predict page says the download holds, and names it.
    assert export_archive.archive_contents(tflite, "tflite") == "model.tflite and labels.json"
    assert export_archive.archive_name("20261207-101010-abcd", "tflite-int8") == "20261207-101010-abcd-tflite-int8.zip"
    with pytest.raises(ValueError, match="onnx"):
        export_archive.archive_name("20261207-101010-abcd", "onnx")
    saved = tmp_path / "savedmodel"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"graph")
    (saved / "variables" / "variables.index").write_bytes(b"index")
    (saved / "labels.json").write_text(json.dumps(labels))
    with zipfile.ZipFile(io.BytesIO(export_archive.archive(saved, "savedmodel"))) as bundle:
        assert sorted(bundle.namelist()) == [
            "savedmodel/labels.json",
            "savedmodel/saved_model.pb",
            "savedmodel/variables/variables.index",
        ]
    keras_zip = tmp_path / "model-keras.zip"
    keras_zip.write_bytes(b"PK already a zip")
    assert export_archive.archive(keras_zip, "keras") == b"PK already a zip"
    with pytest.raises(ValueError, match="onnx"):
        export_archive.archive(tflite, "onnx")
    with pytest.raises(FileNotFoundError):
        export_archive.archive(tmp_path / "nothing", "savedmodel")


def test_training_curves_are_two_charts_with_one_colour_per_stage_and_legends_below():
    records = [
        {
            "stage": stage,
            "epoch": epoch,
            "loss": 1.0 / epoch,
            "val_loss": 1.2 / epoch,
            "accuracy": 0.5 + epoch / 20,
            "val_accuracy": 0.6 + epoch / 20,
        }
        for stage, epochs in (("feature_extraction", (1, 2)), ("frozen_augmented", (1, 2)), ("fine_tuning", (3, 4)))
        for epoch in epochs
    ]
    pair = charts.history(records)
    specs = [chart.to_dict() for chart in pair]
    schedule = ["1 feature extraction", "2 frozen + augmentation", "3 fine-tuning"]
    for chart, spec in zip(pair, specs):
        line, rule, name = spec["layer"]
        assert (rule["mark"]["type"], name["mark"]["type"]) == ("rule", "text")
        # The epochs from the first: the axis began at 0, a step before the curves.
        assert line["encoding"]["x"]["scale"] == {"zero": False, "nice": False}
        assert line["encoding"]["color"]["scale"]["domain"] == schedule  # The same colours in both charts.
        # Not Streamlit's palette, whose first two colours (stages 1 and 2) are two blues.
        assert line["encoding"]["color"]["scale"]["scheme"] == charts.CATEGORY_SCHEME == "tableau10"
        assert spec["autosize"] == {"type": "fit-x", "contains": "padding"}
        # The rule where fine-tuning starts, half an epoch before its first, and its name (it went unread).
        assert [row for row in layers_data(chart) if "text" in row] == [{"epoch": 2.5, "text": "fine-tuning starts"}]
        assert name["mark"]["align"] == "left", "over fine-tuning's epochs"
    # With one fine-tuning epoch, half an epoch of plot is right of the rule: the name goes left of it.
    one = [record for record in records if record["stage"] != "fine_tuning" or record["epoch"] == 3]
    assert charts.history(one)[0].to_dict()["layer"][2]["mark"]["align"] == "right"
    assert specs[0]["layer"][0]["encoding"]["color"]["legend"] is None
    assert specs[1]["layer"][0]["encoding"]["color"]["legend"]["orient"] == "bottom"
    assert specs[1]["layer"][0]["encoding"]["strokeDash"]["legend"]["symbolType"] == "stroke"
    # One entry per row: in one row the five entries ran 670 px wide, past a phone's column.
    assert specs[1]["layer"][0]["encoding"]["color"]["legend"]["columns"] == 1
    assert specs[1]["layer"][0]["encoding"]["strokeDash"]["legend"]["columns"] == 1
    [placeholder] = charts.history([])  # Before the first epoch: says when the curves come.
    # "Waiting for the first epoch..." stood under a progress line that said the first epoch was running.
    assert layers_data(placeholder) == [{"text": "The curves start when the first epoch ends."}]


def test_compared_runs_keep_the_plots_height_and_list_only_their_own_stages():
    records = [
        {"stage": stage, "epoch": epoch, "loss": 0.5, "val_loss": 0.4, "accuracy": 0.8, "val_accuracy": 0.9}
        for stage, epochs in (("feature_extraction", (1, 2)), ("fine_tuning", (3,)))
        for epoch in epochs
    ]
    spec = charts.compare({"run-a": records, "run-b": records[:2]}).to_dict()
    # Fitted whole, the plot shrank to a strip under its legends.
    assert spec["autosize"] == {"type": "fit-x", "contains": "padding"} and spec["height"] == 300
    stages = spec["encoding"]["strokeDash"]["legend"]
    assert stages["values"] == ["1 feature extraction", "3 fine-tuning"]  # No "scratch baseline" never trained.
    assert stages["orient"] == "top" and stages["columns"] == 1
    assert spec["encoding"]["color"]["scale"]["scheme"] == "tableau10"
    runs = spec["encoding"]["color"]["legend"]
    assert runs["orient"] == "bottom" and runs["columns"] == 1 and runs["labelLimit"] == charts.RUN_LABEL_LIMIT


def test_training_curves_label_epochs_as_whole_numbers_and_accuracy_in_percent():
    # A one-epoch run once had its epoch axis labelled "1.000000" and "0.333333".
    records = [
        {"stage": "feature_extraction", "epoch": 1, "loss": 0.5, "val_loss": 0.4, "accuracy": 0.8, "val_accuracy": 0.9}
    ]
    loss, accuracy = (chart.to_dict()["encoding"] for chart in charts.history(records))
    compared = charts.compare({"run-a": records, "run-b": records}).to_dict()["encoding"]
    compared_loss = charts.compare({"run-a": records}, "val_loss").to_dict()["encoding"]
    for encoding in (loss, accuracy, compared, compared_loss):
        assert encoding["x"]["field"] == "epoch"
        assert encoding["x"]["axis"]["format"] == "d" and encoding["x"]["axis"]["tickMinStep"] == 1
    for encoding in (accuracy, compared):  # Percent, as the rest of the app shows accuracy.
        # "~%": a run at 100% every epoch was labelled "100.000000%" with "%".
        assert encoding["y"]["axis"]["format"] == "~%" and encoding["tooltip"][-1]["format"] == ".1%"
    for encoding in (loss, compared_loss):  # A loss is not a share.
        assert "format" not in encoding["y"].get("axis", {}) and encoding["tooltip"][-1]["format"] == ".4f"


def test_exploration_map_colours_by_class_shapes_by_split_and_names_files_relative_to_the_root():
    from tlcore.insight.explore import MapPoint

    points = [
        MapPoint("/d/train/cats/a.jpg", "cats", "train", 0.1, 0.2),
        MapPoint("/d/validation/dogs/b.jpg", "dogs", "validation", -1.0, 0.5),
        # A name that is not UTF-8 (surrogates, PEP 383): pandas' text column refused it, and the page failed.
        MapPoint("/d/train/cats/caf\udce9.jpg", "cats", "train", 0.3, 0.1),
    ]
    spec = explore_chart.exploration_map(points, "/d").to_dict()
    assert spec["encoding"]["color"]["field"] == "class" and spec["encoding"]["shape"]["field"] == "split"
    assert spec["encoding"]["color"]["scale"]["scheme"] == "tableau10", "cats and dogs were two blues"
    data = next(iter(spec["datasets"].values()))
    assert [row["file"] for row in data] == ["train/cats/a.jpg", "validation/dogs/b.jpg", "train/cats/caf\ufffd.jpg"]
