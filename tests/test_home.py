"""The data and runs folders have one home, whatever folder the app or the CLI was started from."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tlcore import home

VARIABLES = ("TLCORE_HOME", "TLCORE_DATA_DIR", "TLCORE_RUNS_DIR", "XDG_DATA_HOME")


@pytest.fixture
def bare(monkeypatch, tmp_path) -> Path:
    """No tlcore variable set, HOME in a temporary folder; returns that home."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    return tmp_path / "me"


def test_data_and_runs_live_side_by_side_under_the_users_share_folder_from_any_start_folder(
    bare, monkeypatch, tmp_path
):
    from tlcore.data import cleaning, roots
    from tlcore.runs import store
    from views import server

    seen = set()
    for start in (tmp_path / "one", tmp_path / "two"):
        start.mkdir()
        monkeypatch.chdir(start)
        seen.add((server.data_dir(), server.runs_dir(), cleaning.default_data_dir(), store.default_runs_dir()))
    expected = bare / ".local" / "share" / "tlcore"
    assert seen == {(expected / "data", expected / "runs", expected / "data", expected / "runs")}
    assert roots.allowed_roots()[0] == (expected / "data").resolve()


def test_the_home_follows_xdg_and_tlcore_home_and_each_folder_its_own_variable(tmp_path):
    assert home.default_folder("data", {"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "tlcore" / "data"
    environment = {"XDG_DATA_HOME": str(tmp_path / "x"), "TLCORE_HOME": str(tmp_path / "studio")}
    assert home.default_folder("runs", environment) == tmp_path / "studio" / "runs"
    environment["TLCORE_RUNS_DIR"] = str(tmp_path / "elsewhere")
    assert home.default_folder("runs", environment) == tmp_path / "elsewhere"
    assert home.default_folder("data", environment) == tmp_path / "studio" / "data"
    with pytest.raises(ValueError, match="kind must be one of"):
        home.default_folder("photos", {})


def test_the_suite_runs_in_a_home_folder_of_its_own(tlcore_home, tmp_path_factory):
    # `tlcore suggest` without --runs-dir left feature caches in the real ~/.local/share/tlcore at every run.
    assert tlcore_home.is_relative_to(tmp_path_factory.getbasetemp())
    assert home.default_folder("runs") == tlcore_home / "runs"


def test_the_suite_keeps_its_temporary_files_in_a_folder_of_its_own(temporary_folder, tmp_path_factory):
    # A suite run left autograph modules of the processes its tests killed in /tmp, nine a run.
    assert temporary_folder.is_relative_to(tmp_path_factory.getbasetemp())
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"], capture_output=True, text=True
    )
    assert Path(child.stdout.strip()) == temporary_folder
    assert Path(tempfile.gettempdir()) == temporary_folder
