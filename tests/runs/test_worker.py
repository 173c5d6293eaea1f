"""Worker processes: a run trains outside the caller, can be stopped, queues, and survives crashes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.paths import PROJECT_ROOT
from tests.helpers.runs import train_config
from tests.helpers.server import wait_until
from tlcore import files
from tlcore.config import TrainConfig
from tlcore.runs import store, worker
from tlcore.serving import predict


@pytest.fixture(scope="module")
def photos(catsdogs_subset) -> Path:
    return catsdogs_subset("worker", train=16, validation=4)


def long_config(data_dir: Path, epochs: int = 200) -> TrainConfig:
    # Many small epochs: long enough to act on while it runs, each batch quick.
    return train_config(data_dir, strategy="frozen_augmented", epochs=epochs, batch_size=2)


def test_cli_stop_ends_a_running_worker_as_stopped_with_metrics_and_model(photos, tmp_path):
    run = worker.start(long_config(photos), tmp_path)
    wait_until(lambda: len(run.metrics()) >= 2, 120, "two epochs")
    completed = subprocess.run(
        [sys.executable, "-m", "tlcore", "stop", run.id, "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    requested_at_epoch = len(run.metrics())
    wait_until(lambda: run.status()["state"] == "stopped", 60, "the stopped state")
    # It ended within the epoch that was running: at most one more epoch record.
    assert len(run.metrics()) <= requested_at_epoch + 1
    assert run.summary()["stopped"] is True
    predictor = predict.load(run, tmp_path)
    assert predictor.labels == ("cats", "dogs")


def test_a_run_folder_deleted_while_it_trains_ends_its_worker_and_stays_deleted(photos, tmp_path):
    # The worker's next write (metrics, status "failed", a backup) made the deleted folder again.
    run = worker.start(long_config(photos), tmp_path)
    wait_until(lambda: len(run.metrics()) >= 1, 120, "an epoch")
    process = psutil.Process(run.raw_status()["pid"])
    for _ in range(20):  # The worker may add a file while the folder is being removed: remove again.
        shutil.rmtree(run.path, ignore_errors=True)
        if not run.path.exists():
            break
        time.sleep(0.1)
    process.wait(timeout=60)  # Ended (its exit status is collected by the thread worker.launch starts).
    time.sleep(1)
    assert not run.path.exists(), sorted(path.name for path in run.path.rglob("*"))
    # The queue lock was released: the next run trains.
    after = worker.start(long_config(photos, epochs=1), tmp_path)
    wait_until(lambda: after.status()["state"] == "done", 180, "the next run to finish")


def test_killed_worker_is_reported_as_interrupted_and_releases_the_queue(photos, tmp_path):
    first = worker.start(long_config(photos), tmp_path)
    wait_until(lambda: first.raw_status().get("state") == "running", 120, "the first run to start")
    second = worker.start(long_config(photos, epochs=1), tmp_path)
    time.sleep(3)
    assert second.status()["state"] == "queued"  # One training at a time.

    killed = first.raw_status()["pid"]
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: first.status()["state"] == "interrupted", 30, "the interrupted state")
    assert "killed" in first.status()["error"] or "ended" in first.status()["error"]
    # The process that started it (here pytest, in the app the Streamlit server) collected its exit:
    # no zombie (<defunct>) is left behind.
    wait_until(lambda: not psutil.pid_exists(killed), 10, "the killed worker to be reaped")
    # The lock died with the process: the queued run now trains to the end.
    wait_until(lambda: second.status()["state"] == "done", 180, "the queued run to finish")
    assert store.describe(first)["state"] == "interrupted"


def test_a_queued_run_can_be_stopped_before_it_starts(photos, tmp_path):
    first = worker.start(long_config(photos), tmp_path)
    wait_until(lambda: first.raw_status().get("state") == "running", 120, "the first run to start")
    second = worker.start(long_config(photos, epochs=1), tmp_path)
    time.sleep(2)
    second.request_stop()
    wait_until(lambda: second.status()["state"] == "stopped", 30, "the queued run to stop")
    assert second.metrics() == []
    first.request_stop()
    wait_until(lambda: first.status()["state"] == "stopped", 60, "the first run to stop")


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="the idle scheduling class is Linux-only")
def test_a_worker_and_every_thread_tensorflow_starts_run_in_the_idle_class():
    code = (
        "import os, json\n"
        "import numpy\n"  # Starts OpenBLAS's threads before the worker lowers its priority, as the CLI does.
        "from tlcore.runs import worker\n"
        "mode = worker.lower_priority()\n"
        "import tensorflow as tf\n"
        "tf.reduce_sum(tf.random.uniform((512, 512)) @ tf.random.uniform((512, 512))).numpy()\n"
        "tids = [int(tid) for tid in os.listdir('/proc/self/task')]\n"
        "print(json.dumps({'mode': mode, 'threads': len(tids),"
        " 'idle': sum(os.sched_getscheduler(tid) == os.SCHED_IDLE for tid in tids)}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["mode"] == "idle"
    assert report["threads"] > 2  # TensorFlow's thread pools are running ...
    assert report["idle"] == report["threads"]  # ... and all of them only take CPU nobody else wants.


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_the_malloc_arena_cap_is_accepted_by_the_c_library():
    code = "from tlcore.runs import worker; print(worker.limit_malloc_arenas())"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT
    )
    assert completed.stdout.strip() == "True"


# --- the queue and the one writer of the status ------------------------------------------------


@pytest.fixture
def held_lock(tmp_path):
    """The training lock of tmp_path, held by this test process (as a training run would hold it)."""
    import fcntl

    with open(tmp_path / worker.LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def test_a_second_start_of_the_very_settings_of_a_waiting_run_is_refused_naming_it(photos, tmp_path, monkeypatch):
    # A second click queued an identical run: the same settings and seed train the same model again.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))  # No process: only the queueing.
    config = long_config(photos)
    waiting = store.create(config, tmp_path)  # Queued, its process not started yet.
    with pytest.raises(ValueError, match=f"Run {waiting.id} of these very settings is queued already"):
        worker.start(config, tmp_path)
    assert [run.id for run in store.list_runs(tmp_path)] == [waiting.id]
    other_seed = worker.start(
        train_config(photos, strategy="frozen_augmented", epochs=200, batch_size=2, seed=7), tmp_path
    )
    assert other_seed.id != waiting.id  # Queued (its process then failed to start here, as patched).
    waiting.set_status("running", pid=os.getpid(), started=psutil.Process().create_time())
    waiting.request_stop()
    assert waiting.state == "stopping"  # It will not finish: the same settings again are allowed.
    again = worker.start(config, tmp_path)
    assert again.id not in (waiting.id, other_seed.id)


def test_a_run_whose_process_cannot_be_started_is_failed(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    run = worker.start(long_config(photos), tmp_path)
    status = run.status()
    assert status["state"] == "failed"
    assert "could not be started" in status["error"] and "no-such-python" in status["error"]


def test_a_queued_run_whose_process_never_started_is_interrupted_after_the_grace_period(photos, tmp_path):
    fresh = store.create(long_config(photos), tmp_path)
    stale = store.create(long_config(photos), tmp_path)
    status = stale.raw_status()
    status["created"] = time.time() - store.QUEUED_WITHOUT_PROCESS_SECONDS - 1
    files.write_json(stale.path / "status.json", status)
    assert fresh.status()["state"] == "queued"
    assert stale.status()["state"] == "interrupted"
    assert "did not start" in stale.status()["error"]


def test_a_stop_request_never_rewrites_the_status(photos, tmp_path):
    """The worker is the status's one writer: a stop request is a file of its own, "stopping" is derived."""
    run = store.create(long_config(photos), tmp_path)
    # This test process plays the live worker.
    me = psutil.Process(os.getpid())
    run.set_status("running", pid=me.pid, started=me.create_time())
    before = (run.path / "status.json").read_bytes()
    run.request_stop()
    assert (run.path / "status.json").read_bytes() == before
    assert run.status()["state"] == "stopping"
    run.set_status("done")  # The worker finishes...
    run.request_stop()  # ...as Stop is pressed once more.
    assert run.status()["state"] == "done"


