"""The Predict page's batch path on its own: typed folders stay under the data roots, big folders are refused.

The view runs with a stand-in predictor: every case here is refused before a photo is predicted.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.app.page_kit import click, plain


def _batch_app() -> None:
    """The batch view alone, with a predictor that only names its labels."""
    from types import SimpleNamespace

    from views import ship_view

    ship_view.batch("run-1", SimpleNamespace(labels=["cats", "dogs"]))


def _predict_folder(folder: str) -> AppTest:
    at = AppTest.from_function(_batch_app, default_timeout=60).run()
    at.segmented_control(key="batch_source").set_value("Folder").run()
    at.text_input(key="batch_folder").input(folder).run()
    return click(at, "Predict every photo")


def test_a_typed_batch_folder_outside_the_data_roots_is_refused(folders):
    at = _predict_folder("/etc")
    [error] = [plain(element.value) for element in at.error]
    assert error.startswith("/etc is outside the allowed data folders")
    assert "TLCORE_DATA_ROOTS" in error
    assert not at.dataframe


def test_a_batch_folder_with_more_files_than_the_cap_says_so(folders, tmp_path, monkeypatch):
    from tlcore.data import browse

    monkeypatch.setattr(browse, "MAX_FILES", 3)
    for index in range(5):
        (tmp_path / f"photo{index}.jpg").write_bytes(b"x")
    at = _predict_folder(str(tmp_path))
    [error] = [plain(element.value) for element in at.error]
    assert error == (
        f"Too many files to predict. {tmp_path}: holds more than 3 files; choose a folder of the photos to predict."
    )
    assert not at.dataframe


def test_an_empty_batch_folder_is_a_warning_without_a_table_or_a_csv(folders, tmp_path):
    # It said "empty: 0 photos predicted." above an empty table and offered a CSV of its header.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"debris")  # Skipped, as hidden files are: still nothing to predict.
    at = _predict_folder(str(empty))
    assert [plain(element.value) for element in at.warning] == [
        "empty: no files in it, subfolders included (hidden files and OS debris such as .DS_Store are skipped)."
    ]
    assert not at.dataframe and not at.download_button and not at.error
