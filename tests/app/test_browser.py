"""End to end in a real browser: Playwright drives Debian's Chromium through the app's whole story.

A new user's path: open the app, scan a small real data set from ../shared, look at the augmentation
preview, train a short feature-extraction run, watch it finish and evaluate it, start a longer run,
reload the browser, stop it, then upload a photo and read its prediction and where the model looked
(Grad-CAM). Screenshots of every step go to
test-artifacts/browser/. Takes about two minutes on two CPU cores.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.browser_kit import chromium, go_to, set_number, settle, sidebar_links, streamlit_server, wait_until
from tests.helpers.paths import shared_dir
from tlcore.runs import store

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
BACKBONE = "efficientnet_lite0"  # Bundled weights: works offline.


def server_environment(folder: Path) -> dict[str, str]:
    """The server's environment: runs and data folders of its own under `folder`, typed paths allowed
    under pytest's temporary folder (where the fixtures' data sets are)."""
    return dict(
        os.environ,
        TLCORE_RUNS_DIR=str(folder / "runs"),
        TLCORE_DATA_DIR=str(folder / "data"),
        TLCORE_DATA_ROOTS=str(folder.parent),
        TF_CPP_MIN_LOG_LEVEL="2",
    )


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, for the whole module."""
    with chromium() as browser:
        yield browser


def new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    return page


@pytest.fixture(scope="module")
def app_server(browser, tmp_path_factory):
    """`streamlit run app.py` on a free port of 127.0.0.1, with its own runs and data folders."""
    folder = tmp_path_factory.mktemp("browser")
    runs_dir = folder / "runs"
    try:
        with streamlit_server(ROOT, server_environment(folder), folder / "server.log") as url:
            yield {"url": url, "runs": runs_dir, "log": folder / "server.log"}
    finally:
        for run in store.list_runs(runs_dir):  # Leave no training behind, whatever happened.
            if run.state in ("queued", "running", "stopping"):
                run.request_stop()
                pid = run.raw_status().get("pid")
                try:
                    wait_until(lambda: run.state not in ("queued", "running", "stopping"), 30, "the worker to stop")
                except TimeoutError:
                    if pid:
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser_page(browser, app_server):
    page = new_page(browser)
    try:
        yield page
    finally:
        page.close()


