"""The app under load, in a real browser: memory of the Streamlit process, page loads during training,
two sessions, the training queue.

    python benchmarks/app_load.py [--data DIR] [--predictions 50] [--trainings 5]

Starts `streamlit run app.py` on 127.0.0.1 with temporary runs and data folders, drives Debian's Chromium
with Playwright (two browser sessions), and prints one table:
- the Streamlit server's resident memory at start, after each of N short trainings started from the app,
  and after 1, 10, 25, N/2 and N predictions with Grad-CAM (one more uploaded photo each);
- how long the Home and Train pages take to load while a training runs and with nothing running: for a first
  visit (a new browser profile, nothing cached), a returning visitor (a new session in a browser that has the
  app's scripts cached) and a click in the sidebar of the session that watches the training live;
- whether the second session sees the first one's runs, and whether a second start waits as "queued".
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_kit import CHROMIUM_ARGS, go_to, running_app, set_number, settle, wait_until  # noqa: E402
from tlcore.runs import store  # noqa: E402


def small_data_set(source: Path, destination: Path, per_class: int) -> Path:
    for split, count in (("train", per_class), ("validation", max(4, per_class // 2))):
        for name in ("cats", "dogs"):
            folder = destination / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted((source / split / name).iterdir())[:count]:
                (folder / path.name).symlink_to(path)
    return destination


def megabytes(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


PAGES = {"Home": ("", "Transfer Learning Studio"), "Train": ("/train", "Train")}
REPEATS = 3


def timed_load(page, url: str, heading: str) -> float:
    started = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for()
    return settle(page) - started  # Until the page's script had finished, not the quiet spell after it.


def page_loads(browser, url: str, watcher) -> dict[str, list[float]]:
    """Median load time of each page (s) for three kinds of visit.

    Args:
        browser: the Playwright browser.
        url: the app's address.
        watcher: the page of the session that started the training (on the Train page); it is
            back on the Train page afterwards.

    Returns:
        {"first visit": [Home, Train], "returning visitor": [...], "sidebar click": [...]}.
    """
    loads = {"first visit": [], "returning visitor": [], "sidebar click": []}
    returning = browser.new_context(viewport={"width": 1400, "height": 1000})
    primer = returning.new_page()
    timed_load(primer, url, "Transfer Learning Studio")  # Fills this profile's cache with the app's scripts.
    primer.close()
    for name, (path, heading) in PAGES.items():
        first_visits, returns, clicks = [], [], []
        for _ in range(REPEATS):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            first_visits.append(timed_load(context.new_page(), url + path, heading))
            context.close()
            page = returning.new_page()
            returns.append(timed_load(page, url + path, heading))
            page.close()
            other = "Train" if name == "Home" else "Home"
            go_to(watcher, other)
            started = time.perf_counter()
            watcher.get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()
            watcher.get_by_role("heading", name=heading).first.wait_for()
            clicks.append(settle(watcher) - started)
        loads["first visit"].append(statistics.median(first_visits))
        loads["returning visitor"].append(statistics.median(returns))
        loads["sidebar click"].append(statistics.median(clicks))
    returning.close()
    go_to(watcher, "Train")
    return loads


def load_rows(condition: str, loads: dict[str, list[float]]) -> list[tuple[str, str]]:
    return [
        (
            f"page load {condition}, {kind} (Home, Train; median of {REPEATS})",
            ", ".join(f"{value:.2f} s" for value in values),
        )
        for kind, values in loads.items()
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "catsdogs"),
        help="a cats-vs-dogs style data set (train/ and validation/)",
    )
    parser.add_argument("--predictions", type=int, default=50, help="uploads to predict (default 50)")
    parser.add_argument("--trainings", type=int, default=5, help="short trainings to start (default 5)")
    arguments = parser.parse_args(argv)
    # Optional: only this benchmark needs Playwright.
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="tlcore-app-load-"))
    data_set = small_data_set(Path(arguments.data), work / "photos", 12)
    photos = sorted((Path(arguments.data) / "validation" / "cats").iterdir())[: arguments.predictions]
    rows: list[tuple[str, str]] = []
    try:
        with running_app(work) as server:
            url = server.url
            process = psutil.Process(server.process.pid)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
                )
                first = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                second = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                for page in (first, second):
                    page.set_default_timeout(180_000)
                first.goto(url)
                first.get_by_role("heading", name="Transfer Learning Studio").wait_for()
                settle(first)
                rows.append(("server memory at start (home page shown)", f"{megabytes(process):.0f} MiB"))

                go_to(first, "Data")
                first.get_by_label("Folder path").fill(str(data_set))
                first.get_by_role("button", name="Scan folder").click()
                first.get_by_role("heading", name="Scan report").wait_for()
                settle(first)
                go_to(first, "Train")
                set_number(first, "Epochs", 2)
                set_number(first, "Batch size", 8)
                memory_after_trainings = []
                for index in range(arguments.trainings):
                    first.get_by_role("button", name=re.compile("Start training")).click()
                    settle(first)
                    if index == 0:  # While it trains: a second session sees the same run.
                        timed_load(second, f"{url}/train", "Train")
                        newest = store.list_runs(work / "runs")[0]
                        seen = second.get_by_text(newest.id).count() > 0
                        rows.append(("second session sees the first session's run", "yes" if seen else "NO"))
                    first.get_by_text("done: finished").wait_for(timeout=300_000)
                    settle(first)
                    memory_after_trainings.append(megabytes(process))
                rows.append(
                    (
                        f"server memory after each of {arguments.trainings} trainings",
                        ", ".join(f"{value:.0f}" for value in memory_after_trainings) + " MiB",
                    )
                )

                # Queue: two starts in a row, the second waits. They train end to end (every epoch through the
                # frozen base), so the first one is still busy while the pages are timed below.
                first.get_by_text("2 · Frozen base + augmentation").click()
                settle(first)
                first.get_by_text("Training options").click()
                field = first.get_by_label("Augmented views (0 = end to end)", exact=True)
                field.fill("0")
                field.press("Enter")
                settle(first)
                set_number(first, "Epochs", 200)
                first.get_by_role("button", name=re.compile("Start training")).click()
                settle(first)
                first.get_by_role("button", name=re.compile("Start training")).click()
                settle(first)
                states = [run.state for run in store.list_runs(work / "runs")[:2]]
                rows.append(("two starts in a row: states of the newest two runs, at once", ", ".join(states)))
                wait_until(
                    lambda: any(run.state == "running" for run in store.list_runs(work / "runs")[:2]),
                    120,
                    "one of the two runs to start",
                )
                states = [run.state for run in store.list_runs(work / "runs")[:2]]
                rows.append(("... once one of them trains", ", ".join(states)))
                # Page loads while that run trains, the first session watching it live on the Train page.
                first.get_by_role("heading", name="Current run").wait_for()
                rows += load_rows("while training", page_loads(browser, url, first))
                still_training = any(run.state == "running" for run in store.list_runs(work / "runs")[:2])
                rows.append(("... the run still trained when they were done", "yes" if still_training else "NO"))
                for run in store.list_runs(work / "runs")[:2]:
                    run.request_stop()
                wait_until(
                    lambda: all(run.state in store.FINAL_STATES for run in store.list_runs(work / "runs")),
                    120,
                    "the queued runs to stop",
                )
                settle(first)
                rows += load_rows("with nothing running", page_loads(browser, url, first))

                go_to(first, "Predict")
                first.get_by_text("Show where the model looked").click()
                settle(first)
                memory_after_predictions = {}
                checkpoints = sorted({1, 10, 25, len(photos) // 2, len(photos)} - {0})
                for index, photo in enumerate(photos, 1):
                    # Each upload joins the earlier ones: every rerun shows them all, with Grad-CAM.
                    first.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(photo))
                    wait_until(
                        lambda: first.get_by_text(re.compile("^where it looked for ")).count() >= index,
                        120,
                        f"prediction and Grad-CAM {index}",
                    )
                    settle(first)
                    if index in checkpoints:
                        memory_after_predictions[index] = megabytes(process)
                counts = " / ".join(map(str, memory_after_predictions))
                megabytes_after = " / ".join(f"{value:.0f}" for value in memory_after_predictions.values())
                rows.append((f"server memory after {counts} predictions (Grad-CAM on)", megabytes_after + " MiB"))
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Command: python benchmarks/app_load.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
