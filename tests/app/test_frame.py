"""Every page in Streamlit's AppTest: it renders, draws the frame (links, data set and run lines), keeps the rules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.app.page_kit import (
    APP,
    ROOT,
    open_page,
    plain,
    scan,
)

PAGES = ["app.py", "pages/1_Data.py", "pages/2_Train.py", "pages/3_Predict.py"]


@pytest.mark.parametrize("page", PAGES)
def test_each_page_renders_on_a_fresh_session(page):
    at = open_page(page)
    assert at.title, "every page has a title"
    assert not at.error, [element.value for element in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_the_frame_even_when_it_stops_early(page, small_catsdogs):
    # A fresh session: the Data, Train and Predict pages end in a guard clause (st.stop()).
    at = open_page(page)
    assert [plain(element.value) for element in at.sidebar.caption] == [
        "Data set: none chosen yet",
        "Current run: none yet",
    ]
    # A data set chosen on this very run shows at once (the Data page stops nowhere after a scan).
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    assert plain(at.sidebar.caption[0].value).startswith(f"Data set: {small_catsdogs.name}: 2 classes")


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


def imports_of(path: Path) -> set[str]:
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
        assert not imports_of(script) & {"tensorflow", "keras"}, f"{script.name} imports TensorFlow or Keras"
        assert "unsafe_allow_html" not in script.read_text(encoding="utf-8"), script.name


def test_tlcore_never_imports_streamlit():
    modules = sorted((ROOT / "tlcore").rglob("*.py"))
    assert len(modules) > 20, "every module, in every folder"
    for module in modules:
        assert "streamlit" not in imports_of(module), f"{module.relative_to(ROOT)} imports streamlit"


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


@pytest.mark.parametrize("page", PAGES)
def test_a_fresh_session_reopens_the_last_used_data_set_whichever_page_it_opens(page, small_catsdogs, folders):
    """A reload or a new tab on Home, Train or Predict said "no data set chosen": only the Data page reopened it."""
    from streamlit.testing.v1 import AppTest

    from tests.app.page_kit import TIMEOUT, texts

    scan(open_page("pages/1_Data.py"), small_catsdogs)  # Now in the library, the last one used.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run() if page == "app.py" else open_page(page)
    assert not at.exception
    assert plain(at.sidebar.caption[0].value).startswith(f"Data set: {small_catsdogs.name}: 2 classes")
    shown = texts(at)
    assert "none chosen" not in shown and "No data set" not in shown and "Choose a data set" not in shown
    if page == "pages/2_Train.py":
        assert "New run" in [element.value for element in at.subheader]


@pytest.mark.parametrize("page", PAGES)
def test_a_fresh_session_opened_by_a_link_reopens_the_links_data_set(page, small_catsdogs, tmp_path, folders):
    import shutil

    from streamlit.testing.v1 import AppTest

    from tests.app.page_kit import TIMEOUT
    from tlcore.data import library

    linked, later = tmp_path / "linked", tmp_path / "later"
    shutil.copytree(small_catsdogs, linked)
    shutil.copytree(small_catsdogs / "train", later)
    scan(scan(open_page("pages/1_Data.py"), linked), later)  # "later" is the last one used.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["dataset"] = library.entry_id(linked.resolve())
    at = at.run() if page == "app.py" else open_page(page, at.run())
    assert at.session_state["dataset"].root == str(linked.resolve())
    assert plain(at.sidebar.caption[0].value).startswith("Data set: linked: 2 classes")
