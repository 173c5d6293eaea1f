"""Which stage a run's model holds (tlcore.runs.saved_model): believed only for the file it was written for, and
offered for a run cut short only when a finished stage left its model."""

from __future__ import annotations

import os

import pytest

from tlcore.config import TrainConfig
from tlcore.runs import saved_model, store


@pytest.fixture()
def run(tmp_path) -> store.Run:
    return store.create(TrainConfig(data_dir=str(tmp_path), strategy="all"), tmp_path / "runs")


def test_the_record_is_believed_for_the_model_file_it_was_written_for_only(run):
    assert saved_model.stage_record(run) is None  # No model, no record.
    run.model_path.write_bytes(b"PK\x03\x04 frozen + augmentation's model")
    saved_model.record(run, "frozen_augmented", 0.91)
    assert saved_model.stage_record(run)["stage"] == "frozen_augmented"
    assert saved_model.stage_record(run)["val_accuracy"] == 0.91

    # Another model written after the record (a process killed before it wrote its own): not believed.
    run.model_path.write_bytes(b"PK\x03\x04 fine-tuning's model, a longer file")
    assert saved_model.stage_record(run) is None
    saved_model.record(run, "fine_tuning", 0.93)
    stat = run.model_path.stat()
    os.utime(run.model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # Same size, rewritten later.
    assert saved_model.stage_record(run) is None
    (run.path / saved_model.RECORD_FILE).write_text("[damaged")
    assert saved_model.stage_record(run) is None


@pytest.mark.parametrize(
    ("state", "offered"),
    [("interrupted", True), ("failed", True), ("done", True), ("stopped", True), ("running", False)],
)
def test_a_run_offers_its_model_when_it_ended_or_was_cut_short_after_a_stage(run, state, offered):
    run.model_path.write_bytes(b"PK\x03\x04 feature extraction's model")
    saved_model.record(run, "feature_extraction", 0.88)
    # A live pid for "running" (this test's), so that the store does not read it as interrupted.
    run.set_status(state, pid=os.getpid() if state == "running" else None)
    assert saved_model.usable(run) is offered
    earlier = saved_model.earlier_stage(run)
    assert (earlier is not None) is (state in ("interrupted", "failed"))


def test_a_run_cut_short_in_its_first_stage_offers_nothing(run):
    run.set_status("failed", error="out of memory")
    assert not saved_model.usable(run) and saved_model.earlier_stage(run) is None
    # A model file without its record (written by a version before records): not offered for a run cut short.
    run.model_path.write_bytes(b"PK\x03\x04 a model of unknown stage")
    assert not saved_model.usable(run)
