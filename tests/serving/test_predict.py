"""Prediction: safe model loading, bad files among good ones, the same decoder as training."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers.images import refuse_reading
from tests.helpers.paths import PROJECT_ROOT
from tlcore.runs import store
from tlcore.serving import predict


def fake_run(runs_dir: Path, name: str) -> store.Run:
    """A run folder whose model file a test will replace."""
    path = runs_dir / name
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "labels.json").write_text('["cats", "dogs"]')
    return store.Run(path)


def test_a_model_with_a_lambda_layer_is_refused(tmp_path):
    run = fake_run(tmp_path / "runs", "lambda-run")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(outputs))
    keras.Model(inputs, outputs).save(run.model_path)
    with pytest.raises(predict.ModelLoadError, match="refused"):
        predict.load(run.id, tmp_path / "runs")


def test_a_corrupt_model_archive_is_refused(tmp_path):
    run = fake_run(tmp_path / "runs", "corrupt-run")
    run.model_path.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(predict.ModelLoadError, match="not a Keras model archive|damaged"):
        predict.load(run.id, tmp_path / "runs")
    with zipfile.ZipFile(run.model_path, "w") as archive:
        archive.writestr("config.json", "{broken")
    with pytest.raises(predict.ModelLoadError, match="damaged or incompatible"):
        predict.load(run.id, tmp_path / "runs")


def test_a_run_without_a_model_or_labels_says_which_and_why(tmp_path):
    run = fake_run(tmp_path / "runs", "no-model-run")
    with pytest.raises(predict.ModelLoadError, match="no model file: a run saves its model when it ends done or"):
        predict.load(run.id, tmp_path / "runs")
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))).save(
        run.model_path
    )
    for damaged in (None, "{not json", '"cats"'):
        if damaged is None:
            (run.path / "labels.json").unlink()
        else:
            (run.path / "labels.json").write_text(damaged)
        # It said "labels.json (0 labels) does not match the model's 2 outputs".
        with pytest.raises(predict.ModelLoadError, match="labels.json: missing or damaged, expected the list"):
            predict.load(run.id, tmp_path / "runs")


def test_models_outside_the_runs_folder_are_not_loaded(tiny_trained_run, tmp_path):
    run = tiny_trained_run
    runs_dir = run.path.parent
    outside = tmp_path / "elsewhere" / run.id
    outside.parent.mkdir()
    import shutil

    shutil.copytree(run.path, outside)
    with pytest.raises(ValueError, match="not inside the runs folder"):
        predict.load(str(outside), runs_dir)
    with pytest.raises(ValueError):
        predict.load(f"../{run.id}", runs_dir)


def test_bad_files_get_reasons_and_the_others_are_predicted(tiny_trained_run, tmp_path):
    run = tiny_trained_run
    predictor = predict.load(run.id, run.path.parent)
    good = sorted((Path(run.config()["data_dir"]) / "validation" / "dogs").iterdir())[0]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    html = b"<!DOCTYPE html><html><body>not a photo</body></html>"
    truncated = good.read_bytes()[:2000]
    sources = [good.read_bytes(), b"", html, truncated, good]
    names = ["upload.jpg", "empty.jpg", "page.png", "cut.jpg", str(good)]
    results = predict.predict_sources(predictor, sources, names=names, top=2)
    assert [("top" in result) for result in results] == [True, False, False, False, True]
    assert results[1] == {"image": "empty.jpg", "error": results[1]["error"]} and "empty" in results[1]["error"]
    assert "HTML" in results[2]["error"]
    assert "truncated" in results[3]["error"]
    # Bytes and path of the same photo give the same probabilities: one decoder.
    assert results[0]["top"] == results[4]["top"]


def test_a_file_that_cannot_be_read_gets_its_reason_and_the_others_are_predicted(tiny_trained_run, monkeypatch):
    # PermissionError went past predict_sources: the whole batch (and its CSV) was lost for one file.
    predictor = predict.load(tiny_trained_run)
    photos = sorted((Path(tiny_trained_run.config()["data_dir"]) / "validation" / "dogs").iterdir())
    refuse_reading(monkeypatch, photos[0])
    results = predict.predict_sources(predictor, photos + [photos[1]], top=1)
    assert results[0] == {"image": str(photos[0]), "error": "cannot be read (Permission denied)"}
    assert results[1]["top"] == results[2]["top"] and len(results) == 3


def test_a_file_name_that_is_not_utf8_is_predicted_and_printed_as_its_bytes(tiny_trained_run, tmp_path):
    # os.walk gives such a name with surrogates, which a UTF-8 locale's strict stdout refused: a traceback,
    # and no prediction printed.
    photo = sorted((Path(tiny_trained_run.config()["data_dir"]) / "validation" / "cats").iterdir())[0]
    folder = tmp_path / "photos"
    folder.mkdir()
    named = os.fsdecode(bytes(folder) + b"/caf\xe9.jpg")
    shutil.copy(photo, named)
    command = [sys.executable, "-m", "tlcore", "predict", "--run", tiny_trained_run.id]
    command += ["--runs-dir", str(tiny_trained_run.path.parent), "--top", "1", str(folder)]
    environment = dict(os.environ, PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8", TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert b"caf\xe9.jpg" in completed.stdout and b"Traceback" not in completed.stderr


def test_predictions_match_the_models_output_on_decoded_images(tiny_trained_run):
    run = tiny_trained_run
    predictor = predict.load(run.id, run.path.parent)
    from tlcore.data import pipeline

    photos = sorted((Path(run.config()["data_dir"]) / "validation" / "cats").iterdir())
    batch = pipeline.load_images([str(path) for path in photos], predictor.image_size)
    output = np.asarray(predictor.model.predict(batch.astype("float32"), verbose=0))[:, 0]
    results = predict.predict_sources(predictor, photos, top=2)
    assert len(results) == len(photos) > 0
    for probability_of_dogs, result in zip(output, results, strict=True):
        by_label = {item["label"]: item["probability"] for item in result["top"]}
        assert by_label["dogs"] == pytest.approx(probability_of_dogs, abs=1e-6)
        assert by_label["cats"] == pytest.approx(1 - probability_of_dogs, abs=1e-6)
