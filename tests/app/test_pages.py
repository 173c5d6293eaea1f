"""The dashboard's pages in Streamlit's AppTest: every page renders, takes the bad-input kit, never raises.

Each test gets its own runs and data folders (TLCORE_RUNS_DIR, TLCORE_DATA_DIR in tmp_path). The
Predict tests share one tiny finished run trained once by the CLI.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tlcore.runs import store

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
PAGES = ["app.py", "pages/1_Data.py", "pages/2_Train.py", "pages/3_Predict.py"]
TIMEOUT = 180


def efficientnet_lite_available() -> bool:
    try:
        import tlcore.models.efficientnet_lite as lite

        return lite.weights_file() is not None
    except Exception:  # noqa: BLE001 - any import problem means "use the fallback backbone".
        return False


# A tiny but real backbone: EfficientNet-Lite0 (bundled weights) when it works, else VGG16 untrained.
TINY_BACKBONE = (
    ["--backbone", "efficientnet_lite0", "--image-size", "64"]
    if efficientnet_lite_available()
    else ["--backbone", "vgg16", "--weights", "none", "--image-size", "32"]
)


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch) -> dict[str, Path]:
    """Fresh runs and data folders for every test, and an empty model cache."""
    paths = {"runs": tmp_path / "runs", "data": tmp_path / "data"}
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(paths["runs"]))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(paths["data"]))
    return paths


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
    """Markdown with its backslash escapes removed: the text a person reads."""
    return re.sub(r"\\(.)", r"\1", markdown)


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


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header declares width x height pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


# Pages render on a fresh session, and the rules every page keeps.


@pytest.mark.parametrize("page", PAGES)
def test_each_page_renders_on_a_fresh_session(page):
    at = open_page(page)
    assert at.title, "every page has a title"
    assert not at.error, [element.value for element in at.error]


def markdown_table(at: AppTest, first_column: str) -> list[dict]:
    """The rows of the page's Markdown table whose first header is `first_column`, unescaped."""
    for element in at.markdown:
        lines = element.value.splitlines()
        if lines and lines[0].startswith(f"| {first_column} |"):
            split = [[cell.strip().replace("\\", "") for cell in line.strip("|").split(" | ")] for line in lines]
            return [dict(zip(split[0], row)) for row in split[2:]]
    raise AssertionError(f"no table starting with {first_column!r} in {[element.value for element in at.markdown]}")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_the_frame_even_when_it_stops_early(page, small_catsdogs):
    # A fresh session: the Data, Train and Predict pages end in a guard clause (st.stop()).
    at = open_page(page)
    assert [plain(element.value) for element in at.sidebar.caption] == [
        "Data set: none chosen yet",
        "Run: none running",
    ]
    # A data set chosen on this very run shows at once (the Data page stops nowhere after a scan).
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    assert plain(at.sidebar.caption[0].value).startswith(f"Data set: {small_catsdogs.name}: 2 classes")


def test_home_lists_every_backbone_with_its_weight_status():
    at = open_page()
    table = markdown_table(at, "backbone")
    from tlcore.models.backbones import BACKBONES

    assert sorted(row["backbone"] for row in table) == sorted(backbone.display_name for backbone in BACKBONES.values())
    assert all(
        row["weights"] in ("available offline", "needs a download") or row["weights"].startswith("offline for alpha")
        for row in table
    )
    sizes = {str(backbone.default_size) for backbone in BACKBONES.values()}
    assert {row["default size (px)"] for row in table} == sizes
    if efficientnet_lite_available():
        lite = next(row for row in table if row["backbone"] == "EfficientNet-Lite0")
        assert lite["weights"] == "available offline"


def test_the_mobilenet_weights_on_this_machine_are_named_offline(tmp_path, monkeypatch, small_catsdogs):
    # A MobileNet has a weight file per width multiplier and size: with only alpha 0.25 at 224 px
    # cached, Home and the Train page said "needs a download" for MobileNet however it was set.
    weights = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
    if not weights.is_file():
        pytest.skip(f"official MobileNet weights not found at {weights}")
    (tmp_path / "models").mkdir()
    shutil.copy(weights, tmp_path / "models" / weights.name)
    from keras.src.backend import config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))  # What $KERAS_HOME sets when Keras loads.
    import streamlit

    streamlit.cache_data.clear()  # The weight checks are cached for a minute.
    table = markdown_table(open_page(), "backbone")
    assert next(row for row in table if row["backbone"] == "MobileNet")["weights"] == (
        "offline for alpha 0.25 at 224 px; others need a download"
    )
    assert next(row for row in table if row["backbone"] == "MobileNetV2")["weights"] == "needs a download"
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.selectbox(key="train_backbone").set_value("mobilenet").run()
    at.number_input(key="train_image_size").set_value(224).run()
    assert "MobileNet (weights offline for some sizes)" in at.selectbox(key="train_backbone").options
    assert at.select_slider(key="train_alpha").options == ["0.25", "0.5", "0.75", "1.0"]
    assert "ImageNet weights need a download" in texts(at) and at.warning, "alpha 1.0: not offline"
    at.select_slider(key="train_alpha").set_value(0.25).run()
    assert "ImageNet weights in the Keras cache" in texts(at) and not at.warning
    assert at.selectbox(key="train_backbone").value == "mobilenet", "the choice survives a change of alpha"
    # MobileNetV2 has no ImageNet weights for 0.25: its own multipliers, 1.0 chosen.
    at.selectbox(key="train_backbone").set_value("mobilenet_v2").run()
    assert at.select_slider(key="train_alpha").options == ["0.35", "0.5", "0.75", "1.0", "1.3", "1.4"]
    assert at.select_slider(key="train_alpha").value == 1.0 and not at.exception
    streamlit.cache_data.clear()


