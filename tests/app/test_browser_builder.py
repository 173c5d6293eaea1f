"""In a real browser with a fake camera: a data set built on the Data page from uploaded photos and camera shots,
trained on the Train page, and asked on the Predict page through an upload and the camera tab.

Chromium's fake capture device (`--use-fake-device-for-media-stream`) films a test pattern and
`--use-fake-ui-for-media-stream` grants the camera without asking. Screenshots of the builder and the camera
tab, at a desktop's and a phone's width, go to test-artifacts/browser/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.browser_kit import chromium, go_to, running_app, set_number, settle
from tests.helpers.paths import shared_path
from tlcore.data import builder, library
from tlcore.runs import store

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
WIDTHS = {"wide": 1400, "narrow": 420}
UPLOADED = 3  # Photos uploaded per class; one camera shot each makes the four training asks for.


@pytest.fixture(scope="module")
def camera_browser():
    """Debian's Chromium, headless, with a fake camera it may use without asking."""
    with chromium(FAKE_CAMERA) as browser:
        yield browser


def screenshots(page, name: str) -> None:
    """The whole page at each of WIDTHS, then back to the desktop's width."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width_name, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 1000})
        settle(page)
        height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
        page.set_viewport_size({"width": width, "height": min(int(height) + 40, 8000)})
        time.sleep(0.8)
        page.screenshot(path=str(ARTIFACTS / f"{name}_{width_name}.png"))
    page.set_viewport_size({"width": WIDTHS["wide"], "height": 1000})
    settle(page)
    expand = page.get_by_test_id("stExpandSidebarButton")
    if expand.count() and expand.is_visible():  # The narrow window folded the sidebar away.
        expand.click()
        settle(page)


def no_traceback(page) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body and "This app has encountered an error" not in body, body[-2000:]


def take_photo(page, panel) -> None:
    """Takes a camera shot in a tab panel: clears the last one first, waits for the fake camera's stream."""
    clear = panel.get_by_role("button", name=re.compile("Clear photo"))
    if clear.count() and clear.first.is_visible():
        clear.first.click()
        settle(page)
    panel.get_by_role("button", name=re.compile("Take Photo")).click()
    settle(page)


def test_a_set_built_from_uploads_and_camera_shots_trains_and_predicts(camera_browser, tmp_path):
    cats, dogs = (
        sorted(shared_path("data", "catsdogs", "train", name).iterdir())[:UPLOADED] for name in ("cats", "dogs")
    )
    with running_app(tmp_path / "app") as app:
        page = camera_browser.new_page(viewport={"width": WIDTHS["wide"], "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app.url)
        settle(page)
        go_to(page, "Data")
        page.get_by_role("radio", name="Build", exact=True).click()
        settle(page)
        page.get_by_label("New data set").fill("pets")
        page.get_by_role("button", name=re.compile("Create")).click()
        settle(page)
        for name in ("cats", "dogs"):
            page.get_by_label("New class").fill(name)
            page.get_by_role("button", name=re.compile("Add class")).click()
            settle(page)
        folder = app.data_dir / "built" / "pets"
        assert builder.classes(folder) == ["cats", "dogs"]

        for name, photos in (("cats", cats), ("dogs", dogs)):
            target = page.get_by_test_id("stSelectbox").filter(has_text="Add photos to class").locator("input")
            target.click()
            target.fill(name)  # The box filters its options as one types.
            target.press("Enter")
            settle(page)
            assert target.input_value() == name
            page.get_by_role("tab", name="Upload photos").click()
            page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(photo) for photo in photos])
            page.get_by_role("button", name=f"Add {UPLOADED} photos to {name}").click()
            settle(page)
            page.get_by_role("tab", name="Camera").click()
            take_photo(page, page.get_by_role("tabpanel", name="Camera"))
            page.get_by_text(f"Added 1 photo to {name}.").wait_for()
        found = builder.photos(folder)
        assert [len(found[name]) for name in ("cats", "dogs")] == [UPLOADED + 1] * 2, found
        assert all((folder / name / "camera.jpg").is_file() for name in ("cats", "dogs"))
        main = page.get_by_test_id("stMain")
        assert main.get_by_text("camera.jpg").count() == 2, "a thumbnail of each class's shot"
        screenshots(page, "builder")
        no_traceback(page)

        page.get_by_role("button", name=re.compile("Use this data set")).click()
        page.get_by_role("heading", name="Scan report").wait_for()
        settle(page)
        [entry] = library.entries(app.data_dir)
        assert (entry.kind, entry.classes, sum(entry.images.values())) == ("built", ("cats", "dogs"), 8)

        go_to(page, "Train")
        page.get_by_role("heading", name="New run").wait_for()
        assert page.get_by_label("1 · Feature extraction").is_checked()
        size = page.get_by_label("Image size (pixels)", exact=True)
        size.fill("96")
        size.press("Enter")
        settle(page)
        set_number(page, "Epochs", 3)
        set_number(page, "Batch size", 4)
        page.get_by_role("button", name=re.compile("Start training")).click()
        page.get_by_text("Done: every stage finished").wait_for(timeout=240_000)
        [run] = store.list_runs(app.runs_dir)
        assert run.config()["data_dir"] == str(folder.resolve()) and run.config()["image_size"] == 96
        no_traceback(page)

        go_to(page, "Predict")
        photo = sorted(shared_path("data", "catsdogs", "validation", "cats").iterdir())[-1]
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(photo))  # The Photos tab's.
        page.get_by_role("tabpanel", name="Photos").get_by_text(re.compile(r"^Most likely: ")).wait_for()
        page.get_by_role("tab", name="Camera").click()
        camera = page.get_by_role("tabpanel", name="Camera")
        take_photo(page, camera)
        answer = camera.get_by_text(re.compile(r"^Most likely: "))
        answer.wait_for(timeout=120_000)
        label = re.match(r"Most likely: (cats|dogs) \(\d+%\)", answer.inner_text())
        assert label, answer.inner_text()
        camera.get_by_text(f"where it looked for {label.group(1)}").wait_for()
        screenshots(page, "predict_camera")
        no_traceback(page)
        page.close()
