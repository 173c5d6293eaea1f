"""The run folder on disk: file permissions, atomic writes, what a listing includes, stale partials cleaned."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tlcore.runs import partials, store


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
    store.write_json(target, {"state": "queued"})
    assert _mode(target) == file_mode
    assert _mode(target.parent) == folder_mode
    assert json.loads(target.read_text()) == {"state": "queued"}
    assert [path.name for path in target.parent.iterdir()] == ["status.json"]  # no temporary left


def test_a_concurrent_reader_sees_the_old_or_the_new_file_never_a_partial_one(tmp_path):
    target = tmp_path / "status.json"
    store.write_json(target, {"version": 0, "padding": "x" * 50_000})
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
            store.write_json(target, {"version": version, "padding": "x" * 50_000})
    finally:
        writing.clear()
        reader.join()
    assert not damaged
    assert len(seen) > 1  # the reader really read while the file was being replaced
    assert json.loads(target.read_text())["version"] == 199
    assert sorted(path.name for path in tmp_path.iterdir()) == ["status.json"]


def _run_folder(path: Path, state: str = "done") -> Path:
    path.mkdir(parents=True)
    store.write_json(path / "config.json", {"strategy": "feature_extraction", "backbone": "vgg16"})
    store.write_json(path / "status.json", {"state": state})
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
