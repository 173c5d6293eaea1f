"""The learning-rate finder as a job: a worker process of its own that waits for the training lock."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from tests.helpers.runs import train_config
from tests.helpers.server import wait_until
from tlcore.runs import finder_jobs, store, worker


@pytest.fixture(scope="module")
def photos(catsdogs_subset) -> Path:
    return catsdogs_subset("finder", train=16, validation=4)


def test_finds_wait_for_a_training_holding_the_lock_then_two_at_once_each_finish_in_their_own_process(photos, tmp_path):
    from tlcore.training import lr_finder  # Imports Keras, which only the tests that train need.

    config = train_config(photos, batch_size=4)
    with open(tmp_path / worker.LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # As a training run holds it.
        jobs = [finder_jobs.start(config, tmp_path, steps=10) for _ in range(2)]
        pids = [wait_until(lambda job=job: job.raw_status().get("pid"), 60, "the find's pid") for job in jobs]
        time.sleep(3)  # Well into their wait for the lock.
        assert [job.status()["state"] for job in jobs] == ["queued", "queued"]
        assert not [job for job in jobs if (job.path / "sweep.json").exists()]
    assert os.getpid() not in pids and len(set(pids)) == 2
    for job in jobs:
        wait_until(lambda job=job: job.status()["state"] in store.FINAL_STATES, 300, "the find to end")
        assert job.status()["state"] == "done", (job.status(), (job.path / "log.txt").read_text()[-2000:])
        sweep = finder_jobs.sweep_of(job)
        assert sweep.learning_rates[0] == pytest.approx(1e-6) and len(sweep.losses) == len(sweep.learning_rates)
        assert sweep.suggestion == lr_finder.suggest(sweep.learning_rates, sweep.losses)
    # One after the other on one feature cache: neither left a partial file, and the runs table lists neither.
    leftovers = [path.name for path in tmp_path.rglob("*") if path.name.endswith((".partial", ".tmp"))]
    assert not leftovers
    assert store.list_runs(tmp_path) == []


def test_a_find_of_a_missing_folder_fails_with_the_reason_as_bad_input(tmp_path):
    job = finder_jobs.create(train_config(tmp_path / "no-such-folder"), tmp_path, steps=10)
    status = finder_jobs.execute(job, tmp_path)
    assert status["state"] == "failed" and status["bad_input"]
    assert "no-such-folder" in status["error"]
    assert finder_jobs.sweep_of(job) is None


def test_bad_sweep_settings_are_refused_before_any_folder_is_written(tmp_path):
    with pytest.raises(ValueError, match="received start=1.0, end=0.1"):
        finder_jobs.create(train_config(tmp_path), tmp_path, start=1.0, end=0.1)
    with pytest.raises(ValueError, match="steps must be an integer >= 10, received 3"):
        finder_jobs.create(train_config(tmp_path), tmp_path, steps=3)
    assert not finder_jobs.jobs_folder(tmp_path).exists()


def test_finished_finds_are_removed_a_day_after_they_ended(tmp_path):
    old, recent = (finder_jobs.create(train_config(tmp_path), tmp_path, steps=10) for _ in range(2))
    now = time.time()
    old.set_status("done", finished=now - finder_jobs.KEEP_FINISHED_SECONDS - 1)
    recent.set_status("done", finished=now - 60)
    assert finder_jobs.remove_finished(finder_jobs.jobs_folder(tmp_path), now) == [old.path]
    assert recent.path.is_dir() and not old.path.exists()
