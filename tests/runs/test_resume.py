"""Resuming interrupted runs: a real worker killed (SIGKILL) mid-stage twice and resumed each time, then
compared with an uninterrupted run of the same seed; runs that cannot be resumed say why."""

from __future__ import annotations

import errno
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from benchmarks.resume import kill_after_backup
from tests.helpers.cli import last_json, tlcore
from tests.helpers.runs import LITE0_SETTINGS, finished_run, train_config
from tlcore import files
from tlcore.config import TrainConfig
from tlcore.runs import catalog, resumption, saved_model, store, worker
from tlcore.training import resume

FIRST_EPOCHS = 4  # feature_extraction's and frozen_augmented's
FINE_TUNING_EPOCHS = 4


def _records(run: store.Run, stage: str) -> list[dict]:
    return [record for record in run.metrics() if record["stage"] == stage]


@pytest.fixture(scope="module")
def resume_data(catsdogs_subset) -> Path:
    return catsdogs_subset("resume_photos", train=30, validation=10)


def _config(data: Path):
    # Small batches: many steps per epoch, so a poll sees a stage's first epoch long before its last.
    return train_config(
        data,
        LITE0_SETTINGS,
        strategy="all",
        epochs=FIRST_EPOCHS,
        fine_tuning_epochs=FINE_TUNING_EPOCHS,
        batch_size=2,
        augmented_views=2,
        seed=7,
    )


def _offers_its_last_finished_stage(run: store.Run, stage: str, monkeypatch) -> None:
    """A run killed after `stage` finished keeps that stage's model: Predict lists it, and it scores what the
    stage recorded on the validation photos."""
    from streamlit.testing.v1 import AppTest

    from tests.app.page_kit import APP, TIMEOUT, open_page, texts
    from tlcore.insight import evaluate
    from tlcore.serving import predict

    recorded = resumption.finished_stages(run)[stage]["val_accuracy"]
    assert run.state == "interrupted" and saved_model.usable(run)
    kept = saved_model.stage_record(run)
    assert (kept["stage"], kept["val_accuracy"], kept["finished"]) == (stage, recorded, True)
    row = catalog.describe(run)
    assert (row["model_stage"], row["accuracy"]) == (stage, recorded)
    peaks = {name: result["best_val_accuracy"] for name, result in resumption.finished_stages(run).items()}
    assert (row["best_stage"], row["best_stage_accuracy"]) == max(peaks.items(), key=lambda item: item[1])
    listed = tlcore("runs", "--runs-dir", str(run.path.parent))
    assert f"model_val_accuracy={recorded:.4f} (the model of {stage})" in listed.stdout, listed.stdout
    validation = evaluate.dataset_for(run)
    paths = validation.paths("validation")
    chosen = evaluate.probabilities_for(predict.load(run), paths).argmax(axis=1)
    scored = float((chosen == list(validation.labels("validation"))).mean())
    assert abs(scored - recorded) <= 1 / len(paths), (scored, recorded)  # One photo near 0.5 may tip.

    monkeypatch.setenv("TLCORE_RUNS_DIR", str(run.path.parent))
    at = open_page("pages/3_Predict.py")
    (label,) = at.selectbox(key="predict_run").options
    assert label.endswith(f"(interrupted, model of frozen + augmentation) · {run.id}"), label
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    kept = f"The model of its last finished stage (frozen + augmentation, {recorded:.1%} on validation) is kept"
    assert kept in texts(at)
    assert any(button.label.startswith("Evaluate on the validation") for button in at.button)


