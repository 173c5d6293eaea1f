"""`python -m tlcore scan DIR [--json]` run as a person or a script would run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.helpers.paths import PROJECT_ROOT


def _tlcore(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tlcore", *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


def _json(result: subprocess.CompletedProcess) -> dict:
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {result.stderr}"
    return json.loads(lines[-1])


def test_scan_json_of_the_real_data_set(catsdogs_dir):
    result = _tlcore("scan", str(catsdogs_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert report["root"] == str(catsdogs_dir.resolve())
    assert report["layout"] == "splits"
    assert report["classes"] == ["cats", "dogs"]
    assert report["splits"] == {"train": {"cats": 1000, "dogs": 999}, "validation": {"cats": 250, "dogs": 250}}
    assert report["rejected"] == []


def test_scan_json_reports_exactly_the_bad_files(seeded_bad_catsdogs):
    root, expected = seeded_bad_catsdogs
    result = _tlcore("scan", str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert report["splits"] == {"train": {"cats": 12, "dogs": 12}, "validation": {"cats": 6, "dogs": 6}}
    rejected = {item["path"]: item["reason"] for item in report["rejected"]}
    assert set(rejected) == set(expected)
    for path, word in expected.items():
        assert word in rejected[path].lower(), (path, rejected[path])


def test_scan_text_report_lists_counts_and_rejected_files(seeded_bad_catsdogs):
    root, expected = seeded_bad_catsdogs
    result = _tlcore("scan", str(root))
    assert result.returncode == 0, result.stderr
    assert "Classes (2): cats, dogs" in result.stdout
    assert "train: 24 images" in result.stdout and "validation: 12 images" in result.stdout
    assert "Rejected (3):" in result.stdout
    for path in expected:
        assert path in result.stdout


def test_scan_flat_layout_honours_fraction_and_seed(flat_small):
    first = _json(_tlcore("scan", str(flat_small), "--json", "--validation-fraction", "0.3", "--seed", "4"))
    assert first["layout"] == "flat"
    assert first["classes"] == ["cats", "dogs", "greys"]
    assert first["splits"]["validation"] == {"cats": 3, "dogs": 3, "greys": 3}
    assert first["splits"]["train"] == {"cats": 7, "dogs": 7, "greys": 7}


def test_help_explains_the_commands():
    result = _tlcore("--help")
    assert result.returncode == 0
    assert "scan" in result.stdout
    result = _tlcore("scan", "--help")
    assert result.returncode == 0
    for words in ("train/<class>/", "validation/<class>/", "--json", "--validation-fraction", "--seed"):
        assert words in result.stdout, words


def test_missing_folder_fails_with_a_message_not_a_traceback(tmp_path):
    missing = tmp_path / "no such data"
    result = _tlcore("scan", str(missing))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert str(missing) in result.stderr and "not a folder" in result.stderr

    result = _tlcore("scan", str(missing), "--json")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "not a folder" in _json(result)["error"]


def test_unusable_data_set_fails_with_a_message(tmp_path, small_catsdogs):
    # Only a train folder: a data set error, reported as such.
    shutil.copytree(small_catsdogs / "train", tmp_path / "set" / "train")
    result = _tlcore("scan", str(tmp_path / "set"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no validation folder" in result.stderr


def test_bad_validation_fraction_fails_with_a_message(flat_small):
    result = _tlcore("scan", str(flat_small), "--validation-fraction", "1.5")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "1.5" in result.stderr
