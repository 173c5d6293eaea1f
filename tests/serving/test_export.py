"""Exports: each format is written, loaded back independently, and agrees with the Keras model; failures clean up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runs import LITE0_SETTINGS, trained_run
from tests.pty_kit import TerminalProcess
from tlcore import console, progress
from tlcore.data import pipeline
from tlcore.insight import evaluate
from tlcore.runs import store
from tlcore.serving import export, export_check, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory, catsdogs_subset) -> tuple[store.Run, Path]:
    """A frozen + augmentation EfficientNet-Lite0 run at 96 px: a nested base and an augmentation block.

    At 64 px it learned nothing (50% validation accuracy) and its probabilities sat near 0.5, where int8's
    error flipped a class as soon as the training order changed; at 96 px the nearest is 0.33 from 0.5.
    """
    root = catsdogs_subset("export_photos", train=8, validation=6)
    runs_dir = tmp_path_factory.mktemp("export_runs")
    settings = {"strategy": "frozen_augmented", "epochs": 6, "learning_rate": 3e-3, "augmented_views": 1}
    return trained_run(runs_dir, root, LITE0_SETTINGS, **settings), runs_dir


@pytest.fixture(scope="module")
def validation_batch(trained) -> tuple[np.ndarray, np.ndarray]:
    """The run's validation images (float32) and the Keras model's probabilities for them."""
    run, _ = trained
    predictor = predict.load(run)
    batch = pipeline.load_images(evaluate.dataset_for(run).paths("validation"), predictor.image_size).astype("float32")
    return batch, predictor.probabilities(batch)


def test_agreement_and_probabilities_are_pure_functions():
    np.testing.assert_allclose(export_check.as_probabilities(np.array([[0.2], [0.9]])), [[0.8, 0.2], [0.1, 0.9]])
    same, difference = export_check.agreement(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.8, 0.2], [0.6, 0.4]]))
    assert same == 0.5 and difference == pytest.approx(0.2)
    with pytest.raises(ValueError, match="received"):
        export_check.agreement(np.zeros((2, 2)), np.zeros((3, 2)))
    assert export_check.accuracy(np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]), [0, 0, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"received \(2, 2\) and \(3,\)"):
        export_check.accuracy(np.zeros((2, 2)), [0, 1, 1])


def _comparison(agreement: float, keras_accuracy: float, export_accuracy: float) -> export_check.Comparison:
    return export_check.Comparison(595, agreement, 0.7, keras_accuracy, export_accuracy)


def test_int8_may_tip_near_ties_but_not_lose_accuracy():
    # A default run on six classes of scenes: its int8 export tipped 10 of 595 near-tied photos and scored
    # 0.1 point lower (benchmarks/RESULTS.md). The rule before (99% agreement) refused it.
    tipped = _comparison(0.9832, 0.914, 0.913)
    assert export.shortfall("tflite-int8", tipped) is None
    # The float formats compute what Keras computes: any disagreement is a broken export.
    assert "disagrees with the Keras model" in export.shortfall("tflite", tipped)
    assert export.shortfall("tflite", _comparison(1.0, 0.914, 0.914)) is None
    # Int8 that costs more than a point of accuracy, or that disagrees widely, is refused.
    less_accurate = export.shortfall("tflite-int8", _comparison(0.985, 0.914, 0.900))
    assert less_accurate.startswith("it is less accurate than the Keras model")
    assert "accuracy 90.00% against the Keras model's 91.40%" in less_accurate
    assert "at most 1 point below" in less_accurate
    assert "expected the same class for at least 97%" in export.shortfall("tflite-int8", _comparison(0.96, 0.9, 0.9))
    # Exactly at the limits passes (shares of whole images are not exact in floating point).
    assert export.shortfall("tflite-int8", _comparison(0.97, 0.92, 0.91)) is None
    with pytest.raises(ValueError, match="Unknown export format 'onnx'"):
        export.shortfall("onnx", tipped)
    with pytest.raises(ValueError, match="accuracy must be in"):
        _comparison(1.0, 0.9, 1.5)
    with pytest.raises(ValueError, match="images must be at least 1, received 0"):
        export_check.Comparison(0, 1.0, 0.0, 1.0, 1.0)
    # Nothing to check on is not a pass.
    with pytest.raises(ValueError, match="at least one image"):
        export_check.compare(None, None, [], [], None)


def test_inference_model_drops_only_the_augmentation(trained, validation_batch):
    run, _ = trained
    model = predict.load(run).model
    assert "augmentation" in [layer.name for layer in model.layers]
    clean = export.inference_model(model)
    assert [layer.name for layer in clean.layers] == ["image", "preprocess", "efficientnet_lite0", "head"]
    batch, expected = validation_batch
    np.testing.assert_allclose(export_check.as_probabilities(clean.predict(batch, verbose=0)), expected, atol=1e-6)
    assert export.inference_model(clean) is clean


def _independent_outputs(format: str, path: Path, batch: np.ndarray) -> np.ndarray:
    """Runs an export without tlcore's loaders, as a consumer of the artefact would."""
    import tensorflow as tf

    if format == "savedmodel":
        serving = tf.saved_model.load(str(path)).signatures["serving_default"]
        (output,) = serving(image=tf.constant(batch)).values()
        return output.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Its deprecation notice (ai_edge_litert).
        interpreter = tf.lite.Interpreter(model_path=str(path))
    outputs = []
    for image in batch:  # One image at a time, at the input shape the file declares.
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return np.array(outputs)