def test_a_killed_worker_resumes_each_stage_from_its_last_backed_up_epoch(tmp_path, resume_data, monkeypatch):
    runs = tmp_path / "runs"
    run = worker.start(_config(resume_data), runs)

    # Killed in the head's fit on cached features, then in fine-tuning: each stage continues from its backup.
    first_kill = kill_after_backup(run, "feature_extraction")
    at_first_kill = _records(run, "feature_extraction")
    assert len(at_first_kill) < FIRST_EPOCHS, "the kill came after the stage finished: nothing to resume mid-stage"
    point = resumption.resume_point(run)
    assert point.stage == "feature_extraction" and point.finished == ()
    backed_up = point.epoch
    assert backed_up >= len(at_first_kill) - 1 >= 0
    # No stage finished: no model to offer.
    assert not run.model_path.exists() and not saved_model.usable(run)

    worker.resume(run, runs)
    second_kill = kill_after_backup(run, "fine_tuning")
    assert len(_records(run, "fine_tuning")) < FINE_TUNING_EPOCHS, "fine-tuning finished before the kill"
    before_second = [record for record in run.metrics() if record["stage"] != "fine_tuning"]
    point = resumption.resume_point(run)
    assert (point.stage, point.finished) == ("fine_tuning", ("feature_extraction", "frozen_augmented"))
    _offers_its_last_finished_stage(run, "frozen_augmented", monkeypatch)

    # The second resume from the command line, which trains in its own process as `train` does.
    result = tlcore("train", "--resume", run.id, "--runs-dir", str(runs), "--json")
    assert result.returncode == 0, result.stderr
    assert f"Resuming run {run.id}: {point.describe()}" in result.stderr
    assert point.describe().startswith(f"fine_tuning from epoch {point.epoch + 1} (done: feature_extraction, ")
    assert last_json(result)["status"] == "done"
    status = run.status()
    assert status["state"] == "done", status
    assert status["resumed"] == 2
    assert run.model_path.is_file() and run.model_path.stat().st_size > 0
    assert not resumption.folder(run).exists()  # A done run keeps no backups.
    assert saved_model.stage_record(run)["stage"] == "fine_tuning" and catalog.describe(run)["model_stage"] is None

    records = run.metrics()
    # Every epoch of every stage once, in order, none cut short; fine-tuning continues frozen_augmented's count.
    for stage, epochs in (("feature_extraction", FIRST_EPOCHS), ("frozen_augmented", FIRST_EPOCHS)):
        assert [record["stage_epoch"] for record in _records(run, stage)] == list(range(1, epochs + 1))
    assert [record["epoch"] for record in _records(run, "fine_tuning")] == list(
        range(FIRST_EPOCHS + 1, FIRST_EPOCHS + FINE_TUNING_EPOCHS + 1)
    )
    assert not any(record.get("partial") for record in records)
    # The backed-up epochs were not trained again; the first resume trained the epochs after them.
    feature_records = _records(run, "feature_extraction")
    assert feature_records[:backed_up] == at_first_kill[:backed_up]
    assert all(record["time"] > first_kill for record in feature_records[backed_up:])
    # The second resume did not train feature extraction or frozen_augmented again.
    assert [record for record in records if record["stage"] != "fine_tuning"] == before_second
    resumed_fine_tuning = [record for record in _records(run, "fine_tuning") if record["time"] > second_kill]
    assert resumed_fine_tuning and resumed_fine_tuning[0]["stage_epoch"] > 1
    results = run.summary()["results"]
    assert results["feature_extraction"]["features_from_cache"] is True  # The first resume reused the cache.
    assert {stage: results[stage]["epochs"] for stage in results} == {
        "feature_extraction": FIRST_EPOCHS,
        "frozen_augmented": FIRST_EPOCHS,
        "fine_tuning": FINE_TUNING_EPOCHS,
    }

    # The same seed uninterrupted (in this process, on the same feature cache): the same curves, exactly.
    reference = finished_run(_config(resume_data), runs)
    keys = ("stage", "epoch", "accuracy", "loss", "val_accuracy", "val_loss")
    assert [{key: record.get(key) for key in keys} for record in records] == [
        {key: record.get(key) for key in keys} for record in reference.metrics()
    ]
    assert results["fine_tuning"]["val_accuracy"] == reference.summary()["results"]["fine_tuning"]["val_accuracy"]


