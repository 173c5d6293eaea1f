"""benchmarks/app_load.py's arguments and table, without its server and browser."""

from __future__ import annotations

import os

import pytest

from benchmarks import app_load, app_memory


def test_a_relative_data_folder_is_resolved_and_its_photos_are_linked_so_that_they_open(
    tiny_catsdogs, tmp_path, monkeypatch
):
    monkeypatch.chdir(tiny_catsdogs.parent)
    arguments = app_load.parse_arguments(["--data", tiny_catsdogs.name])
    assert arguments.data == tiny_catsdogs.resolve() and arguments.data.is_absolute()
    linked = app_load.small_data_set(arguments.data, tmp_path / "photos", 2)
    links = sorted(linked.rglob("*.jpg"))
    assert len(links) == 2 * 2 + 2 * 4
    assert all(link.exists() for link in links), "every link reaches its photo"
    # Even when handed a relative folder directly, the links point at absolute paths.
    os.chdir(tiny_catsdogs.parent)
    again = app_load.small_data_set(type(tiny_catsdogs)(tiny_catsdogs.name), tmp_path / "again", 2)
    assert all(link.exists() for link in again.rglob("*.jpg"))


def test_a_data_folder_without_the_splits_is_refused_before_anything_starts(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        app_load.parse_arguments(["--data", str(tmp_path)])
    assert exited.value.code == 2
    assert f"--data {tmp_path}: no train/cats, train/dogs, validation/cats folder" in capsys.readouterr().err


def test_the_table_marks_targets_and_the_exit_status_says_whether_one_was_missed(capsys):
    rows = [("server memory at start", "650 MiB"), ("growth", "+4.0%", "<= +10%", True)]
    assert app_load.print_table(rows) == 0
    assert app_load.print_table([*rows, ("first visit", "2.40 s, 1.10 s", "<= 2.0 s", False)]) == 1
    printed = capsys.readouterr().out
    assert "<= +10%      PASS" in printed and "<= 2.0 s     FAIL" in printed


def test_memory_growth_is_measured_from_the_tenth_prediction_to_the_last():
    assert app_memory.growth({1: 600.0, 10: 700.0, 25: 720.0, 50: 735.0}) == pytest.approx(0.05)
    assert app_memory.growth({1: 600.0, 10: 700.0}) is None
