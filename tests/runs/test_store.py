"""The run folder on disk: file permissions, atomic writes, what a listing includes, stale partials cleaned."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tlcore import files
from tlcore.config import TrainConfig
from tlcore.runs import catalog, partials, store


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask_value, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_written_files_and_folders_get_the_usual_modes_less_the_umask(
    tmp_path, umask, umask_value, file_mode, folder_mode
):
    umask(umask_value)
    target = tmp_path / "runs" / "a-run" / "status.json"
    files.write_json(target, {"state": "queued"})
    assert _mode(target) == file_mode
    assert _mode(target.parent) == folder_mode
    assert json.loads(target.read_text()) == {"state": "queued"}
    assert [path.name for path in target.parent.iterdir()] == ["status.json"]  # no temporary left


def test_a_concurrent_reader_sees_the_old_or_the_new_file_never_a_partial_one(tmp_path):
    target = tmp_path / "status.json"
    files.write_json(target, {"version": 0, "padding": "x" * 50_000})
    seen, damaged, writing = set(), [], threading.Event()
    writing.set()

    def read_in_a_loop():
        while writing.is_set():
            try:
                seen.add(json.loads(target.read_text())["version"])
            except ValueError as error:
                damaged.append(error)

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    try:
        for version in range(1, 200):
            files.write_json(target, {"version": version, "padding": "x" * 50_000})
    finally:
        writing.clear()
        reader.join()
    assert not damaged
    assert len(seen) > 1  # the reader really read while the file was being replaced
    assert json.loads(target.read_text())["version"] == 199
    assert sorted(path.name for path in tmp_path.iterdir()) == ["status.json"]


def _run_folder(path: Path, state: str = "done") -> Path:
    path.mkdir(parents=True)
    files.write_json(path / "config.json", {"strategy": "feature_extraction", "backbone": "vgg16"})
    files.write_json(path / "status.json", {"state": state})
    return path


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_symlinked_run_folders_are_not_listed(tmp_path):
    runs_dir = tmp_path / "runs"
    inside = _run_folder(runs_dir / "20260101-000000-feature_extraction-vgg16-aaaa")
    outside = _run_folder(tmp_path / "elsewhere" / "20260102-000000-feature_extraction-vgg16-bbbb", "running")
    (runs_dir / outside.name).symlink_to(outside, target_is_directory=True)
    (runs_dir / "20260103-000000-feature_extraction-vgg16-cccc").symlink_to(inside, target_is_directory=True)
    assert [run.id for run in store.list_runs(runs_dir)] == [inside.name]
    assert store.training_run(runs_dir) is None  # the linked "running" run outside is not ours
    with pytest.raises(ValueError, match="not inside the runs folder"):
        store.resolve(outside.name, runs_dir)


def test_runs_created_within_one_second_are_listed_newest_first(tmp_path, monkeypatch):
    # Ids count whole seconds, then a random suffix: sorted by id alone, the older of two runs made in
    # one second came first whenever its suffix sorted higher.
    ids = iter(f"20261207-120000-feature_extraction-efficientnet_lite0-{suffix}" for suffix in ["ffff", "0000", "8888"])
    monkeypatch.setattr(store, "new_run_id", lambda strategy, backbone: next(ids))
    config = TrainConfig(data_dir=str(tmp_path), strategy="feature_extraction")
    created = [store.create(config, tmp_path / "runs") for _ in range(3)]
    assert [run.id for run in store.list_runs(tmp_path / "runs")] == [run.id for run in reversed(created)]


def test_a_run_id_with_a_trailing_slash_or_a_leading_dot_slash_names_the_run(tmp_path):
    # A shell completes a folder name with "/": `tlcore stop ID/` said "Invalid run id".
    run = store.Run(_run_folder(tmp_path / "runs" / "20260101-000000-feature_extraction-vgg16-aaaa"))
    for given in (f"{run.id}/", f"./{run.id}"):
        assert store.resolve(given, tmp_path / "runs").path == run.path.resolve()
    with pytest.raises(ValueError, match="Invalid run id '../'"):
        store.resolve("../", tmp_path / "runs")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _aged(path: Path, seconds: float) -> Path:
    then = os.stat(path).st_mtime - seconds
    os.utime(path, (then, then))
    return path


def test_stale_partials_of_gone_processes_are_removed_and_nothing_else(tmp_path):
    runs_dir = tmp_path / "runs"
    run = _run_folder(runs_dir / "20260101-000000-feature_extraction-vgg16-aaaa")
    cache_entry = runs_dir / ".cache" / "features" / "0123456789abcdef0123"
    cache_entry.mkdir(parents=True)
    dead, alive, old = _dead_pid(), os.getpid(), partials.STALE_PARTIAL_SECONDS + 60
    # A Keras save killed midway leaves a folder or a file, depending on the Keras version.
    partial_model_folder = run / f".partial-{dead}-model.keras"
    (partial_model_folder / "assets").mkdir(parents=True)
    (partial_model_folder / "model.weights.h5").write_bytes(b"\0" * 1000)
    stale = [
        _aged(partial_model_folder, old),
        _aged(_write(run / f".partial-{dead}-best.keras"), old),
        _aged(_write(cache_entry / f".train.{dead}.partial"), old),
        _aged(_write(run / ".status.json.0123456789ab.tmp"), old),
    ]
    kept = [
        _aged(_write(run / f".partial-{alive}-model.keras"), old),  # its process still saves
        _write(run / f".partial-{dead}-other.keras"),  # recent: the pid alone is not trusted
        _aged(_write(cache_entry / "train.npy"), old),
        _aged(_write(run / "model.keras"), old),
        _aged(_write(run / "notes.partial"), old),
    ]
    removed = partials.clean_partials(runs_dir)
    assert sorted(removed) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert (run / "config.json").is_file()


def _write(path: Path) -> Path:
    path.write_bytes(b"partial")
    return path


@pytest.mark.parametrize("content", ["[1]", "[1, 2]", "3", '"text"', "null"])
def test_valid_json_that_is_not_an_object_is_read_as_damaged_like_unparsable_json(tmp_path, content):
    """`runs` crashed for every run ('list' object has no attribute 'get') when one run's status.json
    or summary.json held valid JSON of another type: it must read as a damaged file does."""
    runs_dir = tmp_path / "runs"
    normal = _run_folder(runs_dir / "20260101-000000-feature_extraction-vgg16-aaaa")
    files.write_json(normal / "summary.json", {"results": {"x": {"val_accuracy": 0.7}}, "final_stage": "x"})
    reference = _run_folder(runs_dir / "20260102-000000-feature_extraction-vgg16-bbbb")
    damaged = _run_folder(runs_dir / "20260103-000000-feature_extraction-vgg16-cccc")
    for name in ("status.json", "summary.json", "progress.json"):
        (reference / name).write_text("{not json")
        (damaged / name).write_text(content)
    for folder in (reference, damaged):
        (folder / "metrics.jsonl").write_text(f'{{"epoch": 1, "val_accuracy": 0.5}}\n{{"epo\n{content}\n')

    runs = {run.id: run for run in store.list_runs(runs_dir)}
    assert sorted(runs) == sorted([normal.name, reference.name, damaged.name])
    rows = {run_id: catalog.describe(run) for run_id, run in runs.items()}
    assert rows[normal.name]["state"] == "done" and rows[normal.name]["model_val_accuracy"] == 0.7
    assert rows[damaged.name] == {**rows[reference.name], "run": damaged.name}
    assert rows[damaged.name]["state"] == "unknown" and rows[damaged.name]["best_val_accuracy"] == 0.5
    run = runs[damaged.name]
    assert (run.summary(), run.progress(), run.raw_status()) == ({}, {}, {})
    # `stop` and the worker read the status before writing it: both work on such a folder too.
    run.request_stop()
    assert run.state == "unknown"
    run.set_status("interrupted")
    assert run.state == "interrupted"


def test_metrics_with_bytes_that_are_not_utf8_lose_only_their_damaged_line(tmp_path):
    # A UnicodeDecodeError (a ValueError, not an OSError) went past metrics(): the runs table, the
    # dashboard and the worker's next append_metrics all failed for one damaged file.
    runs_dir = tmp_path / "runs"
    run = store.Run(_run_folder(runs_dir / "20260101-000000-feature_extraction-vgg16-aaaa"))
    (run.path / "metrics.jsonl").write_bytes(
        b'{"stage": "x", "epoch": 1, "val_accuracy": 0.5}\n'
        b'\xff\xfe{"epo\n'
        b'{"stage": "x", "epoch": 2, "val_accuracy": 0.75}\n'
    )
    assert [record["epoch"] for record in run.metrics()] == [1, 2]
    assert catalog.describe(run)["best_val_accuracy"] == 0.75
    run.append_metrics({"stage": "x", "epoch": 3, "val_accuracy": 0.8})
    assert [record["epoch"] for record in run.metrics()] == [1, 2, 3]


def test_a_config_or_labels_of_the_wrong_json_type_read_as_damaged(tmp_path):
    run = store.Run(_run_folder(tmp_path / "runs" / "20260101-000000-feature_extraction-vgg16-aaaa"))
    (run.path / "config.json").write_text("[1]")
    (run.path / "labels.json").write_text('{"cats": 0}')
    assert (run.config(), run.labels()) == ({}, [])
    row = store.describe(run)
    assert (row["strategy"], row["backbone"], row["state"]) == (None, None, "done")


def test_a_file_name_that_is_not_utf8_is_written_as_its_bytes_on_disk(tmp_path):
    """`predict --csv` on a folder holding such a file failed with a UnicodeEncodeError naming no file."""
    name = os.fsdecode(b"bad\xff\xfename.jpg")
    target = tmp_path / "predictions.csv"
    files.write_atomic(target, f"file\n{name}\n")
    assert target.read_bytes() == b"file\nbad\xff\xfename.jpg\n"
    files.write_json(tmp_path / "dataset.json", {"path": name})  # JSON escapes it: still valid UTF-8.
    assert files.read_json(tmp_path / "dataset.json") == {"path": name}


def test_a_run_writes_nothing_into_a_folder_that_was_deleted(tmp_path):
    """A worker's writes (status, metrics, progress) re-created a run folder deleted while it trained."""
    run = store.Run(_run_folder(tmp_path / "runs" / "20260101-000000-feature_extraction-vgg16-aaaa", "running"))
    shutil.rmtree(run.path)
    for write in (
        lambda: run.set_status("failed", error="x"),
        lambda: run.append_metrics({"epoch": 1}),
        lambda: run.set_progress({"batch": 1}),
    ):
        with pytest.raises(store.RunFolderGone, match="was deleted while it trained"):
            write()
    assert not run.path.exists()
    files.write_json(tmp_path / "elsewhere" / "a.json", {})  # Other writers still make their folders.
    assert (tmp_path / "elsewhere" / "a.json").is_file()


def test_a_live_process_is_alive_though_its_recorded_start_reads_a_second_off():
    """Linux gives the boot time in whole seconds of the wall clock, so a second reading of a worker's start can
    differ by one: the app showed a live training as "interrupted" (killed or crashed) until its next status."""
    recorded = psutil.Process(os.getpid()).create_time()
    for drift in (-1.0, 1.0, 2.5):
        assert store.process_alive(os.getpid(), recorded + drift)
    assert store.process_alive(os.getpid(), None)
    # Another process's start (a recycled pid) is minutes away, not seconds.
    assert not store.process_alive(os.getpid(), recorded - 120)
    assert not store.process_alive(None, recorded)


def test_a_running_run_whose_workers_start_reads_a_second_off_is_still_running(tmp_path):
    run = store.create(TrainConfig(data_dir=str(tmp_path)), tmp_path / "runs")
    started = psutil.Process(os.getpid()).create_time() + 1.0
    run.set_status("running", pid=os.getpid(), started=started, began=time.time())
    assert run.state == "running"
    run.set_status("running", pid=os.getpid(), started=started - 600)
    assert run.state == "interrupted"