def test_a_done_run_is_not_resumable_and_says_so(tiny_trained_run):
    reason = resumption.why_not_resumable(tiny_trained_run)
    assert reason == f"Run {tiny_trained_run.id} is done: it finished every stage, so there is nothing to resume."
    with pytest.raises(ValueError, match="is done"):
        worker.resume(tiny_trained_run)
    result = tlcore("train", "--resume", tiny_trained_run.id, "--runs-dir", str(tiny_trained_run.path.parent))
    assert result.returncode == 2
    assert reason in result.stderr
    assert tiny_trained_run.state == "done"


def test_a_run_interrupted_before_its_first_epoch_has_nothing_to_resume(tmp_path, catsdogs_subset):
    run = store.create(train_config(catsdogs_subset("no_backup", train=2, validation=1)), tmp_path)
    run.set_status("running", pid=2**22 + 1, started=1.0)  # A worker that is gone, before any epoch.
    assert run.state == "interrupted"
    reason = resumption.why_not_resumable(run)
    assert reason.startswith(f"Run {run.id} has nothing to resume from: no epoch of it finished")
    assert str(resumption.folder(run)) in reason
    result = tlcore("train", "--resume", str(run.path), "--runs-dir", str(tmp_path))
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {reason}")


def test_resume_refuses_settings_of_its_own(tiny_trained_run):
    result = tlcore("train", "--resume", tiny_trained_run.id, "--epochs", "3")
    assert result.returncode == 2
    assert "--resume continues a run with the settings it was started with" in result.stderr
    assert "epochs" in result.stderr


@pytest.mark.parametrize("keep_weights, resumable", [("best", False), ("last", True)])
def test_a_run_that_keeps_its_best_epoch_is_not_resumed_mid_stage(tmp_path, catsdogs_subset, keep_weights, resumable):
    # Its backup holds the last epoch's weights; the best ones from before the interruption are gone.
    data = catsdogs_subset(f"keeps_{keep_weights}", train=2, validation=1)
    run = store.create(train_config(data, keep_weights=keep_weights), tmp_path)
    run.set_status("running", pid=2**22 + 1, started=1.0)
    stage = resumption.resume_point(run).stage
    files.write_json(resumption.backup_folder(run, stage) / resumption.METADATA_FILE, {"epoch": 2})
    assert resumption.resume_point(run).epoch == 2
    reason = resumption.why_not_resumable(run)
    if resumable:
        assert reason is None
    else:
        assert reason.startswith(f"Run {run.id} keeps each stage's best epoch (keep_weights best or early stopping)")


def _stopped_with_a_backup(config, runs_dir: Path) -> store.Run:
    """A stopped run whose first stage has a backup of epoch 2 (no weights: nothing trains from it here)."""
    run = store.create(config, runs_dir)
    run.set_status("stopped")
    stage = resumption.resume_point(run).stage
    files.write_json(resumption.backup_folder(run, stage) / resumption.METADATA_FILE, {"epoch": 2})
    assert resumption.why_not_resumable(run) is None
    return run


def test_a_resume_whose_process_cannot_start_leaves_the_run_resumable(tmp_path, catsdogs_subset, monkeypatch):
    # The launch marked the run "failed", which is never resumable: one passing error (too many open files,
    # say) threw away every backup of the run.
    data = catsdogs_subset("resume_launch", train=2, validation=1)
    run = _stopped_with_a_backup(train_config(data), tmp_path)

    def cannot_start(*arguments, **keywords):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(worker.subprocess, "Popen", cannot_start)
    worker.resume(run, tmp_path)
    assert run.state == "interrupted"
    assert run.status()["error"] == "The train process could not be started: [Errno 24] Too many open files"
    assert resumption.why_not_resumable(run) is None
    # A new run whose process cannot start has nothing to resume: failed.
    assert worker.start(train_config(data), tmp_path).state == "failed"


