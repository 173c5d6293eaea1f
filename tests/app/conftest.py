"""Fixtures of the page tests: fresh runs and data folders for every test, one tiny trained run for all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.page_kit import ROOT, TINY_BACKBONE


@pytest.fixture(autouse=True)
def folders(tmp_path, tmp_path_factory, monkeypatch) -> dict[str, Path]:
    """Fresh runs and data folders for every test, and an empty model cache.

    Typed paths are allowed under pytest's temporary folder only (where the fixtures' data sets are),
    so a test typing /etc sees the refusal a visitor would.
    """
    paths = {"runs": tmp_path / "runs", "data": tmp_path / "data"}
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(paths["runs"]))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(paths["data"]))
    monkeypatch.setenv("TLCORE_DATA_ROOTS", str(tmp_path_factory.getbasetemp()))
    return paths


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, small_catsdogs) -> Path:
    """A runs folder holding one tiny finished feature-extraction run."""
    runs_dir = tmp_path_factory.mktemp("trained_runs")
    command = [
        sys.executable,
        "-m",
        "tlcore",
        "train",
        "--data",
        str(small_catsdogs),
        "--strategy",
        "feature_extraction",
        *TINY_BACKBONE,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--runs-dir",
        str(runs_dir),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return runs_dir
