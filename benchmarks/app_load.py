"""The app under load, in a real browser: memory of the Streamlit process, page loads during training,
two sessions, the training queue.

    python -m benchmarks.app_load [--data DIR] [--predictions 50] [--trainings 5] [--sections pages,memory]
                                  [--tracemalloc] [--py-spy PATH]

Starts `streamlit run app.py` on 127.0.0.1 with temporary runs and data folders, drives Debian's Chromium
with Playwright (browser sessions of their own), and prints one table (target and result where there is
a target); the exit status is 1 when a target is missed:
- the Streamlit server's resident memory at start and after each of N short trainings started from the app;
- whether the second session sees the first one's runs, and whether a second start waits as "queued";
- (section pages) how long the Home and Train pages take to load while a training runs and with nothing
  running: for a first visit (a new browser profile, nothing cached; target: at most 2 s, median of 3,
  while a training runs and another session watches it), a returning visitor (a new session in a browser
  that has the app's scripts cached) and a click in the sidebar of the session that watches the training;
- (section memory) the server's memory after 1, 10, 25, N/2 and N predictions (one more uploaded photo
  each), in a pass with Grad-CAM off and one with it on, and its growth from the 10th to the Nth
  prediction (target: at most +10%); with --tracemalloc the server traces its allocations and the lines
  that grew most are listed (the memory figures then include tracemalloc's own).
With --py-spy, py-spy (a path to its executable) samples the server while the pages load during the
training, into app-load-profile.txt (collapsed stacks) in the current folder.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import app_memory  # noqa: E402
from tests.browser_kit import CHROMIUM_ARGS, go_to, running_app, set_number, settle, wait_until  # noqa: E402
from tlcore.runs import store  # noqa: E402

# A first visit of Home or Train while a training runs and another session watches it, median of REPEATS (s).
FIRST_VISIT_TARGET = 2.0
SECTIONS = ("pages", "memory")


def small_data_set(source: Path, destination: Path, per_class: int) -> Path:
    for split, count in (("train", per_class), ("validation", max(4, per_class // 2))):
        for name in ("cats", "dogs"):
            folder = destination / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted((source / split / name).iterdir())[:count]:
                (folder / path.name).symlink_to(path.resolve())  # A relative target would dangle here.
    return destination


PAGES = {"Home": ("", "Transfer Learning Studio"), "Train": ("/Train", "Train")}
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
            # The app's own links (views.frame): Streamlit's page list is hidden.
            watcher.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink").filter(has_text=name).first.click()
            watcher.get_by_role("heading", name=heading).first.wait_for()
            clicks.append(settle(watcher) - started)
        loads["first visit"].append(statistics.median(first_visits))
        loads["returning visitor"].append(statistics.median(returns))
        loads["sidebar click"].append(statistics.median(clicks))
    returning.close()
    go_to(watcher, "Train")
    return loads


def load_rows(condition: str, loads: dict[str, list[float]], target: float | None = None) -> list[tuple]:
    """Table rows of `page_loads`; with a target, the first visits are held to it."""
    rows = []
    for kind, values in loads.items():
        name = f"page load {condition}, {kind} (Home, Train; median of {REPEATS})"
        value = ", ".join(f"{value:.2f} s" for value in values)
        if target is not None and kind == "first visit":
            rows.append((name, value, f"<= {target:.1f} s", max(values) <= target))
        else:
            rows.append((name, value))
    return rows


def queue_and_page_loads(browser, url: str, first, runs_dir: Path, py_spy: str | None, server_pid: int) -> list[tuple]:
    """Two starts in a row (the second waits), then page loads while the first trains and with nothing running."""
    rows = []
    # They train end to end (every epoch through the frozen base), so the first one is still busy while
    # the pages are timed below.
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
    states = [run.state for run in store.list_runs(runs_dir)[:2]]
    rows.append(("two starts in a row: states of the newest two runs, at once", ", ".join(states)))
    wait_until(
        lambda: any(run.state == "running" for run in store.list_runs(runs_dir)[:2]),
        120,
        "one of the two runs to start",
    )
    states = [run.state for run in store.list_runs(runs_dir)[:2]]
    rows.append(("... once one of them trains", ", ".join(states)))
    # Page loads while that run trains, the first session watching it live on the Train page.
    first.get_by_role("heading", name="Current run").wait_for()
    profiler = None
    if py_spy:
        command = [py_spy, "record", "--pid", str(server_pid), "--rate", "100", "--format", "raw"]
        profiler = subprocess.Popen([*command, "--nonblocking", "--output", "app-load-profile.txt"])
    loads = page_loads(browser, url, first)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
    rows += load_rows("while training", loads, FIRST_VISIT_TARGET)
    still_training = any(run.state == "running" for run in store.list_runs(runs_dir)[:2])
    rows.append(("... the run still trained when they were done", "yes" if still_training else "NO"))
    for run in store.list_runs(runs_dir)[:2]:
        run.request_stop()
    wait_until(
        lambda: all(run.state in store.FINAL_STATES for run in store.list_runs(runs_dir)),
        120,
        "the queued runs to stop",
    )
    settle(first)
    rows += load_rows("with nothing running", page_loads(browser, url, first))
    return rows


def memory_rows(browser, url: str, process, photos: list[Path], predictions: int, snapshots) -> list[tuple]:
    """A pass of `predictions` uploads with Grad-CAM off, then one with it on (other photos): memory and growth."""
    rows = []
    for grad_cam, chosen in ((False, photos[:predictions]), (True, photos[predictions : 2 * predictions])):
        memory, grown = app_memory.predictions_pass(browser, url, process, chosen, grad_cam, snapshots)
        switch = "on" if grad_cam else "off"
        counts = " / ".join(map(str, memory))
        rows.append(
            (
                f"server memory after {counts} predictions (Grad-CAM {switch})",
                " / ".join(f"{value:.0f}" for value in memory.values()) + " MiB",
            )
        )
        growth = app_memory.growth(memory)
        if growth is not None:
            rows.append(
                (
                    f"... growth from prediction {app_memory.FROM_PREDICTION} to {max(memory)} (Grad-CAM {switch})",
                    f"{growth:+.1%}",
                    f"<= +{app_memory.GROWTH_TARGET:.0%}",
                    growth <= app_memory.GROWTH_TARGET,
                )
            )
        if grown:
            rows.append((f"... what grew most (tracemalloc, Grad-CAM {switch}):",))
            rows += [(line,) for line in grown]
    return rows


def parse_arguments(argv=None) -> argparse.Namespace:
    """The benchmark's arguments; --data resolved to an absolute path (the photos are linked from elsewhere)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "catsdogs"),
        help="a cats-vs-dogs style data set (train/ and validation/)",
    )
    parser.add_argument("--predictions", type=int, default=50, help="uploads to predict per pass (default 50)")
    parser.add_argument("--trainings", type=int, default=5, help="short trainings to start, at least 1 (default 5)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)} (default all)"
    )
    parser.add_argument("--tracemalloc", action="store_true", help="trace the server's allocations (section memory)")
    parser.add_argument("--py-spy", dest="py_spy", help="py-spy's executable: profile the page loads while training")
    arguments = parser.parse_args(argv)
    arguments.data = Path(arguments.data).expanduser().resolve()
    missing = [
        split for split in ("train/cats", "train/dogs", "validation/cats") if not (arguments.data / split).is_dir()
    ]
    if missing:
        parser.error(f"--data {arguments.data}: no {', '.join(missing)} folder; expected train/ and validation/.")
    arguments.sections = [name.strip() for name in arguments.sections.split(",") if name.strip()]
    unknown = sorted(set(arguments.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}.")
    if arguments.trainings < 1:
        parser.error(
            f"--trainings must be at least 1 (the Predict page needs a model), received {arguments.trainings}."
        )
    needed = app_memory.FROM_PREDICTION + 1
    if "memory" in arguments.sections and arguments.predictions < needed:
        parser.error(
            f"--predictions must be at least {needed} for the memory section, received {arguments.predictions}."
        )
    return arguments


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    # Optional: only this benchmark needs Playwright.
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="tlcore-app-load-"))
    data_set = small_data_set(arguments.data, work / "photos", 12)
    photos = sorted((arguments.data / "validation" / "cats").iterdir())[: 2 * arguments.predictions]
    rows: list[tuple] = []
    server_environment = {}
    if arguments.tracemalloc:
        (work / "snapshots").mkdir()
        server_environment = {
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "benchmarks" / "server_hooks"), os.environ.get("PYTHONPATH")])
            ),
            "TLCORE_BENCHMARK_SNAPSHOTS": str(work / "snapshots"),
        }
    try:
        with running_app(work, extra_environment=server_environment) as server:
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
                rows.append(("server memory at start (home page shown)", f"{app_memory.megabytes(process):.0f} MiB"))

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
                        timed_load(second, f"{url}/Train", "Train")
                        newest = store.list_runs(work / "runs")[0]
                        seen = second.get_by_text(newest.id).count() > 0
                        rows.append(("second session sees the first session's run", "yes" if seen else "NO"))
                    first.get_by_text("done: finished").wait_for(timeout=300_000)
                    settle(first)
                    memory_after_trainings.append(app_memory.megabytes(process))
                rows.append(
                    (
                        f"server memory after each of {arguments.trainings} trainings",
                        ", ".join(f"{value:.0f}" for value in memory_after_trainings) + " MiB",
                    )
                )

                if "pages" in arguments.sections:
                    rows += queue_and_page_loads(browser, url, first, work / "runs", arguments.py_spy, process.pid)
                if "memory" in arguments.sections:
                    snapshots = app_memory.Snapshots(process, work / "snapshots") if arguments.tracemalloc else None
                    rows += memory_rows(browser, url, process, photos, arguments.predictions, snapshots)
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Command: python -m benchmarks.app_load {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(
        f"Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, load average "
        f"{', '.join(f'{value:.1f}' for value in os.getloadavg())} at the end (other work on the machine shows here)"
    )
    return print_table(rows)


def print_table(rows: list[tuple]) -> int:
    """Prints (name, value[, target, passed]) rows and notes; returns 1 when a target was missed, else 0."""
    table = [row for row in rows if len(row) >= 2]
    width = max(len(row[0]) for row in table)
    value_width = max(len(row[1]) for row in table)
    for row in rows:
        if len(row) == 1:
            print(f"    {row[0]}")
            continue
        name, value, *target = row
        verdict = f"  {target[0]:<12} {'PASS' if target[1] else 'FAIL'}" if target else ""
        print(f"{name:<{width}}  {value:<{value_width}}{verdict}".rstrip())
    return 1 if any(len(row) == 4 and not row[3] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