def test_home_lists_the_latest_runs_with_their_state(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    queued = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    table = markdown_table(open_page(), "run")
    assert [(row["run"], row["state"], row["strategy"]) for row in table] == [
        (queued.id, "queued", "feature_extraction")
    ]
    assert table[0]["best validation accuracy"] == ""


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pages_never_import_tensorflow_or_keras_and_never_allow_html():
    scripts = [APP, *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "views").glob("*.py"))]
    assert len(scripts) >= 10
    for script in scripts:
        assert not _imports(script) & {"tensorflow", "keras"}, f"{script.name} imports TensorFlow or Keras"
        assert "unsafe_allow_html" not in script.read_text(encoding="utf-8"), script.name


def test_streamlits_pages_folder_holds_the_pages_and_each_draws_the_frame_first():
    # Streamlit lists every script of pages/ as a page: helpers live in views/.
    assert sorted(path.name for path in (ROOT / "pages").iterdir() if path.suffix == ".py") == [
        "1_Data.py",
        "2_Train.py",
        "3_Predict.py",
    ]
    for script in [APP, *sorted((ROOT / "pages").glob("*.py"))]:
        statements = ast.parse(script.read_text(encoding="utf-8")).body[1:]  # After the docstring.
        first = next(node for node in statements if not isinstance(node, (ast.Import, ast.ImportFrom)))
        assert "frame.draw()" in ast.unparse(first), f"{script.name} starts with {ast.unparse(first)!r}"


@pytest.mark.parametrize("page", PAGES)
def test_the_sidebar_links_every_page_by_its_name(page):
    at = open_page(page)
    links = at.sidebar.get("page_link")
    assert [(link.proto.label, link.proto.icon) for link in links] == [
        ("Home", ":material/home:"),
        ("Data", ":material/photo_library:"),
        ("Train", ":material/model_training:"),
        ("Predict", ":material/label:"),
    ]
    assert [link.proto.page for link in links] == ["", "Data", "Train", "Predict"], "the URL of each page"


def test_streamlits_own_page_list_is_hidden():
    # It would list the entry page as "app", after the file name of app.py.
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["showSidebarNavigation"] is False


def test_tlcore_never_imports_streamlit():
    modules = sorted((ROOT / "tlcore").rglob("*.py"))
    assert len(modules) > 20, "every module, in every folder"
    for module in modules:
        assert "streamlit" not in _imports(module), f"{module.relative_to(ROOT)} imports streamlit"


# Data page.


def test_data_page_scans_a_folder_and_shows_classes_counts_and_images(small_catsdogs):
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    assert not at.error, [element.value for element in at.error]
    assert metrics(at) == {"Classes": "2", "Train images": "24", "Validation images": "12", "Left out": "0"}
    counts = at.dataframe[0].value
    assert list(counts.index) == ["cats", "dogs"]
    assert counts.loc["cats", "train"] == 12 and counts.loc["dogs", "validation"] == 6
    assert at.session_state["dataset"].classes == ("cats", "dogs")
    captions = [caption for element in at.image for caption in element.captions]
    assert sum(caption.startswith("cat.") and "KB" in caption for caption in captions) == 12  # One page of cats.
    # The grid's six columns list their photos one after the other: photo i is in column i % 6.
    by_column = [int(caption.split(".")[1]) for caption in captions if caption.startswith("cat.")]
    numbers = [by_column[column * 2 + row] for row in range(2) for column in range(6)]
    assert numbers == sorted(numbers), "photos in the order a person counts (cat.2 before cat.10)"
    at = open_page("app.py", at)
    assert f"{small_catsdogs.name}: 2 classes (cats, dogs), 24 train / 12 validation images" in texts(at)


def test_data_page_lists_bad_files_as_rejected_with_reasons(seeded_bad_catsdogs):
    folder, expected = seeded_bad_catsdogs
    at = scan(open_page("pages/1_Data.py"), folder)
    assert metrics(at)["Left out"] == str(len(expected))
    rejected = at.dataframe[1].value
    reasons = dict(zip(rejected["file"], rejected["reason"]))
    for path, word in expected.items():
        relative = str(Path(path).relative_to(folder.resolve()))
        assert word in reasons[relative].lower(), (relative, reasons[relative])


@pytest.mark.parametrize("kind", ["missing", "file", "one_class", "empty", "nul"])
def test_data_page_bad_paths_show_an_error_not_an_exception(kind, tmp_path):
    target = {
        "missing": str(tmp_path / "no-such-folder"),
        "file": str(tmp_path / "file.txt"),
        "one_class": str(tmp_path / "one"),
        "empty": str(tmp_path / "empty"),
        "nul": "bad\0path",
    }[kind]
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "cats" / "a.png")
    (tmp_path / "empty").mkdir()
    at = scan(open_page("pages/1_Data.py"), target)
    assert at.error, "a clear error message"
    assert "dataset" not in at.session_state


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _photo_members(small_catsdogs: Path) -> dict[str, bytes]:
    return {
        f"pets/{path.relative_to(small_catsdogs)}": path.read_bytes() for path in sorted(small_catsdogs.rglob("*.jpg"))
    }


def test_data_page_zip_upload_extracts_under_the_data_folder_and_scans(small_catsdogs, folders):
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Zip upload").run()
    members = _photo_members(small_catsdogs) | {"__MACOSX/pets/._cat.1.jpg": b"junk", "pets/.DS_Store": b"junk"}
    at.file_uploader(key="zip_upload").set_value(("pets.zip", _zip(members), "application/zip")).run()
    click(at, "Extract and scan")
    assert not at.error, [element.value for element in at.error]
    assert metrics(at)["Classes"] == "2" and metrics(at)["Train images"] == "24"
    root = Path(at.session_state["dataset"].root)
    assert (folders["data"] / "uploads").resolve() in root.parents
    click(at, "Extract and scan")  # The same upload is not extracted twice.
    assert len(list((folders["data"] / "uploads").iterdir())) == 1 and not at.error


