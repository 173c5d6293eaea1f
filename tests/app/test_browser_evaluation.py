"""The evaluation of a six-class run in a real browser at three window widths: nothing overlaps or is cut.

With the confusion matrix and the per-class table in fixed columns, a matrix of five classes or more ran
under the table, which hid its last column and its colour legend. One small run of feature extraction on
six classes of ../shared/data/scenes is trained for the module; the page opens it by its link (?run=).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app.test_browser import browser, new_page, screenshot, server_environment  # noqa: F401 - the fixture.
from tests.browser_kit import settle, streamlit_server
from tests.helpers.runs import LITE0_SETTINGS, trained_run

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = (1400, 1000, 420)
TRAIN_PER_CLASS, VALIDATION_PER_CLASS = 6, 3

# Boxes (left, top, right, bottom) of the matrix (the chart and what Vega drew, legend included), of the
# per-class table, of the page's column (the main block less its padding), and the window's width.
BOXES = """() => {
    const box = element => { const b = element.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
    const toggle = [...document.querySelectorAll('label')].find(label => label.innerText.includes('Share of each'));
    const matrix = [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].find(
        chart => toggle.compareDocumentPosition(chart) & Node.DOCUMENT_POSITION_FOLLOWING);
    const table = document.querySelector('[data-testid=stDataFrame]');  // The per-class table comes first.
    const main = document.querySelector('[data-testid=stMainBlockContainer]'), style = getComputedStyle(main);
    const outer = box(main);
    const left = outer[0] + parseFloat(style.paddingLeft), right = outer[2] - parseFloat(style.paddingRight);
    const row = [left, outer[1], right, outer[3]];
    const drawn = [...matrix.querySelectorAll('canvas, svg')].map(box);
    return {window: window.innerWidth, matrix: box(matrix), drawn, table: box(table), row,
            legend: matrix.innerText};
}"""


@pytest.fixture(scope="module")
def six_class_run(tmp_path_factory, shared_dir) -> tuple[Path, str]:
    """A runs folder holding one finished, evaluated feature-extraction run on six classes of scenes."""
    from tlcore.insight import evaluate

    scenes, photos = shared_dir / "data" / "scenes", tmp_path_factory.mktemp("scenes")
    for split, count in (("train", TRAIN_PER_CLASS), ("validation", VALIDATION_PER_CLASS)):
        for folder in sorted((scenes / split).iterdir()):
            (photos / split / folder.name).mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:count]:
                shutil.copy2(photo, photos / split / folder.name / photo.name)
    runs_dir = tmp_path_factory.mktemp("six_class_runs")
    run = trained_run(runs_dir, photos, LITE0_SETTINGS, image_size=64, epochs=2)
    assert len(evaluate.evaluate(run, "validation").classes) == 6
    return runs_dir, run.id


def overlap(first, second) -> bool:
    across = first[0] < second[2] - 1 and second[0] < first[2] - 1
    return across and first[1] < second[3] - 1 and second[1] < first[3] - 1


def inside(inner, outer) -> bool:
    return inner[0] >= outer[0] - 1 and inner[2] <= outer[2] + 1


@pytest.fixture(scope="module")
def app_url(six_class_run, tmp_path_factory) -> str:
    """The app on the six-class run's runs folder."""
    folder = tmp_path_factory.mktemp("evaluation_server")
    environment = dict(server_environment(folder), TLCORE_RUNS_DIR=str(six_class_run[0]))
    with streamlit_server(ROOT, environment, folder / "server.log") as url:
        yield url


@pytest.fixture
def page(browser):  # noqa: F811 - the fixture imported above.
    page = new_page(browser)
    try:
        yield page
    finally:
        page.close()


def test_the_confusion_matrix_its_legend_and_the_table_neither_overlap_nor_leave_the_window(
    page, app_url, six_class_run
):
    page.goto(f"{app_url}/Train?run={six_class_run[1]}")
    page.get_by_text("Per class: precision").wait_for(timeout=120_000)
    settle(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        settle(page)
        page.get_by_text("Per class: precision").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        boxes = page.evaluate(BOXES)
        assert "images" in boxes["legend"], f"the colour legend is drawn: {boxes}"
        for drawn in [boxes["matrix"], *boxes["drawn"]]:
            assert not overlap(drawn, boxes["table"]), f"{width} px: the matrix {drawn} under the table {boxes}"
            assert inside(drawn, boxes["row"]), f"{width} px: the matrix {drawn} out of the column {boxes}"
            assert drawn[2] <= width + 1, f"{width} px: the matrix {drawn} out of the window"
        assert inside(boxes["table"], boxes["row"]) and boxes["table"][2] <= width + 1, boxes
        if width == 420:  # Its numbers two to a row: in st.columns(3) they stacked, one per row.
            accuracy, images = (
                page.get_by_test_id("stMetric").filter(has_text=label).first.bounding_box()
                for label in ("Accuracy", "Validation images")
            )
            assert accuracy["y"] == images["y"] and images["x"] > accuracy["x"], (accuracy, images)
        screenshot(page, f"evaluation_six_classes_{width}")


# What lies beyond the window's right edge with nothing but the page itself to scroll it there.
PAST_THE_EDGE = """() => [...document.querySelectorAll('[data-testid=stMain] :is(table, [data-testid])')]
    .filter(element => {
        const box = element.getBoundingClientRect();
        let parent = element.parentElement;
        while (parent && parent.getAttribute('data-testid') !== 'stMain') {
            if (['auto', 'scroll'].includes(getComputedStyle(parent).overflowX)) return false;  // Its own scroller.
            parent = parent.parentElement;
        }
        return box.width > 0 && box.right > window.innerWidth + 1;
    })
    .map(element => `${element.tagName} ${element.getAttribute('data-testid')}: ${element.innerText.slice(0, 60)}`)"""


@pytest.mark.parametrize("path", ["", "Train?run={run}", "Predict"])
def test_on_a_phones_width_no_table_runs_past_the_windows_edge(page, app_url, six_class_run, path):
    """Home's tables of runs and backbones, wider than a 420 px window, made the whole page scroll sideways."""
    page.set_viewport_size({"width": 420, "height": 1000})
    page.goto(f"{app_url}/{path.format(run=six_class_run[1])}")
    page.get_by_test_id("stMain").get_by_role("heading").first.wait_for()
    settle(page)
    assert page.evaluate(PAST_THE_EDGE) == []
    # A table of four columns (Home's backbones) fits whole; a wider one scrolls in its own box.
    cut = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stMarkdownContainer] table')]
        .filter(table => table.querySelectorAll('th').length <= 4 && table.scrollWidth > table.clientWidth + 1)
        .map(table => table.innerText.slice(0, 60))""")
    assert cut == []
