"""The Train page's Resume button: a stopped run continues in a new worker; a run with no backup says why not."""

from __future__ import annotations

import subprocess
import sys
import time

from streamlit.testing.v1 import AppTest

from tests.app.page_kit import APP, TIMEOUT, click, fake_running_run, open_page, plain, texts
from tests.helpers.runs import train_config
from tlcore.runs import resumption, store, worker

EPOCHS = 6
WAIT_SECONDS = 240


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS} s"
        time.sleep(0.1)


def _page_showing(run: store.Run) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    return open_page("pages/2_Train.py", at.run())


def test_a_stopped_run_resumes_from_the_train_page_and_finishes_every_epoch_once(folders, small_catsdogs):
    # A real run, stopped with the Stop button's request once an epoch is backed up.
    run = worker.start(train_config(small_catsdogs, epochs=EPOCHS, batch_size=2), folders["runs"])
    _wait(lambda: resumption.backed_up_epochs(run, "feature_extraction") >= 1, "backed-up epoch")
    run.request_stop()
    _wait(lambda: run.state == "stopped", "stop")
    assert len([record for record in run.metrics() if not record.get("partial")]) < EPOCHS

    at = _page_showing(run)
    (button,) = [button for button in at.button if button.label == "Resume"]
    assert plain(button.help).startswith("Continues feature extraction from epoch ")
    click(at, "Resume")
    assert not at.exception
    assert at.session_state["run_id"] == run.id
    assert run.status()["state"] in ("queued", "running") and not run.stop_requested()
    _wait(lambda: run.state in store.FINAL_STATES, "end of the resumed run")
    assert run.state == "done", run.status()
    assert [record["epoch"] for record in run.metrics()] == list(range(1, EPOCHS + 1))
    assert not any(record.get("partial") for record in run.metrics())
    at.run()
    assert "Done: every stage finished" in texts(at)
    assert not [button for button in at.button if button.label == "Resume"]


def test_an_interrupted_run_without_a_backup_has_no_resume_button_and_says_why(folders, small_catsdogs):
    run = fake_running_run(folders["runs"], small_catsdogs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.set_status("running", pid=dead.pid, started=time.time())
    at = _page_showing(run)
    assert "Interrupted: The training process ended without finishing" in texts(at)
    assert f"Run {run.id} has nothing to resume from: no epoch of it finished" in texts(at)
    assert not [button for button in at.button if button.label == "Resume"]


def test_a_resumed_run_shows_no_result_of_the_stop_it_resumes_from(folders, small_catsdogs):
    # While the resumed run trained, the caption read the stopped run's summary ("50.0% saved (last of 8
    # epochs)", as it read then).
    from tlcore import files

    run = fake_running_run(folders["runs"], small_catsdogs)
    stopped_summary = {"results": {"feature_extraction": {"val_accuracy": 0.5, "best_val_accuracy": 0.5, "epochs": 3}}}
    files.write_json(run.path / "summary.json", {**stopped_summary, "final_stage": "feature_extraction"})
    at = _page_showing(run)
    assert "Running: training" in texts(at) and "saved model 50.0%" not in texts(at)
