"""Driving the app in a real browser: what the browser test and `benchmarks/app_load.py` share.

Not a test module (pytest collects `test_*.py` only). The benchmark imports it from this folder.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, message: str, interval: float = 0.25):
    """Polls `predicate` until it returns something true, and returns that.

    Raises:
        TimeoutError: naming `message`, when `timeout` seconds passed first.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")


def healthy(url: str) -> bool:
    """Whether the Streamlit server at `url` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def streamlit_server(root: Path, environment: dict[str, str], log_path: Path, timeout: float = 90):
    """Runs `streamlit run app.py` in `root` on a free port of 127.0.0.1 until the block ends.

    Yields:
        The server's URL, once it answers its health check.

    Raises:
        RuntimeError: the server exited before it answered (its log's end in the message).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(lambda: healthy(url) or server.poll() is not None, timeout, "the Streamlit server")
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited: {log_path.read_text(errors='replace')[-3000:]}")
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def settle(page, timeout: float = 90, quiet: float = 1.5) -> float:
    """Waits until Streamlit has finished running the script (its status widget gone for `quiet` s).

    Returns:
        The time (`time.perf_counter()`) when the script was last seen finished.
    """
    status = page.get_by_test_id("stStatusWidget")
    quiet_since = None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if status.count() and status.first.is_visible():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since > quiet:
            return quiet_since
        time.sleep(0.05)
    return time.perf_counter()


def sidebar_links(page) -> list[str]:
    """The labels of the app's page links in the sidebar, in order (a link's text: its icon's name, its label)."""
    links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    return [text.split()[-1] for text in links.all_inner_texts()]


def go_to(page, name: str) -> None:
    """Opens a page through the sidebar's links and waits for it to settle."""
    links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    links.filter(has_text=name).first.click()
    settle(page)


def set_number(page, label: str, value: int) -> None:
    """Types a value into a number input of the Train page (opening "Hyperparameters" if needed)."""
    field = page.get_by_label(label, exact=True)
    if not field.is_visible():  # Inside the collapsed "Hyperparameters" expander.
        page.get_by_text("Hyperparameters").click()
    field.fill(str(value))
    field.press("Enter")
    settle(page)