# Dynamic-range int8 moves this small 96 px model's probabilities by about 0.11 (0.10-0.16 at 64 px, measured with the
# area-averaging resize); what the product promises for int8 is the top-1 agreement and accuracy checked below.
@pytest.mark.parametrize("format, tolerance", [("savedmodel", 1e-5), ("tflite-int8", 0.2)])
def test_serving_exports_agree_with_the_keras_model(trained, validation_batch, format, tolerance):
    run, runs_dir = trained
    result = export.export(run.id, format, runs_dir=runs_dir)
    assert result.path == run.path / "exports" / export.DEFAULT_NAMES[format] and Path(result).exists()
    assert result.images == 12 and result.agreement >= export.REQUIRED_AGREEMENT[format]
    assert result.max_difference <= tolerance
    assert json.loads(result.labels_path.read_text()) == ["cats", "dogs"]
    batch, expected = validation_batch
    outputs = export_check.as_probabilities(_independent_outputs(format, result.path, batch))
    # The accuracies reported are those of the Keras model and of the export run independently.
    labels = evaluate.dataset_for(run).labels("validation")
    assert result.keras_accuracy == export_check.accuracy(expected, labels)
    assert result.accuracy == export_check.accuracy(outputs, labels)
    np.testing.assert_allclose(outputs, expected, atol=tolerance)
    assert (outputs.argmax(axis=1) == expected.argmax(axis=1)).all()
    if format == "tflite-int8":  # Weights stored as int8: about a quarter of the float model.
        assert result.path.stat().st_size < 0.5 * run.model_path.stat().st_size
    assert not list(result.path.parent.glob(".*partial*"))


def test_keras_export_is_the_run_model_and_its_labels(trained, tmp_path):
    run, _ = trained
    result = export.export(run, "keras", destination=tmp_path / "shipped.zip")
    assert result.agreement == 1.0 and result.max_difference == 0.0
    with zipfile.ZipFile(result.path) as archive:
        assert sorted(archive.namelist()) == ["labels.json", "model.keras"]
        assert archive.read("model.keras") == run.model_path.read_bytes()
        assert json.loads(archive.read("labels.json")) == ["cats", "dogs"]
    with pytest.raises(ValueError, match="already exists"):
        export.export(run, "keras", destination=result.path)
    # A file where a folder of the destination would be: refused by name (was FileExistsError from mkdir).
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match=re.escape(f"{a_file} is a file")):
        export.export(run, "keras", destination=a_file / "deeper" / "model.zip")
    with pytest.raises(ValueError, match="Unknown export format 'onnx'"):
        export.export(run, "onnx")


