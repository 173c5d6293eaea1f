"""Waiting for a condition, and the app's Streamlit server started on 127.0.0.1 and stopped again.

Standard library and tlcore only: `benchmarks/app_load.py` uses this module too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.paths import PROJECT_ROOT
from tlcore.runs import store

LIVE_STATES = ("queued", "running", "stopping")


def wait_until(predicate, timeout: float, message: str, interval: float = 0.25):
    """Polls `predicate` until it returns something true, and returns that.

    Raises:
        TimeoutError: naming `message`, when `timeout` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether the Streamlit server at `url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class AppServer:
    """A running `streamlit run app.py`: its address, process, and the folders it was given."""

    url: str
    process: subprocess.Popen
    runs_dir: Path
    data_dir: Path
    log: Path


def _stop_live_runs(runs_dir: Path) -> None:
    """Asks every run still live to stop; kills the ones that do not within 30 s. Leaves no training behind."""
    for run in store.list_runs(runs_dir):
        if run.state not in LIVE_STATES:
            continue
        run.request_stop()
        pid = run.raw_status().get("pid")
        try:
            wait_until(lambda: run.state not in LIVE_STATES, 30, f"run {run.id} to stop")
        except TimeoutError:
            if pid:
                os.kill(pid, signal.SIGKILL)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def streamlit_process(
    root: Path, environment: dict[str, str], log_path: Path, timeout: float = 90
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Runs `streamlit run app.py` in `root` on a free port of 127.0.0.1 until the block ends.

    Yields:
        The server's URL, once it answers its health check, and its process.

    Raises:
        AssertionError: with the end of the server's log, when it exits before answering.
        TimeoutError: when it does not answer within `timeout` seconds.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    with open(log_path, "wb") as log:
        # A session of its own: the server and whatever it starts can be signalled apart from pytest.
        process = subprocess.Popen(
            command, cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(lambda: healthy(url) or process.poll() is not None, timeout, "the Streamlit server")
            if process.poll() is not None:
                raise AssertionError(f"streamlit exited: {log_path.read_text(errors='replace')[-3000:]}")
            yield url, process
        finally:
            _stop(process)


@contextlib.contextmanager
def streamlit_server(root: Path, environment: dict[str, str], log_path: Path, timeout: float = 90) -> Iterator[str]:
    """`streamlit_process`, yielding the server's URL alone."""
    with streamlit_process(root, environment, log_path, timeout) as (url, _):
        yield url


@contextlib.contextmanager
def running_app(folder: Path, timeout: float = 120, extra_environment: dict | None = None) -> Iterator[AppServer]:
    """Runs the app on a free port of 127.0.0.1 with its own runs and data folders under `folder`, where
    typed folder paths are allowed (TLCORE_DATA_ROOTS), and `extra_environment` set for the server alone.

    On leaving, stops the runs still live, then the server.

    Raises:
        AssertionError: with the end of the server's log, when it exits before answering.
        TimeoutError: when it does not answer within `timeout` seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    runs_dir, data_dir, log_path = folder / "runs", folder / "data", folder / "server.log"
    # Typed paths are allowed under `folder` only: the benchmark's photos are there.
    environment = dict(
        os.environ,
        TLCORE_RUNS_DIR=str(runs_dir),
        TLCORE_DATA_DIR=str(data_dir),
        TLCORE_DATA_ROOTS=str(folder),
        TF_CPP_MIN_LOG_LEVEL="2",
        **(extra_environment or {}),
    )
    with streamlit_process(PROJECT_ROOT, environment, log_path, timeout) as (url, process):
        try:
            yield AppServer(url, process, runs_dir, data_dir, log_path)
        finally:
            _stop_live_runs(runs_dir)
