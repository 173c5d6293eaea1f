"""Evaluation: metrics as pure functions, the same split as training, the test split, the cache, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runs import LITE0_SETTINGS, trained_run
from tlcore import files
from tlcore.config import TrainConfig
from tlcore.data import folders
from tlcore.data.dataset import DatasetScan, fingerprint
from tlcore.insight import evaluate
from tlcore.runs import store
from tlcore.serving import predict


def _link(source: Path, destination: Path, start: int, count: int) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir())[start : start + count]:
        (destination / path.name).symlink_to(path)


def refuse(why: str):
    """A stand-in for a function the test expects never to be called: it fails the test, saying why."""

    def refused(*arguments, **keyword_arguments):
        raise AssertionError(why)

    return refused


@pytest.fixture(scope="module")
def photos(tmp_path_factory, catsdogs_dir) -> Path:
    """train 8 / validation 6 / test 4 real photos per class (test taken from other validation photos)."""
    root = tmp_path_factory.mktemp("evaluate_photos")
    for name in ("cats", "dogs"):
        _link(catsdogs_dir / "train" / name, root / "train" / name, 0, 8)
        _link(catsdogs_dir / "validation" / name, root / "validation" / name, 0, 6)
        _link(catsdogs_dir / "validation" / name, root / "test" / name, 6, 4)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, photos) -> tuple[store.Run, Path]:
    """One EfficientNet-Lite0 (ImageNet weights, bundled) feature-extraction run at 64 px."""
    runs_dir = tmp_path_factory.mktemp("evaluate_runs")
    return trained_run(runs_dir, photos, LITE0_SETTINGS, image_size=64), runs_dir


# Pure functions.


def test_confusion_matrix_rows_are_true_classes_and_columns_predictions():
    matrix = evaluate.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 2, 2], 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="received"):
        evaluate.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="one length"):
        evaluate.confusion_matrix([0, 1], [0], 3)


def test_normalised_rows_sum_to_one_and_an_empty_class_stays_zero():
    normalised = evaluate.normalise_rows(np.array([[1, 3, 0], [0, 0, 0], [2, 2, 4]]))
    assert normalised.tolist() == [[0.25, 0.75, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]]


def test_per_class_scores_match_hand_computed_values():
    # true 0: 3 images (1 right), true 1: 2 images (2 right), true 2: 1 image (0 right, predicted as 1).
    matrix = evaluate.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 1, 1], 3)
    precision, recall, f1, support = evaluate.per_class_scores(matrix)
    assert precision.tolist() == pytest.approx([1.0, 2 / 5, 0.0])
    assert recall.tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert f1.tolist() == pytest.approx([0.5, 2 * 0.4 / 1.4, 0.0])  # Class 2: never predicted, 0 not NaN.
    assert support.tolist() == [3, 2, 1]
    assert evaluate.accuracy(matrix) == pytest.approx(3 / 6)


def test_mistakes_are_the_wrong_ones_most_confident_first_with_their_loss():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.7, 0.3]])
    mistakes = evaluate.find_mistakes(probabilities, [0, 0, 1, 0, 1], ["a", "b", "c", "d", "e"], ("cat", "dog"))
    assert [item.path for item in mistakes] == ["d", "b", "e", "c"]
    first = mistakes[0]
    assert (first.true_label, first.predicted_label, first.probability) == ("cat", "dog", 0.95)
    assert first.loss == pytest.approx(-math.log(0.05))


def test_summary_round_trips_through_json_and_rejects_inconsistent_shapes():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    result = evaluate.summarise("validation", ("cat", "dog"), probabilities, [0, 1, 1], ["a", "b", "c"], 42)
    assert result.confusion == ((1, 0), (1, 1)) and result.accuracy == pytest.approx(2 / 3)
    assert evaluate.Evaluation.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    with pytest.raises(ValueError, match="received"):
        evaluate.Evaluation(**{**result.__dict__, "confusion": ((1, 0),)})


def test_dataset_for_reuses_the_runs_own_split_settings(tmp_path, catsdogs_dir):
    flat = tmp_path / "flat"
    for name in ("cats", "dogs"):
        _link(catsdogs_dir / "train" / name, flat / name, 0, 10)
    run = store.create(TrainConfig(data_dir=str(flat), validation_fraction=0.3, split_seed=7), tmp_path / "runs")
    files.write_json(run.path / "labels.json", ["cats", "dogs"])
    dataset = evaluate.dataset_for(run)
    assert dataset.paths("validation") == folders.scan(flat, 0.3, 7).paths("validation")
    assert dataset.paths("validation") != folders.scan(flat).paths("validation")  # Defaults would be another split.
    files.write_json(run.path / "labels.json", ["cats", "dogs", "birds"])
    with pytest.raises(ValueError, match="trained on"):
        evaluate.dataset_for(run)


def test_a_scan_round_trips_through_its_json_record_and_bad_records_are_refused(photos):
    scan = folders.scan(photos)
    record = json.loads(json.dumps(scan.to_json()))
    assert record["fingerprint"] == fingerprint(scan)
    assert DatasetScan.from_json(record) == scan
    old = {key: value for key, value in record.items() if key != "files"}  # dataset.json of older runs.
    with pytest.raises(ValueError, match=r"without \['files'\]"):
        DatasetScan.from_json(old)
    with pytest.raises(ValueError, match="received NoneType"):
        DatasetScan.from_json(None)
    with pytest.raises(ValueError, match=r"files\['validation'\].*received \['cats'\]"):
        DatasetScan.from_json({**record, "files": {**record["files"], "validation": {"cats": []}}})
    with pytest.raises(ValueError, match="at least 2 distinct"):
        DatasetScan.from_json({**record, "classes": ["cats", "cats"]})
    with pytest.raises(ValueError, match="seed must be an integer, received None"):
        DatasetScan.from_json({**record, "seed": None})


def test_dataset_for_reuses_the_recorded_data_set_until_its_files_change(tmp_path, photos, monkeypatch):
    copied = tmp_path / "copied"
    shutil.copytree(photos, copied)  # Real files (not links), so they can be touched and removed.
    run = store.create(TrainConfig(data_dir=str(copied)), tmp_path / "runs")
    files.write_json(run.path / "labels.json", ["cats", "dogs"])
    recorded = folders.scan(copied)
    files.write_json(run.path / evaluate.DATASET_FILE, recorded.to_json())
    scan, scanned = folders.scan, []

    def counting_scan(folder, *arguments, **keyword_arguments):
        scanned.append(folder)
        return scan(folder, *arguments, **keyword_arguments)

    monkeypatch.setattr(folders, "scan", counting_scan)
    assert evaluate.dataset_for(run) == recorded and evaluate.dataset_for(run, "test") == recorded
    assert scanned == []  # Nothing decoded: the record matches the files on disk.
    touched = Path(recorded.paths("validation")[0])
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert evaluate.dataset_for(run).paths("validation") == recorded.paths("validation")
    assert scanned == [str(copied)]  # A modified file: scanned again.
    files.write_json(run.path / evaluate.DATASET_FILE, folders.scan(copied).to_json())
    scanned.clear()
    removed = Path(recorded.paths("train")[0])
    removed.unlink()
    assert str(removed) not in evaluate.dataset_for(run).paths("train")
    assert scanned == [str(copied)]  # A removed file: scanned again.
    old = {key: value for key, value in folders.scan(copied).to_json().items() if key != "files"}
    files.write_json(run.path / evaluate.DATASET_FILE, old)
    scanned.clear()
    assert len(evaluate.dataset_for(run).paths("train")) == 15
    assert scanned == [str(copied)]  # A record from before the file lists: scanned.


# With a trained model.


def test_validation_evaluation_is_the_split_training_measured(trained, photos):
    run, runs_dir = trained
    result = evaluate.evaluate(run.id, runs_dir=runs_dir)
    assert result.split == "validation" and result.classes == ("cats", "dogs")
    assert result.support == (6, 6) and sum(map(sum, result.confusion)) == 12
    # Keras measured val_accuracy on the very same images at the end of training.
    assert result.accuracy == pytest.approx(run.summary()["results"]["feature_extraction"]["val_accuracy"], abs=1e-6)
    assert len(result.mistakes) == 12 - sum(result.confusion[index][index] for index in range(2))
    validation = set(folders.scan(photos).paths("validation"))
    predictor = predict.load(run)
    for mistake in result.mistakes:
        assert mistake.path in validation and mistake.true_label != mistake.predicted_label
        # The model's own answer for that photo, and (two classes) the loss of the other, true, class.
        (top,) = predict.predict_sources(predictor, [mistake.path], top=1)[0]["top"]
        assert top["label"] == mistake.predicted_label and top["probability"] == pytest.approx(mistake.probability)
        assert mistake.loss == pytest.approx(-math.log(1 - mistake.probability))
    assert [item.probability for item in result.mistakes] == sorted(
        (item.probability for item in result.mistakes), reverse=True
    )
    for row in result.normalised:
        assert sum(row) == pytest.approx(1.0)
    cached = json.loads((run.path / "evaluation-validation.json").read_text())
    assert cached["model_mtime_ns"] == run.model_path.stat().st_mtime_ns
    assert cached["accuracy"] == result.accuracy


def test_evaluation_uses_the_data_set_training_recorded_without_scanning(trained, monkeypatch):
    run, _ = trained
    first = evaluate.evaluate(run)

    monkeypatch.setattr(folders, "scan", refuse("the data set was scanned although the run recorded it unchanged"))
    again = evaluate.evaluate(run, refresh=True)
    assert again.confusion == first.confusion and again.accuracy == first.accuracy
    assert [item.path for item in again.mistakes] == [item.path for item in first.mistakes]


def test_test_split_is_evaluated_when_the_data_set_has_one(trained):
    run, runs_dir = trained
    result = evaluate.evaluate(run, split="test")
    assert result.split == "test" and result.support == (4, 4)
    assert (run.path / "evaluation-test.json").is_file()


def test_cache_is_used_until_the_model_file_changes(trained, monkeypatch):
    run, _ = trained
    first = evaluate.evaluate(run)

    monkeypatch.setattr(predict, "load", refuse("the model was loaded although a cached evaluation exists"))
    assert evaluate.evaluate(run) == first
    stat = run.model_path.stat()
    os.utime(run.model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert evaluate.load_cached(run) is None
    with pytest.raises(AssertionError, match="was loaded"):
        evaluate.evaluate(run)  # A newer model file: computed again.
    monkeypatch.undo()
    again = evaluate.evaluate(run)
    assert again.model_mtime_ns == run.model_path.stat().st_mtime_ns and again.confusion == first.confusion


def test_unknown_or_missing_splits_are_refused_clearly(trained, photos, tmp_path):
    run, _ = trained
    with pytest.raises(ValueError, match="Unknown split 'banana'"):
        evaluate.evaluate(run, split="banana")
    without_test = tmp_path / "without_test"
    for split in ("train", "validation"):
        shutil.copytree(photos / split, without_test / split, symlinks=True)
    other = store.create(dataclasses.replace(run.train_config(), data_dir=str(without_test)), tmp_path / "runs")
    shutil.copy2(run.model_path, other.model_path)
    shutil.copy2(run.path / "labels.json", other.path / "labels.json")
    with pytest.raises(ValueError, match=r"no test split.*received split='test'"):
        evaluate.evaluate(other, split="test")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tlcore",
            "evaluate",
            "--run",
            other.id,
            "--runs-dir",
            str(tmp_path / "runs"),
            "--split",
            "test",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2 and "no test split" in json.loads(completed.stdout)["error"]


def test_cli_evaluate_prints_the_cached_evaluation(trained):
    run, runs_dir = trained
    expected = evaluate.evaluate(run)
    command = [sys.executable, "-m", "tlcore", "evaluate", "--run", run.id, "--runs-dir", str(runs_dir)]
    completed = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert printed["accuracy"] == expected.accuracy
    assert printed["confusion"] == [list(row) for row in expected.confusion]
    assert [row["class"] for row in printed["per_class"]] == ["cats", "dogs"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert f"accuracy {expected.accuracy:.4f}" in completed.stdout and "precision" in completed.stdout
