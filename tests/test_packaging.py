"""The project as a package: `pip install -e .` gives the `tlcore` command, and ruff holds the whole tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tlcore
from tests.helpers.paths import PROJECT_ROOT
from tlcore import cli


def test_the_console_script_is_the_cli_main():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"tlcore": "tlcore.cli:main"}
    assert callable(cli.main)


def test_the_installed_tlcore_command_prints_the_version():
    command = Path(sys.executable).parent / "tlcore"
    if not command.exists():
        pytest.skip("the tlcore command is not installed in this environment (`pip install -e .`; .ci/run does it)")
    completed = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"tlcore {tlcore.__version__}"


@pytest.mark.parametrize("arguments", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing_to_change(arguments):
    if shutil.which("ruff", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("ruff is not installed here (requirements-test.txt pins it)")
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", *arguments, "--no-cache", "."],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-1000:]
