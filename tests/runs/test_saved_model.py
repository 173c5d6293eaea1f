"""Which stage a run's model holds (tlcore.runs.saved_model): believed only for the file it was written for, and
offered for a run cut short only when a finished stage left its model."""

from __future__ import annotations

import json
import os

import pytest

from tlcore import files
from tlcore.config import TrainConfig
from tlcore.runs import catalog, resumption, saved_model, store
from tlcore.serving import predict


@pytest.fixture()
def run(tmp_path) -> store.Run:
    return store.create(TrainConfig(data_dir=str(tmp_path), strategy="all"), tmp_path / "runs")


def _live(run: store.Run, state: str) -> None:
    """Sets a state; a live pid (this test's) for the active ones, so that the store does not read them as
    interrupted."""
    run.set_status(state, pid=os.getpid() if state in store.ACTIVE_STATES else None)


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


def test_the_saved_stage_is_the_records_else_a_done_runs_last_stage(run):
    results = {"feature_extraction": {}, "frozen_augmented": {}, "fine_tuning": {}}
    _live(run, "running")
    assert saved_model.saved_stage(run, results) is None  # Nothing saved yet that a record vouches for.
    run.set_status("done")
    assert saved_model.saved_stage(run, results) == "fine_tuning"
    assert saved_model.saved_stage(run, {}) is None
    # A run cut short keeps the model of the stage its record names, whatever the results list.
    run.set_status("interrupted")
    run.model_path.write_bytes(b"PK\x03\x04 feature extraction's model")
    saved_model.record(run, "feature_extraction", 0.9)
    assert saved_model.saved_stage(run, results) == "feature_extraction"


def test_a_hand_edited_accuracy_reads_as_none_and_a_deleted_run_folder_is_not_made_again(run):
    run.model_path.write_bytes(b"PK\x03\x04 a model")
    saved_model.record(run, "feature_extraction", 0.9)
    values = {**saved_model.stage_record(run), "val_accuracy": "ninety"}
    (run.path / saved_model.RECORD_FILE).write_text(json.dumps(values))
    assert saved_model.stage_record(run)["val_accuracy"] is None
    run.set_status("interrupted")
    assert catalog.describe(run)["model_val_accuracy"] is None  # Not the string, which the tables would format.

    model = run.model_path
    for path in run.path.iterdir():
        path.unlink()
    run.path.rmdir()
    with pytest.raises(FileNotFoundError):
        saved_model.record(run, "feature_extraction", 0.9)
    assert not run.path.exists() and not model.exists()


@pytest.mark.parametrize(
    ("state", "offered", "stage_named"),
    [
        ("interrupted", True, True),
        ("failed", True, True),
        ("stopped", True, True),
        ("done", True, False),
        ("running", False, False),
        ("queued", False, False),
    ],
)
def test_a_run_offers_its_model_when_it_ended_or_was_cut_short_after_a_stage(run, state, offered, stage_named):
    run.model_path.write_bytes(b"PK\x03\x04 feature extraction's model")
    saved_model.record(run, "feature_extraction", 0.88)
    _live(run, state)
    assert saved_model.usable(run) is offered
    row = catalog.describe(run)
    assert row["model_stage"] == ("feature_extraction" if stage_named else None)
    assert row["model_val_accuracy"] == (0.88 if offered else None)


def test_the_record_is_what_the_tables_believe_over_an_older_summary(run):
    """A stopped run resumed, then killed after its next stage: its summary.json is from the stop."""
    files.write_json(run.path / "summary.json", {"results": {"feature_extraction": {"val_accuracy": 0.8}}})
    run.model_path.write_bytes(b"PK\x03\x04 frozen + augmentation's model")
    saved_model.record(run, "frozen_augmented", 0.93)
    run.set_status("interrupted")
    row = catalog.describe(run)
    assert (row["model_stage"], row["model_val_accuracy"]) == ("frozen_augmented", 0.93)


def test_a_live_run_or_one_cut_short_without_a_record_is_refused_with_why(run):
    run.model_path.write_bytes(b"PK\x03\x04 a stage's model")
    saved_model.record(run, "feature_extraction", 0.9)
    _live(run, "running")
    with pytest.raises(predict.ModelLoadError, match=f"Run {run.id} is running: its model is used once the run"):
        predict.load(run)
    run.model_path.write_bytes(b"PK\x03\x04 a model of unknown stage")  # Its record no longer matches.
    run.set_status("failed", error="out of memory")
    assert not saved_model.usable(run)
    with pytest.raises(predict.ModelLoadError, match="not recorded: it is not used. Start it again as a new run."):
        predict.load(run)
    run.set_status("interrupted")  # Nothing backed up: not resumable either.
    with pytest.raises(predict.ModelLoadError, match="not recorded: it is not used. Start it again as a new run."):
        predict.load(run)
    stage = resumption.resume_point(run).stage
    files.write_json(resumption.backup_folder(run, stage) / resumption.METADATA_FILE, {"epoch": 2})  # Resumable.
    with pytest.raises(predict.ModelLoadError, match="not recorded: it is not used. Resume the run to finish it."):
        predict.load(run)
    run.model_path.unlink()  # Cut short in its first stage: no model at all, as load_model_file says.
    with pytest.raises(predict.ModelLoadError, match="no model file"):
        predict.load(run)