@pytest.mark.parametrize(
    "name, content",
    [
        ("traversal.zip", _zip({"../cats/a.jpg": b"x", "dogs/b.jpg": b"y"})),
        ("absolute.zip", _zip({"/etc/cats/a.jpg": b"x"})),
        ("not-a-zip.zip", b"this is not a zip archive"),
        ("empty.zip", b""),
    ],
)
def test_data_page_refuses_unsafe_or_broken_zips_with_a_message(name, content, folders):
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Zip upload").run()
    at.file_uploader(key="zip_upload").set_value((name, content, "application/zip")).run()
    click(at, "Extract and scan")
    assert at.error and name in plain(at.error[0].value)
    assert "dataset" not in at.session_state
    uploads = folders["data"] / "uploads"
    assert not uploads.exists() or not any(path.is_file() for path in uploads.rglob("*")), "nothing left behind"


def test_data_page_offline_demo_set(folders):
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Demo set").run()
    click(at, "Offline demo: brick, grass, gravel")
    assert not at.error, [element.value for element in at.error]
    assert at.session_state["dataset"].classes == ("brick", "grass", "gravel")
    assert (folders["data"] / "demo").resolve() in Path(at.session_state["dataset"].root).parents


def test_class_names_are_shown_as_text_not_markup(small_catsdogs, tmp_path):
    root = tmp_path / "odd"
    shutil.copytree(small_catsdogs / "train" / "cats", root / "<b>bold")
    shutil.copytree(small_catsdogs / "train" / "dogs", root / "**stars** :red[x]")
    at = scan(open_page("pages/1_Data.py"), root)
    assert at.session_state["dataset"].classes == ("**stars** :red[x]", "<b>bold")
    assert list(at.dataframe[0].value.index) == ["**stars** :red[x]", "<b>bold"]  # A table shows plain text.
    at = open_page("pages/2_Train.py", at)
    line = [markdown.value for markdown in at.markdown if "2 classes" in markdown.value][0]
    assert r"\*\*stars\*\* \:red\[x\]" in line and r"\<b\>bold" in line  # Escaped: shown as typed.
    assert plain(line).startswith("odd: 2 classes (**stars** :red[x], <b>bold)")


def test_augmentation_preview_follows_the_settings_and_the_train_page_uses_them(small_catsdogs):
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    preview_images = [caption for element in at.image for caption in element.captions if caption.startswith("original")]
    assert preview_images, "the preview shows the original"
    at.slider(key="aug_rotation_degrees").set_value(10.0).run()
    at.toggle(key="aug_vertical_flip").set_value(False).run()
    assert not at.exception
    settings = at.session_state["augmentation"]
    assert settings.rotation_degrees == 10.0 and settings.vertical_flip is False
    at = open_page("pages/2_Train.py", at)
    assert "rotation degrees 10.0" in texts(at) and "vertical flip False" in texts(at)
    at = open_page("pages/1_Data.py", at)
    assert at.slider(key="aug_rotation_degrees").value == 10.0, "settings survive a page switch"
    click(at, "Reset to the seed's settings")
    assert at.session_state["augmentation"].rotation_degrees == 40.0


def test_data_page_lists_the_whole_bad_input_kit_and_browses_the_odd_but_valid_images(small_catsdogs, tmp_path):
    root = tmp_path / "kit"
    shutil.copytree(small_catsdogs, root)
    kit = _bad_input_kit(sorted((small_catsdogs / "validation" / "dogs").iterdir())[0])
    for name, (content, _) in kit.items():
        (root / "train" / "cats" / f"kit-{name}").write_bytes(content)
    for debris in ("__MACOSX/._cat.1.jpg", ".DS_Store", "Thumbs.db", "cats/._cat.1.jpg", "cats/.DS_Store"):
        (root / "train" / debris).parent.mkdir(parents=True, exist_ok=True)
        (root / "train" / debris).write_bytes(b"debris")
    at = scan(open_page("pages/1_Data.py"), root)
    assert not at.error, [element.value for element in at.error]
    bad = {name for name, (_, word) in kit.items() if word is not None}
    rejected = at.dataframe[1].value
    assert sorted(Path(path).name.removeprefix("kit-") for path in rejected["file"]) == sorted(bad)
    assert at.session_state["dataset"].classes == ("cats", "dogs"), "debris is neither a class nor an image"
    at.pagination(key="browse_page_train_0").set_value(2).run()  # The odd but valid images sort last.
    assert not at.exception and not at.error
    captions = [caption for element in at.image for caption in element.captions]
    assert {f"kit-{name}" for name, (_, word) in kit.items() if word is None} <= {
        caption.split(" · ")[0] for caption in captions
    }


# Train page.


def test_train_page_shows_strategies_presets_and_the_layer_stack(small_catsdogs):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    strategy = at.radio(key="train_strategy")
    assert list(strategy.options) == [
        "1 · Feature extraction",
        "2 · Frozen base + augmentation",
        "3 · Fine-tuning",
        "Baseline · a small CNN from scratch",
        "1 → 2 → 3 in sequence",
    ]
    assert "parameters trained" in texts(at)
    strategy.set_value("fine_tuning").run()
    assert "Unfreeze the base's top block" in texts(at)
    captions = texts(at)
    assert "frozen + augmentation: train a head on augmented images" in captions
    assert "fine-tuning: top block unfrozen, train again" in captions
    at.segmented_control(key="train_preset").set_value("seed").run()
    assert at.selectbox(key="train_backbone").value == "vgg16"
    assert at.number_input(key="train_image_size").value == 150
    assert at.number_input(key="train_learning_rate").value == pytest.approx(2e-5)
    assert not at.exception


