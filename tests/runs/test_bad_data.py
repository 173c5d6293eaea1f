"""A data set that cannot be used is refused before a run exists, or before a stopped run is queued again:
one message naming the folder, no traceback, no "failed" run, and a resumable run stays resumable."""

from __future__ import annotations

import shutil

from tests.helpers.cli import tlcore
from tests.helpers.runs import TINY_SETTINGS, train_config
from tlcore import files
from tlcore.runs import resumption, store, worker


def test_train_on_an_unusable_folder_is_one_error_line_and_makes_no_run(tmp_path, catsdogs_subset):
    missing = tmp_path / "no such photos"
    one_class = catsdogs_subset("one_class", train={"cats": 3}, validation={"cats": 1})
    runs = tmp_path / "runs"
    for data, reason in ((missing, "does not exist"), (one_class, "class")):
        result = tlcore("train", "--data", str(data), "--runs-dir", str(runs), "--epochs", "1")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.startswith(f"error: {data}"), result.stderr
        assert reason in result.stderr
    assert store.list_runs(runs) == [], "no failed run left behind"


def _resumable_run(data, runs_dir) -> store.Run:
    """A run whose worker is gone after backing up epoch 2 of its first stage: interrupted, resumable."""
    run = store.create(train_config(data, TINY_SETTINGS), runs_dir)
    run.set_status("running", pid=2**22 + 1, started=1.0)
    files.write_json(run.path / "labels.json", ["cats", "dogs"])
    stage = resumption.resume_point(run).stage
    files.write_json(resumption.backup_folder(run, stage) / resumption.METADATA_FILE, {"epoch": 2})
    assert run.state == "interrupted" and resumption.why_not_resumable(run) is None
    return run


def test_a_resume_whose_data_moved_or_changed_is_refused_and_the_run_stays_resumable(tmp_path, catsdogs_subset):
    data = catsdogs_subset("moving", train=2, validation=1)
    run = _resumable_run(data, tmp_path / "runs")
    moved = data.with_name(data.name + "-moved")
    data.rename(moved)
    result = tlcore("train", "--resume", run.id, "--runs-dir", str(run.path.parent))
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {data}: does not exist."), result.stderr
    assert run.state == "interrupted" and resumption.why_not_resumable(run) is None, "still resumable"

    moved.rename(data)
    (data / "train" / "birds").mkdir()
    shutil.copytree(data / "train" / "cats", data / "train" / "birds", dirs_exist_ok=True, symlinks=True)
    (data / "validation" / "birds").mkdir()
    shutil.copytree(data / "validation" / "cats", data / "validation" / "birds", dirs_exist_ok=True, symlinks=True)
    result = tlcore("train", "--resume", run.id, "--runs-dir", str(run.path.parent))
    assert result.returncode == 2 and "now has the classes ['birds', 'cats', 'dogs']" in result.stderr
    assert "Traceback" not in result.stderr and run.state == "interrupted"

    shutil.rmtree(data / "train" / "birds")
    shutil.rmtree(data / "validation" / "birds")
    point = worker.prepare_resume(run)  # As the app's Resume button does, once the data is back as it was.
    assert (run.state, point.epoch) == ("queued", 2)


def test_train_names_how_many_files_it_leaves_out(tmp_path, catsdogs_subset):
    data = catsdogs_subset("with_junk", train=2, validation=1)
    (data / "train" / "cats" / "empty.jpg").write_bytes(b"")
    (data / "train" / "dogs" / "notes.jpg").write_text("not a photo")
    result = tlcore("train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--strategy",
                    "feature_extraction", "--backbone", "vgg16", "--weights", "none", "--image-size", "32",
                    "--epochs", "1", "--batch-size", "4", "--head", "flatten")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"2 files of {data} left out (not usable images); `tlcore scan {data}` lists each" in result.stderr
