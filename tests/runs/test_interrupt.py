"""Ctrl+C during `python -m tlcore train` in a real terminal: once stops like the Stop button, twice ends at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.pty_kit import PROJECT_ROOT, TerminalProcess
from tlcore import console
from tlcore.runs import store

EPOCHS = 200


def _start_long_training(data: Path, runs: Path) -> TerminalProcess:
    process = TerminalProcess(
        "train", "--data", str(data), "--strategy", "feature_extraction", "--backbone", "vgg16", "--weights", "none",
        "--image-size", "32", "--epochs", str(EPOCHS), "--batch-size", "2", "--runs-dir", str(runs),
    )  # fmt: skip
    # The bar of epoch 2 is drawn: training is under way, within an epoch.
    process.wait_for(f"epoch 2/{EPOCHS}")
    return process


def _only_run(runs: Path) -> store.Run:
    (run,) = store.list_runs(runs)
    return run


def test_first_control_c_stops_after_the_batch_saves_the_model_and_exits_130(tmp_path, catsdogs_subset):
    data = catsdogs_subset("control_c", train=20, validation=10)
    runs = tmp_path / "runs"
    process = _start_long_training(data, runs)
    process.press_control_c()
    assert process.finish() == console.INTERRUPTED_EXIT_CODE == 130, process.text
    assert "Ctrl+C: stopping after the current batch" in process.text
    run = _only_run(runs)
    assert run.status()["state"] == "stopped", run.status()
    assert run.summary()["stopped"] is True
    assert run.model_path.is_file() and run.model_path.stat().st_size > 0
    epochs = len(run.metrics())
    assert 1 <= epochs < EPOCHS
    assert f"Run {run.id}: stopped" in process.text


def test_second_control_c_ends_at_once_as_interrupted(tmp_path, catsdogs_subset):
    data = catsdogs_subset("control_c_twice", train=20, validation=10)
    runs = tmp_path / "runs"
    process = _start_long_training(data, runs)
    process.press_control_c()
    process.wait_for("Ctrl+C again to end at once")
    process.press_control_c()
    assert process.finish() == 130, process.text
    run = _only_run(runs)
    status = run.status()
    assert status["state"] == "interrupted" and "second Ctrl+C" in status["error"], status
    assert not run.model_path.exists()
    assert not (run.path / "summary.json").exists()
    # Ended from the signal handler (no KeyboardInterrupt unwinding through TensorFlow), with its report and
    # nothing half-written left behind.
    assert f"Run {run.id}: interrupted (Ended at once by a second Ctrl+C.)" in process.text
    assert "Traceback" not in process.text, process.text
    assert not [path.name for path in run.path.rglob("*") if ".partial" in path.name or path.suffix == ".tmp"]


def test_control_c_in_a_command_without_its_own_handling_ends_with_a_line_not_a_traceback(tmp_path, catsdogs_subset):
    # `explore` extracts features for a while and has no Ctrl+C handling of its own: the CLI's main catches it.
    data = catsdogs_subset("control_c_explore", train=300, validation=50)
    process = TerminalProcess("explore", "--data", str(data), "--runs-dir", str(tmp_path / "runs"))
    process.wait_for("extracting train features")
    process.press_control_c()
    assert process.finish() == console.INTERRUPTED_EXIT_CODE, process.text
    assert "Interrupted by Ctrl+C." in process.text
    assert "Traceback" not in process.text, process.text


def test_second_control_c_ends_at_once_even_when_the_report_cannot_be_written(tmp_path, catsdogs_subset):
    # `train --json | reader` where the reader has gone (a terminal's Ctrl+C ends the whole pipeline): writing
    # the report fails with a broken pipe, which must neither keep the process alive nor mark the run failed.
    data = catsdogs_subset("control_c_pipe", train=20, validation=10)
    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcore", "train", "--data", str(data), "--strategy", "feature_extraction",
         "--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--epochs", str(EPOCHS),
         "--batch-size", "2", "--runs-dir", str(runs), "--json"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = _read_until(process.stderr, "[feature_extraction] epoch 1:")
    process.stdout.close()
    process.send_signal(signal.SIGINT)
    seen += _read_until(process.stderr, "Ctrl+C again to end at once")
    process.send_signal(signal.SIGINT)
    seen += process.stderr.read()
    assert process.wait(timeout=120) == console.INTERRUPTED_EXIT_CODE, seen
    assert "Ended at once by a second Ctrl+C." in seen
    status = _only_run(runs).status()
    assert status["state"] == "interrupted" and "second Ctrl+C" in status["error"], status


def _read_until(stream, text: str) -> str:
    lines = []
    for line in stream:
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"{text!r} never came; the process wrote:\n{''.join(lines)[-3000:]}")