def test_a_disagreeing_export_raises_and_is_deleted(trained, tmp_path, monkeypatch):
    run, _ = trained
    # An export that answers "dogs" for everything: what a broken conversion could do.
    monkeypatch.setitem(export_check.LOADERS, "keras", lambda path: lambda batch: np.ones((len(batch), 1)))
    with pytest.raises(export.ExportError, match=r"refused: it disagrees.*expected the same class for at least 100%"):
        export.export(run, "keras", destination=tmp_path / "broken.zip")
    assert list(tmp_path.iterdir()) == []  # Neither the artefact nor its temporary.


def test_cli_exports_a_float_tflite_file_that_agrees(trained, validation_batch, tmp_path):
    run, runs_dir = trained
    output = tmp_path / "shipped" / "classifier.tflite"
    command = [
        sys.executable,
        "-m",
        "tlcore",
        "export",
        "--run",
        run.id,
        "--runs-dir",
        str(runs_dir),
        "--format",
        "tflite",
        "--output",
        str(output),
    ]
    completed = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    printed = json.loads(completed.stdout.strip().splitlines()[-1])
    assert printed["path"] == str(output) and printed["agreement"] == 1.0 and printed["images"] == 12
    assert "XNNPACK" not in completed.stderr, "LiteRT's INFO line stays out without --verbose, as TensorFlow's do"
    assert printed["max_difference"] < 1e-4
    # Checked with LiteRT (ai-edge-litert, pinned in requirements.txt), not the deprecated tf.lite.Interpreter.
    assert printed["runtime"] == "ai_edge_litert"
    assert json.loads((tmp_path / "shipped" / "classifier.labels.json").read_text()) == ["cats", "dogs"]
    batch, expected = validation_batch
    outputs = export_check.as_probabilities(_independent_outputs("tflite", output, batch))
    np.testing.assert_allclose(outputs, expected, atol=1e-4)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 2 and "already exists" in completed.stderr


def test_control_c_during_an_export_ends_at_once_and_leaves_no_temporary(trained, tmp_path):
    run, runs_dir = trained
    output = tmp_path / "shipped" / "classifier"
    process = TerminalProcess(
        "export", "--run", run.id, "--runs-dir", str(runs_dir), "--format", "savedmodel", "--output", str(output)
    )
    # Pressed while the SavedModel is written or checked under its temporary name.
    deadline = time.monotonic() + 240
    while not (output.parent.is_dir() and any(".partial-" in path.name for path in output.parent.iterdir())):
        assert time.monotonic() < deadline and process.read(0.05), process.text
    process.press_control_c()
    assert process.finish() == console.INTERRUPTED_EXIT_CODE, process.text
    assert "Interrupted by Ctrl+C." in process.text and "Traceback" not in process.text, process.text
    assert list(output.parent.iterdir()) == []


class RecordingDisplay(progress.Display):
    """Keeps what an export reports: its messages and, per task, the total and the count done."""

    def __init__(self):
        super().__init__()
        self.messages, self.tasks = [], []

    def print(self, message: str) -> None:
        self.messages.append(message)

    def task(self, description: str, total: int | None) -> progress.Task:
        record = {"description": description, "total": total, "done": 0}
        self.tasks.append(record)
        display_task = progress.Task()
        display_task.advance = lambda count=1, **fields: record.update(done=record["done"] + count)
        return display_task


def test_an_export_says_what_it_is_doing_before_each_step(trained, tmp_path):
    # The page showed a spinner alone for the minute a TFLite conversion takes: each step is now reported.
    run, _ = trained
    display = RecordingDisplay()
    export.export(run, "keras", destination=tmp_path / "shown.zip", display=display)
    assert display.messages == [
        f"{export.WRITING['keras']}...",
        "Loading the keras export back to check it...",
        "Checking the keras export against the Keras model on 12 validation images...",
    ]
    assert display.tasks == [{"description": "Checking the keras export", "total": 12, "done": 12}]
    assert set(export.WRITING) == set(export.FORMATS)