def test_a_resume_of_a_run_deleted_meanwhile_is_refused_by_name(tmp_path, catsdogs_subset):
    # Deleted in another tab: the resume lock's open() raised FileNotFoundError past the page's Resume button.
    run = _stopped_with_a_backup(train_config(catsdogs_subset("resume_deleted", train=2, validation=1)), tmp_path)
    shutil.rmtree(run.path)
    with pytest.raises(ValueError, match=f"No run '{run.id}': its folder is gone"):
        worker.prepare_resume(run)


def test_two_resumes_of_one_run_at_once_queue_it_once(tmp_path, catsdogs_subset, monkeypatch):
    # Both callers passed the check while the data set was scanned, and the run got two workers.
    data = catsdogs_subset("resume_twice", train=2, validation=1)
    run = _stopped_with_a_backup(train_config(data), tmp_path)
    scan = worker.run_data.scan_for_run

    def slow_scan(*arguments, **keywords):
        time.sleep(0.5)  # A large data set: both callers are inside the scan at once on the old code.
        return scan(*arguments, **keywords)

    monkeypatch.setattr(worker.run_data, "scan_for_run", slow_scan)
    outcomes = []

    def prepare():
        try:
            worker.prepare_resume(run)
            outcomes.append("queued")
        except ValueError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2 and sorted(outcomes) == sorted(
        [
            "queued",
            f"Run {run.id} is queued: only an interrupted or stopped run can be "
            "resumed (expected one of interrupted, stopped).",
        ]
    )
    assert run.raw_status()["resumed"] == 1


def test_a_run_stopped_after_feature_extraction_resumes_frozen_augmented_from_its_head(tmp_path, resume_data):
    """Frozen + augmentation continues feature extraction's head: a resumed run restores that head first."""
    runs = tmp_path / "runs"
    run = worker.start(_config(resume_data), runs)
    deadline = time.monotonic() + 600
    while "feature_extraction" not in resumption.finished_stages(run):
        assert run.state in ("queued", "running") and time.monotonic() < deadline, run.status()
        time.sleep(0.01)
    run.request_stop()
    while run.state not in store.FINAL_STATES:
        time.sleep(0.05)
    point = resumption.resume_point(run)
    assert (run.state, point.stage, point.epoch) == ("stopped", "frozen_augmented", 0), run.status()

    result = tlcore("train", "--resume", run.id, "--runs-dir", str(runs), "--json")
    assert result.returncode == 0, result.stderr
    assert "[feature_extraction] finished before the run was resumed: restoring its weights" in result.stderr
    assert "[frozen_augmented] the head starts from the one feature extraction trained" in result.stderr

    # The same seed uninterrupted: the same curves, so frozen + augmentation started from the same head.
    reference = finished_run(_config(resume_data), runs)
    keys = ("stage", "epoch", "accuracy", "loss", "val_accuracy", "val_loss")
    assert [{key: record.get(key) for key in keys} for record in run.metrics()] == [
        {key: record.get(key) for key in keys} for record in reference.metrics()
    ]


