"""The `tlcore` command run as a person or a script would run it: a fresh interpreter, from the project root."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers.paths import PROJECT_ROOT


def options(**settings) -> list[str]:
    """Command-line options from keywords: `image_size=32` -> `--image-size 32`, `xla=True` -> `--xla`."""
    arguments = []
    for name, value in settings.items():
        arguments.append("--" + name.replace("_", "-"))
        if value is not True:
            arguments.append(str(value))
    return arguments


def tlcore(*arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `python -m tlcore ARGUMENTS` and returns what it did, text captured (TensorFlow's logging quiet)."""
    return subprocess.run(
        [sys.executable, "-m", "tlcore", *arguments],
        cwd=PROJECT_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tlcore_started(*arguments: str, environment: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts `python -m tlcore ARGUMENTS` without waiting (text captured, TensorFlow's logging quiet), with
    `environment` added to this process's; `communicate()` collects its output."""
    return subprocess.Popen(
        [sys.executable, "-m", "tlcore", *arguments],
        cwd=PROJECT_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(environment or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def last_json(completed: subprocess.CompletedProcess):
    """The JSON object a `--json` command printed last."""
    return json.loads(completed.stdout.strip().splitlines()[-1])
