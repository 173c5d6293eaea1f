"""Progress on the command line: rich bars in a terminal, today's plain lines in a pipe or with --json."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.pty_kit import PROJECT_ROOT, TerminalProcess

BAR = "━"  # rich's bar character.
ESCAPE = "\x1b["


def _train_arguments(data: Path, runs: Path) -> list[str]:
    return [
        "train", "--data", str(data), "--strategy", "feature_extraction", "--backbone", "vgg16", "--weights", "none",
        "--image-size", "32", "--epochs", "2", "--batch-size", "4", "--runs-dir", str(runs),
    ]  # fmt: skip


def _run_id(output: str) -> str:
    return output.split("Run: ", 1)[1].split()[0]


def test_a_terminal_gets_bars_for_extraction_epochs_evaluation_prediction_and_export(tmp_path, catsdogs_subset):
    data = catsdogs_subset("bars", train=6, validation=3)
    runs = tmp_path / "runs"
    training = TerminalProcess(*_train_arguments(data, runs))
    assert training.finish() == 0, training.text
    text = training.text
    assert BAR in text and ESCAPE in text
    for words in ("[feature_extraction] train features", "[feature_extraction] validation features",
                  "[feature_extraction] epoch 1/2", "[feature_extraction] epoch 2/2", "3/3"):  # fmt: skip
        assert words in text, text
    # Each finished epoch still leaves its line above the bars.
    assert "[feature_extraction] epoch 2: accuracy=" in text
    run = _run_id(text)
    for arguments, words in (
        (["evaluate", "--run", run], "Evaluating"),
        (["predict", "--run", run, str(data / "validation")], "Predicting"),
        (["export", "--run", run, "--format", "keras"], "Checking the keras export"),
    ):
        process = TerminalProcess(*arguments, "--runs-dir", str(runs))
        assert process.finish() == 0, process.text
        assert words in process.text and BAR in process.text and "6/6" in process.text, process.text


def test_without_a_terminal_or_with_json_progress_is_plain_lines(tmp_path, catsdogs_subset):
    data = catsdogs_subset("plain", train=6, validation=3)
    for extra in ([], ["--json"]):
        command = [sys.executable, "-m", "tlcore", *_train_arguments(data, tmp_path / "runs"), *extra]
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "[feature_extraction] epoch 1: accuracy=" in result.stderr
        assert "[feature_extraction] epoch 2: accuracy=" in result.stderr
        assert BAR not in result.stderr and ESCAPE not in result.stderr, result.stderr


def test_json_keeps_plain_lines_even_in_a_terminal(tmp_path, catsdogs_subset):
    data = catsdogs_subset("json", train=6, validation=3)
    process = TerminalProcess(*_train_arguments(data, tmp_path / "runs"), "--json")
    assert process.finish() == 0, process.text
    assert "[feature_extraction] epoch 2: accuracy=" in process.text
    assert BAR not in process.text and ESCAPE not in process.text, process.text