def test_a_resumed_end_to_end_run_trains_every_fine_tuning_epoch(tmp_path, catsdogs_subset, monkeypatch):
    """End to end (0 augmented views), fine-tuning trains the model frozen + augmentation resumed: it still
    trains all its epochs, from its first (Keras once carried the restored epoch over into its fit)."""
    frozen_epochs, fine_tuning_epochs, stopped_after = 3, 2, 2
    data = catsdogs_subset("end_to_end_resume", train=4, validation=2)
    config = train_config(
        data,
        strategy="fine_tuning",
        epochs=frozen_epochs,
        fine_tuning_epochs=fine_tuning_epochs,
        augmented_views=0,
        batch_size=2,
    )
    runs = tmp_path / "runs"
    run = store.create(config, runs)

    # Stopped once frozen_augmented has `stopped_after` epochs backed up, at a known epoch (no polling race).
    backed_up_epoch_end = resume.StageBackup.on_epoch_end

    def stop_after_backup(backup, epoch, logs=None):
        backed_up_epoch_end(backup, epoch, logs)
        if backup.stage == "frozen_augmented" and epoch + 1 == stopped_after:
            backup.run.request_stop()

    monkeypatch.setattr(resume.StageBackup, "on_epoch_end", stop_after_backup)
    assert worker.execute(run, runs)["state"] == "stopped"
    point = resumption.resume_point(run)
    assert (point.stage, point.epoch, point.finished) == ("frozen_augmented", stopped_after, ())

    monkeypatch.setattr(resume.StageBackup, "on_epoch_end", backed_up_epoch_end)
    earlier = run.summary()  # The stopped process's.
    worker.prepare_resume(run)
    status = worker.execute(run, runs)
    assert status["state"] == "done", status.get("error", status)
    # Its time counts the stopped process's too: in all, and in the stage it was stopped in (a resumed run's
    # time was its last process's alone, and a three-stage run looked faster than its first stage).
    results = run.summary()["results"]
    assert run.summary()["seconds"] >= earlier["seconds"] + results["fine_tuning"]["seconds"]
    assert results["frozen_augmented"]["seconds"] > earlier["results"]["frozen_augmented"]["seconds"]

    assert results["frozen_augmented"]["path"] == results["fine_tuning"]["path"] == "end_to_end"
    assert {stage: results[stage]["epochs"] for stage in results} == {
        "frozen_augmented": frozen_epochs,
        "fine_tuning": fine_tuning_epochs,
    }
    assert results["fine_tuning"]["val_accuracy"] is not None
    # Fine-tuning's epochs from its first, continuing frozen_augmented's count.
    fine_tuning = _records(run, "fine_tuning")
    assert [record["stage_epoch"] for record in fine_tuning] == list(range(1, fine_tuning_epochs + 1))
    assert [record["epoch"] for record in fine_tuning] == list(
        range(frozen_epochs + 1, frozen_epochs + fine_tuning_epochs + 1)
    )


def _run_with(tmp_path, summary: dict | None, finished: dict) -> store.Run:
    """A run folder holding the summary a stopped process wrote and the stages finished, as resumption keeps them."""
    run = store.create(TrainConfig(data_dir=str(tmp_path), strategy="all"), tmp_path / "runs")
    if summary is not None:
        (run.path / "summary.json").write_text(json.dumps(summary))
    for stage, result in finished.items():
        resumption.record_finished(run, stage, result)
    return run


def test_earlier_seconds_count_every_earlier_process_once(tmp_path):
    assert resumption.earlier_seconds(_run_with(tmp_path / "new", None, {})) == (0.0, {})
    # Stopped in frozen + augmentation after 30 s on it, 40 s in all.
    stopped = {
        "seconds": 40.0,
        "results": {"feature_extraction": {"seconds": 10.0}, "frozen_augmented": {"seconds": 30.0, "stopped": True}},
    }
    run = _run_with(tmp_path / "stopped", stopped, {"feature_extraction": {"seconds": 10.0}})
    assert resumption.earlier_seconds(run) == (40.0, {"frozen_augmented": 30.0})
    # Resumed, it finished frozen + augmentation (100 s on it in all) and was killed in fine-tuning, before writing
    # a summary: the summary is the first process's, and the stages finished say more.
    run = _run_with(
        tmp_path / "killed", stopped, {"feature_extraction": {"seconds": 10.0}, "frozen_augmented": {"seconds": 100.0}}
    )
    assert resumption.earlier_seconds(run) == (110.0, {})
    # Resumed, then stopped again while it restored feature extraction's head, before frozen + augmentation had a
    # result: its summary carries the first process's 30 s on that stage.
    again = {
        "seconds": 55.0,
        "results": {"feature_extraction": {"seconds": 10.0}},
        "earlier_stage_seconds": {"frozen_augmented": 30.0},
    }
    run = _run_with(tmp_path / "again", again, {"feature_extraction": {"seconds": 10.0}})
    assert resumption.earlier_seconds(run) == (55.0, {"frozen_augmented": 30.0})