def test_train_page_starts_a_worker_and_shows_it_finished(small_catsdogs, folders):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    backbone, size = TINY_BACKBONE[1], int(TINY_BACKBONE[-1])
    at.selectbox(key="train_backbone").set_value(backbone).run()
    if "--weights" in TINY_BACKBONE:
        at.radio(key="train_weights").set_value("none").run()
    at.number_input(key="train_image_size").set_value(size)
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_batch_size").set_value(8).run()
    click(at, "Start training")
    run_id = at.session_state["run_id"]
    run = store.resolve(run_id, folders["runs"])
    assert run.config()["strategy"] == "feature_extraction" and run.config()["epochs"] == 2
    assert run_id in texts(at)
    deadline = time.time() + 240
    while run.state not in store.FINAL_STATES and time.time() < deadline:
        time.sleep(1)
    assert run.state == "done", run.status()
    at.run()
    assert "done: finished" in texts(at)
    assert run_id in list(at.dataframe[-1].value["run"]), "the runs table lists it"
    at = open_page("pages/2_Train.py", open_page("pages/3_Predict.py", at))
    assert run_id in texts(at) and "done: finished" in texts(at), "away and back: the same run"


def _fake_running_run(runs_dir: Path, data_dir: Path) -> store.Run:
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


def test_after_a_reload_the_train_page_shows_the_running_run_and_stop_works(folders, small_catsdogs):
    run = _fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")  # A fresh session, as after a browser reload.
    assert at.session_state["run_id"] == run.id
    assert "running: training" in texts(at)
    assert at.progress and "epoch 3 of 10, batch 2 of 4" in plain(at.progress[0].text)
    click(at, "Stop")
    assert run.stop_requested() and run.raw_status()["state"] == "stopping"


def _renamed(run: store.Run, stamp: str) -> store.Run:
    """The run moved to an id with another creation time: run ids sort by it, newest first."""
    return store.Run(run.path.rename(run.path.with_name(stamp + run.id[len(stamp) :])))


def test_after_a_reload_the_running_run_wins_over_newer_queued_ones(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    config = TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction")
    running = _renamed(_fake_running_run(folders["runs"], small_catsdogs), "20000101-000000")
    older_queued = _renamed(store.create(config, folders["runs"]), "20000101-000001")
    newest_queued = store.create(config, folders["runs"])  # Waiting for the running run to finish.
    assert [run.id for run in store.list_runs(folders["runs"])] == [newest_queued.id, older_queued.id, running.id]
    at = open_page("pages/2_Train.py")  # A fresh session, as after a browser reload.
    assert at.session_state["run_id"] == running.id
    assert "running: training" in texts(at) and at.progress
    running.set_status("done")
    at = open_page("pages/2_Train.py")  # Nothing trains: the newest queued run is next.
    assert at.session_state["run_id"] == newest_queued.id


def test_a_stage_of_one_epoch_is_not_called_1_epochs(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="fine_tuning"), folders["runs"])
    run.append_metrics(
        {"stage": "frozen_augmented", "epoch": 1, "loss": 0.7, "val_loss": 0.6, "accuracy": 0.6, "val_accuracy": 0.75}
    )
    (run.path / "summary.json").write_text(
        json.dumps(
            {
                "results": {
                    "frozen_augmented": {"best_val_accuracy": 0.75, "epochs": 1, "seconds": 12},
                    "fine_tuning": {"best_val_accuracy": 0.8, "epochs": 2, "seconds": 30},
                }
            }
        )
    )
    run.set_status("done")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert (
        "frozen + augmentation: best validation accuracy 75.0% after 1 epoch, 12 s · "
        "fine-tuning: best validation accuracy 80.0% after 2 epochs, 30 s"
    ) in texts(at)


