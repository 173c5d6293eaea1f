"""Driving the app's pages in Streamlit's AppTest: what the page tests share.

Not a test module. `open_page` runs app.py and switches to a page as a browser would: Streamlit runs
the pages/ folder's script, which draws views.frame first.
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import psutil
from streamlit.testing.v1 import AppTest

from tests.helpers.images import bad_input_kit as bad_input_kit
from tlcore import files
from tlcore.runs import store

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TIMEOUT = 180


def efficientnet_lite_available() -> bool:
    try:
        import tlcore.models.efficientnet_lite  # noqa: F401 - the model must import, not only its weights.
        from tlcore.models import efficientnet_lite_weights

        return efficientnet_lite_weights.weights_file() is not None
    except Exception:  # noqa: BLE001 - any import problem means "use the fallback backbone".
        return False


# A tiny but real backbone: EfficientNet-Lite0 (bundled weights) when it works, else VGG16 untrained.
TINY_BACKBONE = (
    ["--backbone", "efficientnet_lite0", "--image-size", "64"]
    if efficientnet_lite_available()
    else ["--backbone", "vgg16", "--weights", "none", "--image-size", "32"]
)


def open_page(page: str | None = None, at: AppTest | None = None) -> AppTest:
    """Runs the app (a fresh session unless `at` is given), optionally on another page; asserts no exception."""
    if at is None:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        assert not at.exception, [item.message for item in at.exception]
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [item.message for item in at.exception]
    return at


def click(at: AppTest, label: str) -> AppTest:
    buttons = [button for button in at.button if button.label == label]
    assert buttons, f"no button {label!r} among {[button.label for button in at.button]}"
    buttons[0].click().run()
    assert not at.exception, [item.message for item in at.exception]
    return at


def plain(markdown: str) -> str:
    """Markdown with its backslash escapes and zero-width break opportunities removed: the text a person reads."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def texts(at: AppTest) -> str:
    """Everything the page wrote as text (Markdown, captions, alerts), unescaped, for `in` checks."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader"):
        parts += [plain(str(element.value)) for element in getattr(at, kind)]
    return "\n".join(parts)


def scan(at: AppTest, folder: Path | str) -> AppTest:
    at.text_input(key="folder_path").input(str(folder))
    return click(at, "Scan folder")


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def markdown_table(at: AppTest, first_column: str) -> list[dict]:
    """The rows of the page's Markdown table whose first header is `first_column`, unescaped."""
    for element in at.markdown:
        lines = element.value.splitlines()
        if lines and lines[0].startswith(f"| {first_column} |"):
            split = [[cell.strip().replace("\\", "") for cell in line.strip("|").split(" | ")] for line in lines]
            return [dict(zip(split[0], row)) for row in split[2:]]
    raise AssertionError(f"no table starting with {first_column!r} in {[element.value for element in at.markdown]}")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def fake_running_run(runs_dir: Path, data_dir: Path) -> store.Run:
    """A run folder that a live process (this test) claims to be training."""
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(data_dir), strategy="feature_extraction", epochs=10), runs_dir)
    started = psutil.Process(os.getpid()).create_time()
    run.set_status("running", pid=os.getpid(), started=started, stage="feature_extraction")
    run.set_progress(
        {
            "stage": "feature_extraction",
            "epoch": 3,
            "epochs": 10,
            "batch": 2,
            "steps": 4,
            "stage_elapsed": 5.0,
            "time": time.time(),
        }
    )
    for epoch in (1, 2):
        run.append_metrics(
            {
                "stage": "feature_extraction",
                "epoch": epoch,
                "loss": 0.7,
                "accuracy": 0.6,
                "val_loss": 0.6,
                "val_accuracy": 0.7,
            }
        )
    return run


def fake_finished_run(runs_dir: Path, data_dir: Path) -> store.Run:
    """A done run with a (dummy) model file and its labels; no model is ever loaded from it."""
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(data_dir), strategy="feature_extraction", epochs=2), runs_dir)
    run.set_status("done")
    files.write_json(run.path / "labels.json", ["cats", "**dogs**"])
    run.model_path.write_bytes(b"PK\x03\x04 a model")
    run.append_metrics(
        {"stage": "feature_extraction", "epoch": 1, "loss": 0.7, "accuracy": 0.6, "val_loss": 0.6, "val_accuracy": 0.5}
    )
    return run


def trained_run(trained_runs: Path) -> store.Run:
    (run,) = store.list_runs(trained_runs)
    return run


def chart_specs(at: AppTest) -> list[str]:
    """The Vega-Lite spec (JSON text) of every chart on the page."""
    return [chart.proto.spec for chart in at.get("vega_lite_chart")]


def caption_lines(caption: str) -> list[str]:
    """The lines of a Markdown caption (hard breaks are two spaces and a newline), unescaped."""
    return [line.strip() for line in plain(caption).splitlines()]
