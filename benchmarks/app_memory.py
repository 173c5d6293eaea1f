"""The Streamlit server's memory over many predictions with Grad-CAM on and off: a section of
`benchmarks/app_load.py`, which starts the server and the browser.

Each pass opens the Predict page in a fresh browser session and uploads photos one at a time (each
joins the earlier ones, so every rerun shows them all); the server's resident memory is read after
the 1st, FROM_PREDICTION-th, ... TO_PREDICTION-th, and its growth from FROM_PREDICTION to
TO_PREDICTION is held to GROWTH_TARGET. With `--tracemalloc`, the server (see
`benchmarks/server_hooks/sitecustomize.py`) writes a tracemalloc snapshot at FROM_PREDICTION (its
tracing starts at the first one) and at TO_PREDICTION, and the lines whose live allocations grew most
between them are listed.
"""

from __future__ import annotations

import os
import re
import signal
import tracemalloc
from pathlib import Path

import psutil

from tests.browser_kit import go_to, settle, wait_until

FROM_PREDICTION, TO_PREDICTION = 10, 50
GROWTH_TARGET = 0.10
# How many of the lines that grew most a pass lists.
TOP_GROWERS = 8


def megabytes(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


class Snapshots:
    """Asks the server for tracemalloc snapshots (SIGUSR1) and reads them back from `folder`."""

    def __init__(self, process: psutil.Process, folder: Path):
        self.process, self.folder, self.taken = process, folder, 0

    def take(self) -> tracemalloc.Snapshot:
        self.taken += 1
        path = self.folder / f"snapshot-{self.taken}.pickle"
        os.kill(self.process.pid, signal.SIGUSR1)
        wait_until(path.exists, 300, f"the server's snapshot {path.name}")
        return tracemalloc.Snapshot.load(str(path))


def growers(earlier: tracemalloc.Snapshot, later: tracemalloc.Snapshot) -> list[str]:
    """The source lines whose live allocations grew most from `earlier` to `later`."""
    lines = []
    for difference in later.compare_to(earlier, "lineno")[:TOP_GROWERS]:
        frame = difference.traceback[0]
        name = re.sub(r"^.*/(site-packages|wt-[^/]+|main)/", "", frame.filename)
        lines.append(
            f"{name}:{frame.lineno} {difference.size_diff / 2**20:+.1f} MiB "
            f"({difference.count_diff:+d} blocks, {difference.size / 2**20:.1f} MiB live)"
        )
    return lines


def predictions_pass(
    browser, url: str, process: psutil.Process, photos: list[Path], grad_cam: bool, snapshots: Snapshots | None
) -> tuple[dict[int, float], list[str]]:
    """Uploads `photos` one at a time on the Predict page of a new session.

    Returns:
        ({prediction number: server memory in MiB after it}, the lines that grew most, when snapshots are taken).
    """
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(180_000)
    page.goto(url)
    page.get_by_role("heading", name="Transfer Learning Studio").wait_for()
    go_to(page, "Predict")
    if grad_cam:
        page.get_by_text("Show where the model looked").click()
        settle(page)
    shown = re.compile("^where it looked for " if grad_cam else "^Most likely")
    checkpoints = sorted({1, FROM_PREDICTION, 25, len(photos) // 2, len(photos)} - {0})
    memory, marks = {}, {}
    for index, photo in enumerate(photos, 1):
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(photo))
        wait_until(lambda: page.get_by_text(shown).count() >= index, 180, f"prediction {index}")
        settle(page)
        if index in checkpoints:
            memory[index] = megabytes(process)
        if snapshots is not None and index in (FROM_PREDICTION, len(photos)):
            marks[index] = snapshots.take()
    page.context.close()
    grown = growers(marks[FROM_PREDICTION], marks[len(photos)]) if len(marks) == 2 else []
    return memory, grown


def growth(memory: dict[int, float]) -> float | None:
    """The relative growth of the server's memory from FROM_PREDICTION to the last prediction."""
    last = max(memory)
    if FROM_PREDICTION not in memory or last <= FROM_PREDICTION:
        return None
    return memory[last] / memory[FROM_PREDICTION] - 1