def test_a_queued_run_says_which_run_it_waits_for_or_that_its_process_is_starting(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    running = _fake_running_run(folders["runs"], small_catsdogs)
    queued = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = queued.id
    at = open_page("pages/2_Train.py", at.run())
    assert plain(at.progress[0].text) == (
        f"Queued: waiting for run {running.id} to finish (one training runs at a time)."
    )
    running.set_status("done")
    at.run()
    assert not at.exception
    assert plain(at.progress[0].text) == "Queued: the training process is starting."


def test_scratch_runs_are_shown_as_a_small_cnn_not_a_backbone(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    scratch = store.create(
        TrainConfig(data_dir=str(small_catsdogs), strategy="scratch", image_size=96), folders["runs"]
    )
    scratch.set_status("done")
    transfer = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    transfer.set_status("done")
    home = {row["run"]: row["model"] for row in markdown_table(open_page(), "run")}
    assert home == {scratch.id: "small CNN", transfer.id: TrainConfig.backbone}
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = scratch.id
    at = open_page("pages/2_Train.py", at.run())
    table = at.dataframe[-1].value
    assert dict(zip(table["run"], table["model"])) == {scratch.id: "small CNN", transfer.id: TrainConfig.backbone}
    assert f"{scratch.id} · small CNN · 96 px" in texts(at)


def test_a_live_run_reruns_the_page_when_its_state_changes_and_seldom_for_epochs():
    from views import run_view

    seconds = run_view.PAGE_REFRESH_SECONDS
    assert 5 <= seconds <= 60, "a full page rerun is not a poll"
    assert run_view.page_is_stale(("queued", 0), 100.0, ("running", 0), 101.0)
    assert run_view.page_is_stale(("running", 3), 100.0, ("done", 3), 101.0)
    assert run_view.page_is_stale(("running", 3), 100.0, ("interrupted", 3), 101.0)
    assert not run_view.page_is_stale(("running", 3), 100.0, ("running", 3), 100.0 + 10 * seconds)
    assert not run_view.page_is_stale(("running", 3), 100.0, ("running", 4), 100.0 + seconds - 1)
    assert run_view.page_is_stale(("running", 3), 100.0, ("running", 4), 100.0 + seconds)
    assert run_view.page_is_stale(None, 100.0, ("running", 4), 101.0)


def test_compare_runs_overlays_the_selected_runs(folders, small_catsdogs):
    first = _fake_running_run(folders["runs"], small_catsdogs)
    first.set_status("done")
    second = _fake_running_run(folders["runs"], small_catsdogs)
    second.set_status("stopped")
    at = open_page("pages/2_Train.py")
    assert sorted(at.dataframe[-1].value["run"]) == sorted([first.id, second.id])
    # The run column takes the width of the ids (a "medium" column cut "…-all-efficientnet_lite0-82b5" short).
    assert "width" not in json.loads(at.dataframe[-1].proto.columns)["run"]
    assert "Select runs in the table" in texts(at)
    at.session_state["runs_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    chart = at.get("vega_lite_chart")[-1]
    import pyarrow

    frame = pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
    assert sorted(frame["run"].unique()) == sorted([first.id, second.id])
    assert set(frame["metric"]) == {"accuracy"} and set(frame["split"]) == {"validation"}


def test_a_killed_or_deleted_run_is_reported_and_the_page_keeps_working(folders, small_catsdogs):
    run = _fake_running_run(folders["runs"], small_catsdogs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.set_status("running", pid=dead.pid, started=time.time())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert "interrupted: The training process ended without finishing" in texts(at)
    shutil.rmtree(run.path)
    at.run()
    assert not at.exception and "run_id" not in at.session_state


def test_a_run_that_failed_before_its_first_epoch_says_no_curves_will_come(folders, small_catsdogs):
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(small_catsdogs), strategy="feature_extraction"), folders["runs"])
    run.set_status("failed", error="WeightsUnavailableError: no weights here")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert not at.exception
    assert "failed: WeightsUnavailableError: no weights here" in texts(at)
    # Not a chart "waiting for the first epoch": none will come.
    assert "No epoch finished before the run ended (failed): no curves to show." in texts(at)
    assert not at.get("vega_lite_chart")


def test_damaged_run_folders_do_not_break_any_page(folders):
    half = folders["runs"] / "20260101-000000-half"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{not json")
    (half / "metrics.jsonl").write_text('{"epoch": 1, "val_accuracy": 0.5}\n{"epoch": 2, "val_acc')
    broken = folders["runs"] / "20260101-000001-broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"strategy": "feature_extraction", "backbone": "vgg16"}))
    (broken / "status.json").write_text(json.dumps({"state": "done"}))
    (broken / "labels.json").write_text(json.dumps(["cats", "dogs"]))
    (broken / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    for page in PAGES:
        at = open_page(page)
        assert not at.exception
    at = open_page("pages/3_Predict.py")
    assert at.error and "model" in at.error[0].value.lower()


# Predict page.


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, small_catsdogs) -> Path:
    """A runs folder holding one tiny finished feature-extraction run."""
    runs_dir = tmp_path_factory.mktemp("trained_runs")
    command = [
        sys.executable,
        "-m",
        "tlcore",
        "train",
        "--data",
        str(small_catsdogs),
        "--strategy",
        "feature_extraction",
        *TINY_BACKBONE,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--runs-dir",
        str(runs_dir),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return runs_dir


def _predict_page(trained_runs: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    return open_page("pages/3_Predict.py")


def test_predict_page_predicts_good_photos_and_names_the_bad_file(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    cat = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.file_uploader(key="predict_uploads").set_value(
        [
            (cat.name, cat.read_bytes(), "image/jpeg"),
            ("notes.jpg", b"These are my notes, not a photo.\n", "image/jpeg"),
        ]
    ).run()
    assert not at.exception
    predictions = [markdown.value for markdown in at.markdown if markdown.value.startswith("Most likely")]
    assert len(predictions) == 1 and ("cats" in predictions[0] or "dogs" in predictions[0])
    assert len(at.error) == 1 and "notes.jpg" in plain(at.error[0].value)
    assert "text file" in at.error[0].value
    [run] = store.list_runs(trained_runs)
    accuracy = store.describe(run)["model_val_accuracy"]
    assert at.selectbox(key="predict_run").options == [f"{run.id} (done, model's validation accuracy {accuracy:.1%})"]


def _bad_input_kit(photo: Path) -> dict[str, tuple[bytes, str | None]]:
    """Upload name -> (bytes, a word the error must contain, or None when it must be predicted)."""
    original = photo.read_bytes()
    rgb = Image.open(photo).convert("RGB")
    cmyk, rotated, webp = io.BytesIO(), io.BytesIO(), io.BytesIO()
    rgb.convert("CMYK").save(cmyk, format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotated 90 degrees.
    rgb.save(rotated, format="JPEG", exif=exif)
    rgb.save(webp, format="WEBP")
    grey16 = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    png = png_bytes(rgb)
    return {
        "zero.jpg": (b"", "empty"),
        "text.jpg": (b"just some words\n", "text"),
        "page.png": (b"<!DOCTYPE html><html><body>hi</body></html>", "html"),
        "truncated.jpg": (original[: len(original) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "decode"),
        "bomb.png": (bomb_png(), "pixels"),
        "cmyk.jpg": (cmyk.getvalue(), None),
        "grey16.png": (png_bytes(grey16), None),
        "rgba.png": (png_bytes(rgb.convert("RGBA")), None),
        "rotated.jpg": (rotated.getvalue(), None),
        "photo.webp": (webp.getvalue(), None),
    }


def test_predict_page_survives_the_whole_bad_input_kit(trained_runs, monkeypatch, small_catsdogs):
    kit = _bad_input_kit(sorted((small_catsdogs / "validation" / "dogs").iterdir())[0])
    at = _predict_page(trained_runs, monkeypatch)
    at.file_uploader(key="predict_uploads").set_value(
        [(name, content, "application/octet-stream") for name, (content, _) in kit.items()]
    ).run()
    assert not at.exception, [item.message for item in at.exception]
    errors = [plain(element.value) for element in at.error]
    for name, (_, word) in kit.items():
        mine = [error for error in errors if error.startswith(f"{name}:")]
        if word is None:
            assert not mine, mine
        else:
            assert len(mine) == 1 and word in mine[0].lower(), (name, mine)
    predictions = [markdown.value for markdown in at.markdown if markdown.value.startswith("Most likely")]
    assert len(predictions) == sum(word is None for _, word in kit.values())


def test_predict_page_loads_the_model_once_per_run(trained_runs, monkeypatch, small_catsdogs):
    from tlcore.serving import predict
    from views import cached

    calls = []
    original = predict.load
    monkeypatch.setattr(predict, "load", lambda *args, **kwargs: calls.append(args) or original(*args, **kwargs))
    cached._predictor.clear()
    at = _predict_page(trained_runs, monkeypatch)
    cat = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    for _ in range(3):
        at.file_uploader(key="predict_uploads").set_value((cat.name, cat.read_bytes(), "image/jpeg")).run()
    assert len(calls) == 1
    assert not at.exception


# Evaluation, Grad-CAM, exports, batch prediction, training options.


def _trained_run(trained_runs: Path) -> store.Run:
    (run,) = store.list_runs(trained_runs)
    return run


def _specs(at: AppTest) -> list[str]:
    """The Vega-Lite spec (JSON text) of every chart on the page."""
    return [chart.proto.spec for chart in at.get("vega_lite_chart")]


def test_evaluation_view_shows_the_confusion_matrix_and_per_class_scores(trained_runs, monkeypatch):
    run = _trained_run(trained_runs)
    for cached in run.path.glob("evaluation-*.json"):
        cached.unlink()
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(trained_runs))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert "done: finished" in texts(at)
    assert not any('"true class"' in spec for spec in _specs(at)), "nothing is computed before the button"
    click(at, "Evaluate on the validation split")
    assert not at.error, [element.value for element in at.error]
    assert (run.path / "evaluation-validation.json").is_file()
    assert sum('"true class"' in spec for spec in _specs(at)) == 1, "one confusion matrix"
    table = at.dataframe[0].value
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    assert list(table["class"]) == ["cats", "dogs"] and list(table["support"]) == [6, 6]
    shown = metrics(at)
    assert shown["Validation images"] == "12" and shown["Accuracy"].endswith("%")
    at.toggle(key="current_normalised").set_value(True).run()
    assert not at.exception and any('"share of the true class"' in spec for spec in _specs(at))
    later = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    later.session_state["run_id"] = run.id
    later = open_page("pages/2_Train.py", later.run())
    assert not [button for button in later.button if button.label.startswith("Evaluate")], "cached: shown at once"
    assert metrics(later)["Accuracy"] == shown["Accuracy"]


def _fake_finished_run(runs_dir: Path, data_dir: Path) -> store.Run:
    """A done run with a (dummy) model file and its labels; no model is ever loaded from it."""
    from tlcore.config import TrainConfig

    run = store.create(TrainConfig(data_dir=str(data_dir), strategy="feature_extraction", epochs=2), runs_dir)
    run.set_status("done")
    store.write_json(run.path / "labels.json", ["cats", "**dogs**"])
    run.model_path.write_bytes(b"PK\x03\x04 a model")
    run.append_metrics(
        {"stage": "feature_extraction", "epoch": 1, "loss": 0.7, "accuracy": 0.6, "val_loss": 0.6, "val_accuracy": 0.5}
    )
    return run


def test_mistakes_gallery_pages_through_the_wrong_images_most_confident_first(folders, small_catsdogs):
    from tlcore.insight import evaluate

    run = _fake_finished_run(folders["runs"], small_catsdogs)
    cats = sorted((small_catsdogs / "validation" / "cats").iterdir())
    dogs = sorted((small_catsdogs / "validation" / "dogs").iterdir())
    paths = [str(path) for path in cats + dogs] + [str(cats[0]) + ".gone"]
    # 13 images, all wrong (the model swaps the classes), ever less confident; one file deleted since.
    confidence = np.linspace(0.99, 0.51, len(paths))
    labels = [0] * len(cats) + [1] * (len(dogs) + 1)
    probabilities = np.where(
        np.array(labels)[:, None] == 0, np.c_[1 - confidence, confidence], np.c_[confidence, 1 - confidence]
    )
    result = evaluate.summarise(
        "validation",
        ["cats", "**dogs**"],
        probabilities,
        labels,
        paths,
        model_mtime_ns=run.model_path.stat().st_mtime_ns,
    )
    store.write_json(evaluate.cache_path(run, "validation"), result.to_dict())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    assert metrics(at)["Mistakes"] == "13" and metrics(at)["Accuracy"] == "0.0%"
    captions = [caption_lines(caption) for element in at.image for caption in element.captions]
    assert len(captions) == 12, "one page of 12"
    # Each photo named by its path in the data set, as the CLI's evaluate lists it, and class names as text.
    assert captions[0] == [f"validation/cats/{cats[0].name}", "true: cats · predicted: **dogs** (99%)"], (
        "most confident first"
    )
    assert captions[-1][0] == f"validation/dogs/{dogs[-1].name}"
    assert captions[-1][1].startswith("true: **dogs** · predicted: cats")
    at.pagination(key=f"current_{run.id}_validation_mistakes_page").set_value(2).run()
    assert not at.exception
    assert [plain(caption) for element in at.image for caption in element.captions] == []
    assert len(at.error) == 1 and plain(at.error[0].value).startswith(f"validation/cats/{cats[0].name}.gone: "), (
        "a deleted photo is named, not a crash"
    )
    assert "true: **dogs** · predicted: cats (51%)" in texts(at)


def caption_lines(caption: str) -> list[str]:
    """The lines of a Markdown caption (hard breaks are two spaces and a newline), unescaped."""
    return [line.strip() for line in plain(caption).splitlines()]


def test_a_mistake_is_captioned_with_its_file_name_as_text(folders, small_catsdogs, tmp_path):
    from tlcore.insight import evaluate

    data_dir = tmp_path / "photos"
    shutil.copytree(small_catsdogs, data_dir)
    photo = sorted((data_dir / "validation" / "cats").iterdir())[0]
    odd = photo.rename(photo.with_name("**bold** [link](x) <b>1.jpg"))
    run = _fake_finished_run(folders["runs"], data_dir)
    result = evaluate.summarise(
        "validation",
        ["cats", "**dogs**"],
        np.array([[0.1, 0.9]]),
        [0],
        [str(odd)],
        model_mtime_ns=run.model_path.stat().st_mtime_ns,
    )
    store.write_json(evaluate.cache_path(run, "validation"), result.to_dict())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.id
    at = open_page("pages/2_Train.py", at.run())
    [caption] = [caption for element in at.image for caption in element.captions]
    assert caption_lines(caption) == [
        "validation/cats/**bold** [link](x) <b>1.jpg",
        "true: cats · predicted: **dogs** (90%)",
    ]
    assert "\\*\\*bold\\*\\* \\[link\\]\\(x\\) \\<b\\>" in caption, "escaped: shown as typed, not as Markdown"


def test_a_single_run_picked_in_the_table_shows_its_evaluation(folders, small_catsdogs):
    from tlcore.insight import evaluate

    picked = _fake_finished_run(folders["runs"], small_catsdogs)
    photo = str(sorted((small_catsdogs / "validation" / "cats").iterdir())[0])
    result = evaluate.summarise(
        "validation",
        ["cats", "**dogs**"],
        np.array([[0.8, 0.2], [0.3, 0.7]]),
        [0, 1],
        [photo, photo],
        model_mtime_ns=picked.model_path.stat().st_mtime_ns,
    )
    store.write_json(evaluate.cache_path(picked, "validation"), result.to_dict())
    current = _fake_running_run(folders["runs"], small_catsdogs)
    at = open_page("pages/2_Train.py")
    assert at.session_state["run_id"] == current.id and "Mistakes" not in metrics(at)
    rows = list(at.dataframe[-1].value["run"])
    at.session_state["runs_table"] = {"selection": {"rows": [rows.index(picked.id)], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert metrics(at)["Accuracy"] == "100.0%" and metrics(at)["Mistakes"] == "0"
    assert "None: the model classifies every image of this split correctly." in texts(at)


def test_predict_page_grad_cam_draws_an_overlay_beside_each_photo(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    photos = [sorted((small_catsdogs / "validation" / name).iterdir())[0] for name in ("cats", "dogs")]
    at.file_uploader(key="predict_uploads").set_value(
        [(photo.name, photo.read_bytes(), "image/jpeg") for photo in photos]
    ).run()
    assert len(at.image) == 2, "photos only, until asked"
    at.toggle(key="predict_gradcam").set_value(True).run()
    assert not at.exception and not at.warning, [element.value for element in at.warning]
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert sorted(caption for caption in captions if caption.startswith("where it looked")) == sorted(
        f"where it looked for {plain(markdown.value).split('**')[1]}"
        for markdown in at.markdown
        if markdown.value.startswith("Most likely")
    )
    overlays = [element for element in at.image if plain(element.captions[0]).startswith("where it looked")]
    assert len(overlays) == 2


def test_predict_page_exports_tflite_and_offers_the_download(trained_runs, monkeypatch):
    at = _predict_page(trained_runs, monkeypatch)
    assert not at.download_button, "nothing to download before an export"
    click(at, "Export as TFLite")
    assert not at.error, [element.value for element in at.error]
    assert [button.label for button in at.download_button] == ["Download TFLite"]
    agreement = r"model\.tflite \([0-9.]+ [KM]B\) agrees with the Keras model on 100\.0% of 12 validation images"
    assert any(re.match(agreement, plain(box.value)) for box in at.success), [box.value for box in at.success]
    assert (_trained_run(trained_runs).path / "exports" / "model.tflite").is_file()


def test_predict_page_batch_zip_gives_a_table_and_a_csv(trained_runs, monkeypatch, small_catsdogs):
    at = _predict_page(trained_runs, monkeypatch)
    photos = sorted((small_catsdogs / "validation" / "cats").iterdir())[:2]
    archive = _zip({f"album/{photo.name}": photo.read_bytes() for photo in photos} | {"album/notes.txt": b"notes"})
    at.file_uploader(key="batch_zip").set_value(("album.zip", archive, "application/zip")).run()
    click(at, "Predict every photo")
    assert not at.error, [element.value for element in at.error]
    table = at.dataframe[0].value
    assert list(table.columns) == ["file", "top label", "probability", "top k", "error"]
    assert list(table["file"]) == [f"album/{photo.name}" for photo in photos] + ["album/notes.txt"]
    assert set(table["top label"][:2]) <= {"cats", "dogs"} and "not an image" in table["error"].iloc[2]
    assert list(table["error"][:2]) == ["", ""] and table["top label"].iloc[2] == ""
    assert all(50 <= value <= 100 for value in table["probability"][:2]), "the top label's share, in percent"
    assert "album.zip: 2 photo(s) predicted, 1 file(s) could not be used" in texts(at)
    assert [button.label for button in at.download_button] == ["Download the CSV"]


def _predict_batch_zip(at: AppTest, small_catsdogs: Path) -> AppTest:
    """Predicts a zip of two cat photos and a text file on the Predict page's batch tab."""
    photos = sorted((small_catsdogs / "validation" / "cats").iterdir())[:2]
    archive = _zip({f"album/{photo.name}": photo.read_bytes() for photo in photos} | {"album/notes.txt": b"notes"})
    at.file_uploader(key="batch_zip").set_value(("album.zip", archive, "application/zip")).run()
    return click(at, "Predict every photo")


def test_predict_page_batch_table_leaves_error_cells_blank_and_gives_top_k_to_a_tenth(
    trained_runs, monkeypatch, small_catsdogs
):
    at = _predict_batch_zip(_predict_page(trained_runs, monkeypatch), small_catsdogs)
    element = at.dataframe[0]
    table = element.value
    # The error row has no probability; the browser writes "None" in such a cell unless the table says
    # what to show instead (an unset placeholder reads "" too, hence HasField).
    assert table["error"].iloc[2] and pd.isna(table["probability"].iloc[2])
    assert element.proto.HasField("placeholder") and element.proto.placeholder == ""
    for label, probability, top_k in zip(table["top label"][:2], table["probability"][:2], table["top k"][:2]):
        items = top_k.split("; ")
        assert items[0] == f"{label} {probability:.1f}%", "the top label's share, as in the probability column"
        assert all(re.fullmatch(r"(cats|dogs) \d{1,3}\.\d%", item) for item in items), items


def test_predict_page_batch_of_a_missing_folder_names_it_and_clears_the_old_table(
    trained_runs, monkeypatch, small_catsdogs, tmp_path
):
    at = _predict_batch_zip(_predict_page(trained_runs, monkeypatch), small_catsdogs)
    assert at.dataframe, "the zip's table"
    missing = tmp_path / "nope"
    at.segmented_control(key="batch_source").set_value("Folder").run()
    at.text_input(key="batch_folder").input(str(missing)).run()
    click(at, "Predict every photo")
    assert [plain(element.value) for element in at.error] == [
        f"{missing} does not exist: expected a folder of photos or a .zip archive."
    ]
    assert not at.dataframe and not at.download_button, "the zip's table is not this folder's"
    photo = sorted((small_catsdogs / "validation" / "cats").iterdir())[0]
    at.text_input(key="batch_folder").input(str(photo)).run()
    click(at, "Predict every photo")
    assert [plain(element.value) for element in at.error] == [
        f"{photo} is neither a folder nor a .zip archive: expected a folder of photos or a .zip archive."
    ]


def test_predict_page_takes_every_photo_type_the_data_set_scan_takes(trained_runs, monkeypatch, small_catsdogs):
    from tlcore.data import images

    at = _predict_page(trained_runs, monkeypatch)
    uploader = at.file_uploader(key="predict_uploads")
    assert sorted(uploader.allowed_type) == sorted(images.SUPPORTED_EXTENSIONS)
    photo = Image.open(sorted((small_catsdogs / "validation" / "dogs").iterdir())[0]).convert("RGB")
    uploads = []
    for extension in images.SUPPORTED_EXTENSIONS:
        buffer = io.BytesIO()
        photo.save(buffer, format={".jpg": "JPEG"}.get(extension, extension[1:].upper()))
        uploads.append((f"dog{extension}", buffer.getvalue(), "application/octet-stream"))
    uploader.set_value(uploads).run()  # Streamlit refuses (raises for) a type the uploader does not list.
    assert not at.exception and not at.error, [element.value for element in at.error]
    predictions = [markdown.value for markdown in at.markdown if markdown.value.startswith("Most likely")]
    assert len(predictions) == len(images.SUPPORTED_EXTENSIONS)


def test_learning_rate_finder_draws_the_sweep_and_uses_its_suggestion(small_catsdogs, folders):
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    at.selectbox(key="train_backbone").set_value(TINY_BACKBONE[1]).run()
    if "--weights" in TINY_BACKBONE:
        at.radio(key="train_weights").set_value("none").run()
    at.number_input(key="train_image_size").set_value(int(TINY_BACKBONE[-1]))
    at.number_input(key="train_batch_size").set_value(8).run()
    click(at, "Find a learning rate")
    assert not at.error, [element.value for element in at.error]
    assert any('"learning rate (log scale)"' in spec for spec in _specs(at))
    sweep = at.session_state["lr_sweep"]["sweep"]
    assert 1e-6 <= sweep.suggestion <= 1.0
    assert f"Suggested learning rate: {sweep.suggestion:.2g}" in texts(at)
    assert (folders["runs"] / ".cache" / "features").is_dir(), "the features are cached for training"
    click(at, f"Use {sweep.suggestion:.2g} as the learning rate")
    assert at.number_input(key="train_learning_rate").value == pytest.approx(float(f"{sweep.suggestion:.2g}"))
    assert "set to the suggestion" in texts(at)


@pytest.fixture
def imbalanced(tmp_path, small_catsdogs) -> Path:
    """12 cats against 4 dogs for training, 6 + 6 for validation (links to the small set's photos)."""
    root = tmp_path / "imbalanced"
    for split, counts in (("train", {"cats": 12, "dogs": 4}), ("validation", {"cats": 6, "dogs": 6})):
        for name, count in counts.items():
            (root / split / name).mkdir(parents=True)
            for photo in sorted((small_catsdogs / split / name).iterdir())[:count]:
                (root / split / name / photo.name).symlink_to(photo)
    return root


def test_training_options_reach_the_started_runs_config(imbalanced, folders, monkeypatch):
    from tlcore.runs import worker

    monkeypatch.setattr(worker, "start", lambda config, runs_dir: store.create(config, runs_dir))  # No process.
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), imbalanced))
    notice = [plain(box.value) for box in at.info if "imbalanced" in box.value]
    assert notice and "12 training images in the largest class, 4 in the smallest" in notice[0]
    assert "cats ×0.67, dogs ×2.00" in notice[0], "said so, with the weights"
    at.radio(key="train_strategy").set_value("frozen_augmented").run()
    at.number_input(key="train_early_stopping_patience").set_value(3)
    at.number_input(key="train_augmented_views").set_value(4)
    at.selectbox(key="train_class_weight").set_value("none").run()
    assert not [box for box in at.info if "imbalanced" in box.value], "no notice once weighting is off"
    click(at, "Start training")
    config = json.loads((folders["runs"] / at.session_state["run_id"] / "config.json").read_text())
    assert (
        config["strategy"],
        config["early_stopping_patience"],
        config["class_weight"],
        config["augmented_views"],
    ) == ("frozen_augmented", 3, "none", 4)
    at.selectbox(key="train_class_weight").set_value("balanced").run()
    assert 'Class weights "always" weight each class\'s loss' in texts(at)