def test_stop_requested_in_a_loop_as_a_real_worker_finishes_leaves_its_final_state(photos, tmp_path):
    run = worker.start(long_config(photos, epochs=2), tmp_path)
    pid = wait_until(lambda: run.raw_status().get("pid"), 60, "the worker's pid")
    wait_until(lambda: run.raw_status().get("state") == "running", 120, "the run to start")
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        run.request_stop()
    final = run.raw_status()["state"]
    assert final in ("stopped", "done"), run.raw_status()
    assert run.status()["state"] == final


def test_a_queued_worker_waits_without_tensorflow(photos, tmp_path, held_lock):
    run = worker.start(long_config(photos, epochs=1), tmp_path)
    pid = wait_until(lambda: run.raw_status().get("pid"), 60, "the queued worker's pid")
    time.sleep(3)  # Well into its wait for the lock.
    assert run.status()["state"] == "queued"
    mapped = {Path(region.path).name for region in psutil.Process(pid).memory_maps()}
    assert not [name for name in mapped if "tensorflow" in name], sorted(mapped)
    run.request_stop()
    wait_until(lambda: run.status()["state"] == "stopped", 30, "the queued run to stop")


def test_the_queue_is_capped_with_a_clear_error(photos, tmp_path, held_lock):
    for _ in range(worker.MAX_QUEUED):
        store.create(long_config(photos), tmp_path)  # queued, their workers not started yet
    before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(ValueError, match=f"{worker.MAX_QUEUED} runs already wait in the queue"):
        worker.start(long_config(photos), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == before