def screenshot(page, name: str) -> Path:
    """A screenshot of the whole page (the viewport is stretched to the app's height)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => (document.querySelector('[data-testid=stMain]') || document.body).scrollHeight")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 8000))})
    time.sleep(0.8)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def no_traceback(page) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body and "This app has encountered an error" not in body, body[-2000:]


def charts_overflowing(page) -> list[str]:
    """Charts drawn wider than the column that holds them (their right side, legends too, is cut off)."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].flatMap(chart => {
        const drawn = chart.querySelector('canvas, svg');
        const column = chart.closest('[data-testid=stElementContainer]');
        if (!drawn || !column) return [];
        const width = drawn.getBoundingClientRect().width, room = column.getBoundingClientRect().width;
        return width > room + 1 ? [`${Math.round(width)} px drawn in ${Math.round(room)} px`] : [];
    })""")


def legend_labels_cut_off(page) -> list[str]:
    """Legend entries drawn past their chart's right edge (Vega draws charts as SVG here)."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=stVegaLiteChart] svg')].flatMap(svg => {
        const right = svg.getBoundingClientRect().right;
        return [...svg.querySelectorAll('.role-legend-label text')].flatMap(label => {
            const edge = label.getBoundingClientRect().right;
            const where = `ends at ${Math.round(edge)} px, the chart at ${Math.round(right)}`;
            return edge > right + 1 ? [`${label.textContent}: ${where}`] : [];
        });
    })""")


def test_a_new_user_scans_previews_trains_stops_and_predicts(app_server, browser_page, small_catsdogs):
    page, url, runs_dir = browser_page, app_server["url"], app_server["runs"]

    # A fresh server's first visitor opens a bookmark of a page: the app's own navigation and frame.
    page.goto(f"{url}/Predict")
    page.get_by_role("heading", name="Predict").wait_for()
    settle(page)
    assert sidebar_links(page) == ["Home", "Data", "Train", "Predict"]
    page.get_by_text("No finished run with a model yet").wait_for()

    # Home: what the app does, the backbones with their weight status.
    page.goto(url)
    page.get_by_role("heading", name="Transfer Learning Studio").wait_for()
    settle(page)
    lite = page.get_by_role("row").filter(has=page.get_by_role("cell", name="EfficientNet-Lite0", exact=True))
    assert "available offline" in lite.inner_text()
    screenshot(page, "01_home")
    no_traceback(page)

    # Data: a small real data set from ../shared, typed into the folder path.
    go_to(page, "Data")
    page.get_by_label("Folder path").fill(str(small_catsdogs))
    page.get_by_role("button", name="Scan folder").click()
    page.get_by_role("heading", name="Scan report").wait_for()
    settle(page)
    main = page.get_by_test_id("stMain")
    assert "Train images" in main.inner_text() and "24" in main.inner_text()
    page.get_by_text("original, as training sees it").wait_for()
    preview = page.get_by_test_id("stImage")
    assert preview.count() >= 12 + 9, "a page of thumbnails and the original with 8 augmented copies"
    page.get_by_role("button", name=re.compile("New random draws")).click()
    settle(page)
    screenshot(page, "02_data_scanned_and_augmentation_preview")
    # On a phone's width (375 px, a common one) the thumbnails still sit side by side: in st.columns(6) they
    # stacked, one per row.
    page.set_viewport_size({"width": 375, "height": 1000})
    settle(page)
    first, second = (preview.nth(index).bounding_box() for index in (0, 1))
    assert first["y"] == second["y"] and second["x"] > first["x"] + first["width"], (first, second)
    # So do the scan report's numbers, two to a row (in st.columns(4) they stacked, one per row) ...
    metrics = page.get_by_test_id("stMetric")
    classes, train = (metrics.nth(index).bounding_box() for index in (0, 1))
    assert classes["y"] == train["y"] and train["x"] > classes["x"], (classes, train)
    # ... and the augmentation preview's original and its first copy: in st.columns(3) each filled the window's
    # width, nine screens of scrolling.
    original, copy = (preview.filter(has_text=caption).first.bounding_box() for caption in ("original", "copy 1"))
    assert original["y"] == copy["y"] and copy["x"] > original["x"] + original["width"], (original, copy)
    page.set_viewport_size({"width": 1400, "height": 1000})
    settle(page)
    no_traceback(page)

    # Train: the classic schedule in short (1 -> 2 -> 3, two epochs each), watched live until it is done.
    go_to(page, "Train")
    page.get_by_role("heading", name="New run").wait_for()
    assert page.get_by_label("1 · Feature extraction").is_checked()  # The default.
    page.get_by_text("1 → 2 → 3 in sequence").click()
    settle(page)
    # On a phone's width the layer stack of three phases fits its column: drawn at its own width it was
    # 830 px wide in a 322 px column, its right columns and legend cut off.
    page.set_viewport_size({"width": 420, "height": 1000})
    settle(page)
    page.get_by_test_id("stVegaLiteChart").first.scroll_into_view_if_needed()
    assert charts_overflowing(page) == []
    page.set_viewport_size({"width": 1400, "height": 1000})
    settle(page)
    expand = page.get_by_test_id("stExpandSidebarButton")
    if expand.count() and expand.is_visible():  # The narrow window folded the sidebar away.
        expand.click()
        settle(page)
    set_number(page, "Epochs", 2)
    set_number(page, "Fine-tuning epochs", 2)
    set_number(page, "Batch size", 8)
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_role("heading", name="Current run").wait_for()
    screenshot(page, "03_train_started")
    page.get_by_text("Done: every stage finished").wait_for(timeout=300_000)
    settle(page)
    charts = page.locator("[data-testid=stVegaLiteChart]")
    assert charts.count() >= 3, "the loss and accuracy charts and the layer stack"
    # With fine-tuning in it (its start marked by a rule), a concatenated chart came out wider than its column.
    assert charts_overflowing(page) == []
    # On a phone's width every legend entry is inside its chart: in one row, "3 fine-tuning", "validation" and
    # "training" lay past the right edge and were cut off.
    page.set_viewport_size({"width": 420, "height": 1000})
    settle(page)
    assert legend_labels_cut_off(page) == []
    page.set_viewport_size({"width": 1400, "height": 1000})
    settle(page)
    first = store.list_runs(runs_dir)[0]
    assert first.state == "done"
    assert [record["stage"] for record in first.metrics()] == (
        ["feature_extraction"] * 2 + ["frozen_augmented"] * 2 + ["fine_tuning"] * 2
    )
    screenshot(page, "04_train_done")
    no_traceback(page)

    # Its evaluation: the confusion matrix, the per-class scores and the mistakes.
    page.get_by_role("button", name=re.compile("Evaluate on the validation split")).click()
    page.get_by_text("Per class: precision").wait_for(timeout=120_000)
    settle(page)
    assert (first.path / "evaluation-validation.json").is_file()
    assert "Accuracy" in page.get_by_test_id("stMain").inner_text()
    screenshot(page, "04b_evaluation")
    no_traceback(page)

    # A second, longer run: reload the browser while it trains, then stop it.
    # Exact: a table of runs may name the stage inside a longer text ("83.3% in 2 · ...").
    page.get_by_text("2 · Frozen base + augmentation", exact=True).click()
    settle(page)
    set_number(page, "Epochs", 300)
    page.get_by_role("button", name=re.compile("Start training")).click()
    second = wait_until(
        lambda: next((run for run in store.list_runs(runs_dir) if run.id != first.id), None),
        30,
        "the second run folder",
    )
    wait_until(lambda: second.metrics(), 120, "the second run's first epoch")
    page.reload()  # An empty session: the page finds the running run in the runs folder.
    page.get_by_text(second.id).first.wait_for()
    page.get_by_text("Running: training").wait_for()
    screenshot(page, "05_train_running_after_reload")
    page.get_by_test_id("stMain").get_by_role("button", name=re.compile(r"Stop$")).click()
    page.get_by_text("Stopped on request").wait_for(timeout=60_000)
    settle(page)
    assert second.state == "stopped" and second.model_path.is_file()
    assert 1 <= len(second.metrics()) < 300
    screenshot(page, "06_train_stopped")
    no_traceback(page)

    # Predict: upload a photo the model has never seen, read its top label, see where the model looked.
    go_to(page, "Predict")
    page.get_by_text("Show where the model looked").click()
    settle(page)
    photo = sorted((shared_dir() / "data" / "catsdogs" / "validation" / "cats").iterdir())[-1]
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(photo))  # The Photos tab's.
    prediction = page.get_by_text(re.compile(r"^Most likely: "))
    prediction.wait_for(timeout=120_000)
    settle(page)
    label = re.match(r"Most likely: (\w+) \((\d+)%\)", prediction.inner_text())
    assert label and label.group(1) in ("cats", "dogs"), prediction.inner_text()
    page.get_by_text(f"where it looked for {label.group(1)}").wait_for()
    assert page.get_by_test_id("stMain").get_by_test_id("stImage").count() == 2, "the photo and its Grad-CAM"
    screenshot(page, "07_predict_gradcam")
    no_traceback(page)


def test_the_sidebar_follows_a_live_run_as_it_starts_training(app_server, browser_page, small_catsdogs):
    """The run line of the sidebar (outside the fragment that polls the run) follows its state while
    the page stays open: queued, then running within a few polls, not only once the run ends."""
    import psutil

    from tlcore.config import TrainConfig

    page, url, runs_dir = browser_page, app_server["url"], app_server["runs"]
    # Queued without a worker: nothing trains it but this test, which plays the worker's part.
    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction", epochs=10), runs_dir)
    sidebar = page.get_by_test_id("stSidebar")
    try:
        page.goto(f"{url}/Train")
        sidebar.get_by_text(f"Current run: {run.id} (queued)").wait_for()
        page.get_by_text("Queued: ").first.wait_for()  # The progress line of the fragment.
        settle(page)
        run.set_status(
            "running", pid=os.getpid(), started=psutil.Process(os.getpid()).create_time(), stage="feature_extraction"
        )
        page.get_by_text("Running: training").wait_for(timeout=30_000)  # The fragment's own poll.
        sidebar.get_by_text(f"Current run: {run.id} (running)").wait_for(timeout=30_000)
        settle(page)
        no_traceback(page)
    finally:
        # Ended here: the server fixture kills the worker (this process) of any run still training.
        run.set_status("stopped", finished=time.time())


def test_the_augmentation_preview_names_an_image_of_the_data_set_just_scanned(
    browser_page, app_server, small_catsdogs, tmp_path
):
    """A second scan starts the preview at its own first image, and its box says so (with one widget key
    for every data set, the browser kept the previous set's file name over the new set's picture)."""
    import shutil

    page = browser_page
    other = tmp_path / "fruit"
    for split, count in (("train", 4), ("validation", 2)):
        for name, source in (("apples", "cats"), ("pears", "dogs")):
            (other / split / name).mkdir(parents=True)
            for index, photo in enumerate(sorted((small_catsdogs / split / source).iterdir())[:count]):
                shutil.copy2(photo, other / split / name / f"{name}_{index + 1}.jpg")
    image_box = page.get_by_test_id("stSelectbox").filter(has_text="Image")

    def scan(folder: Path) -> None:
        page.get_by_label("Folder path").fill(str(folder))
        page.get_by_role("button", name="Scan folder").click()
        page.get_by_role("heading", name="Scan report").wait_for()
        settle(page)

    page.goto(app_server["url"])
    settle(page)
    go_to(page, "Data")
    scan(small_catsdogs)
    field = image_box.locator("input")
    field.click()
    field.fill("cat.10")  # The box filters its options as one types: another photo than the first.
    field.press("Enter")
    settle(page)
    assert field.input_value() == "train/cats/cat.10.jpg"
    scan(other)
    assert image_box.locator("input").input_value() == "train/apples/apples_1.jpg"
    no_traceback(page)


def test_after_renaming_a_library_entry_that_is_not_the_first_use_takes_that_data_set(
    browser_page, app_server, small_catsdogs, tmp_path
):
    """The selector kept its choice by its text, which a rename changes: in the browser it fell back to the
    first entry, so Use (and Delete) acted on another data set than the one shown. Streamlit's AppTest keeps
    the value itself, so only a browser shows it."""
    import shutil

    page = browser_page
    page.goto(app_server["url"])
    settle(page)
    go_to(page, "Data")
    for name in ("alpha", "beta", "gamma"):  # Each scan is the newest used: alpha ends last in the list.
        shutil.copytree(small_catsdogs, tmp_path / name, symlinks=True)
        page.get_by_label("Folder path").fill(str(tmp_path / name))
        page.get_by_role("button", name="Scan folder").click()
        page.get_by_text(f"Data set: {name}:").wait_for()
        settle(page)
    page.get_by_text("Library", exact=True).click()
    settle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Data set").click()
    page.get_by_role("option", name="alpha: 2 classes").click()
    settle(page)
    page.get_by_label("Name", exact=True).fill("renamed alpha")
    page.get_by_role("button", name="Rename").click()
    settle(page)
    page.get_by_role("button", name="Use this data set").click()
    settle(page)
    sidebar = page.get_by_test_id("stSidebar").inner_text()
    assert "Data set: renamed alpha: 2 classes" in sidebar, sidebar  # alpha, by its new name.
    no_traceback(page)


@pytest.mark.parametrize(
    "path, heading", [("", "Transfer Learning Studio"), ("Data", "Data"), ("Train", "Train"), ("Predict", "Predict")]
)
def test_a_fresh_servers_first_visit_to_any_page_shows_the_apps_navigation_and_frame(browser, tmp_path, path, heading):
    """A bookmark opened as a new server's very first visit: Streamlit's pages/ folder decides what runs
    then (with st.navigation in app.py beside a pages/ folder, that visit lost the app's own navigation)."""
    with streamlit_server(ROOT, server_environment(tmp_path), tmp_path / "server.log") as url:
        page = new_page(browser)
        try:
            page.goto(f"{url}/{path}")
            page.get_by_role("heading", name=heading, exact=True).wait_for()
            page.get_by_test_id("stSidebar").get_by_text("Data set: none chosen yet").wait_for()
            settle(page)
            assert sidebar_links(page) == ["Home", "Data", "Train", "Predict"]
            sidebar = page.get_by_test_id("stSidebar")
            assert not sidebar.get_by_role("link", name="app", exact=True).count(), "Streamlit's label for Home"
            assert not page.get_by_test_id("stSidebarNav").count(), "Streamlit's own list of pages"
            assert page.url.rstrip("/") == f"{url}/{path}".rstrip("/"), "the page asked for, not Home"
            no_traceback(page)
        finally:
            page.close()


@pytest.mark.parametrize("width, folds", [(420, True), (1400, False)])
def test_a_link_in_the_sidebar_folds_it_away_on_a_phones_width_only(browser, app_server, width, folds):
    """On a narrow window the open sidebar lies over the page: a tapped link must fold it away, as Streamlit's
    own page list does on phones (the app's links left it open, over the page just opened). On a wide window
    it stays."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)
    try:
        page.goto(app_server["url"])
        page.get_by_role("heading", name="Transfer Learning Studio", exact=True).wait_for()
        settle(page)
        sidebar = page.get_by_test_id("stSidebar")
        expand = page.get_by_test_id("stExpandSidebarButton")
        if expand.count() and expand.is_visible():
            expand.click()
        wait_until(lambda: sidebar.get_attribute("data-collapsed") == "false", 10, "the sidebar to open")
        go_to(page, "Data")
        page.get_by_role("heading", name="Data", exact=True).wait_for()
        assert page.url.rstrip("/").endswith("/Data")
        expected = "true" if folds else "false"
        wait_until(lambda: sidebar.get_attribute("data-collapsed") == expected, 10, f"data-collapsed={expected}")
        if folds:
            assert page.get_by_test_id("stExpandSidebarButton").is_visible(), "the button that opens it again"
        else:
            # The script's element draws nothing and leaves no gap: the session's lines follow the links 12 px
            # below them (28 px with the empty element's gap).
            links_bottom = sidebar.get_by_test_id("stPageLink-NavLink").last.bounding_box()
            line_top = sidebar.get_by_text(re.compile("^Data set: ")).bounding_box()
            assert line_top["y"] - (links_bottom["y"] + links_bottom["height"]) < 20, (links_bottom, line_top)
        no_traceback(page)
    finally:
        page.close()
