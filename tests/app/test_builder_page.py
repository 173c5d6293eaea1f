"""The Data page's builder: a set made from uploads and camera shots, bad files named, then scanned and listed."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.app.page_kit import click, metrics, open_page, plain, texts
from tlcore.data import builder, library


def _make(at: AppTest, key: str, name: str, button: str) -> AppTest:
    at.text_input(key=key).input(name)
    return click(at, button)


def _upload(at: AppTest, photos: list[Path], extra: list[tuple[str, bytes]] = ()) -> AppTest:
    files = [(photo.name, photo.read_bytes(), "image/jpeg") for photo in photos]
    files += [(name, content, "image/jpeg") for name, content in extra]
    at.file_uploader(key=f"builder_uploads_{at.session_state['builder_upload_round']}").set_value(files).run()
    return click(at, f"Add {builder.counted(len(files), 'photo')} to {at.selectbox(key='builder_target').value}")


def test_a_set_built_from_uploads_and_camera_shots_says_what_is_missing_then_scans_into_the_library(
    catsdogs_dir, folders
):
    cats = sorted((catsdogs_dir / "train" / "cats").iterdir())[:5]
    dogs = sorted((catsdogs_dir / "train" / "dogs").iterdir())[:4]
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Build").run()
    at = _make(at, "builder_new_set", "pets", "Create")
    folder = folders["data"] / "built" / "pets"
    assert folder.is_dir() and "2 more classes" in texts(at)
    at = _make(at, "builder_new_class", "cats", "Add class")
    at = _make(at, "builder_new_class", "dogs", "Add class")
    at = _upload(at, cats[:3], [("notes.jpg", b"my notes, not a photo")])
    assert not at.exception
    assert any("notes.jpg" in plain(error.value) and "text" in error.value for error in at.error), texts(at)
    assert "1 more photo in 'cats' (it has 3 of 4)" in texts(at)
    assert not [button for button in at.button if button.label == "Use this data set"], "not ready yet"
    # A camera shot goes to the class picked, once: a rerun with the same shot adds nothing.
    at.camera_input(key="builder_camera").set_value(("shot.jpg", cats[3].read_bytes(), "image/jpeg")).run()
    at.run()
    assert [path.name for path in builder.photos(folder)["cats"]] == ["camera.jpg"] + [path.name for path in cats[:3]]
    at.selectbox(key="builder_target").set_value("dogs").run()
    at = _upload(at, dogs[:3])
    at.camera_input(key="builder_camera").clear().run()
    at.camera_input(key="builder_camera").set_value(("shot.jpg", dogs[3].read_bytes(), "image/jpeg")).run()
    photos = builder.photos(folder)
    assert [len(found) for found in photos.values()] == [4, 4] and (folder / "dogs" / "camera.jpg").is_file()
    assert "Before training" not in texts(at)
    # Thumbnails per class, each removable; removing one makes the set short of a photo again.
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert sorted(captions) == sorted(path.name for found in photos.values() for path in found)
    at = click(at, "Remove")
    assert "1 more photo in 'cats' (it has 3 of 4)" in texts(at) and not (folder / "cats" / "camera.jpg").exists()
    at.selectbox(key="builder_target").set_value("cats").run()
    at.camera_input(key="builder_camera").clear().run()
    at.camera_input(key="builder_camera").set_value(("shot.jpg", cats[4].read_bytes(), "image/jpeg")).run()
    at = click(at, "Use this data set")
    assert metrics(at) == {"Classes": "2", "Train images": "6", "Validation images": "2", "Left out": "0"}
    # A photo added to the set in use counts at once (the scan report, the sidebar and the Train page kept the
    # counts of when it was chosen, while a run trained on the photos it had then).
    sixth = sorted((catsdogs_dir / "train" / "cats").iterdir())[5]
    at = _upload(at, [], [("cat.2.jpg", sixth.read_bytes())])
    assert metrics(at) == {"Classes": "2", "Train images": "7", "Validation images": "2", "Left out": "0"}
    # Thumbnails in the order a person counts, as the Browse grid shows photos (sorted as text, 1106 came before
    # 114, cat.10.jpg before cat.2.jpg).
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert captions[:5] == ["camera.jpg", cats[0].name, "cat.2.jpg", *[path.name for path in cats[1:3]]]
    assert "7 train / 2 validation images" in plain(at.sidebar.caption[0].value)
    assert library.entries(folders["data"])[0].images["train"] == 7, "the library's counts follow"
    assert at.session_state["dataset"].num_classes == 2
    [entry] = library.entries(folders["data"])
    assert (entry.name, entry.kind, entry.classes) == ("pets", "built", ("cats", "dogs"))
    # Renamed in the library, the set is shown by that name here too (the builder kept its folder's name).
    library.rename(folders["data"], entry.id, "our pets")
    assert at.run().selectbox(key="builder_set").options == ["our pets"]
    # Deleting the set removes its photos, forgets it in the library and stops showing it.
    at = click(at, "Delete it")
    assert not folder.exists() and library.entries(folders["data"]) == []
    assert "dataset" not in at.session_state and "Scan report" not in texts(at)


def test_classes_are_renamed_and_deleted_and_a_bad_name_is_refused_with_a_message(folders):
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Build").run()
    at = _make(at, "builder_new_set", "colours", "Create")
    at = _make(at, "builder_new_class", "train", "Add class")
    assert any("names a split folder" in error.value for error in at.error)
    at = _make(at, "builder_new_class", "red", "Add class")
    at.text_input(key="builder_rename_red").input("crimson")
    at = click(at, "Rename")
    folder = folders["data"] / "built" / "colours"
    assert builder.classes(folder) == ["crimson"]
    at = click(at, "Delete class and its photos")
    assert builder.classes(folder) == [] and "No photos yet." not in texts(at)
    at = click(at, "Delete it")
    assert not folder.exists() and "Name a new data set to start." in texts(at)


def test_the_builder_says_the_scan_report_below_is_another_data_set_and_refuses_a_repeated_photo(
    catsdogs_dir, folders, small_catsdogs
):
    # Below the builder, the Scan report of the data set in use read as if it were the set being made.
    from tests.app.page_kit import scan

    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    at.segmented_control(key="data_source").set_value("Build").run()
    assert "The data set in use is" not in texts(at), "no set is being made yet"
    at = _make(at, "builder_new_set", "pets", "Create")
    at = _make(at, "builder_new_class", "cats", "Add class")
    assert f"The data set in use is {small_catsdogs.name}; the set being made above takes its place" in texts(at)
    # The same photo twice (an upload repeated) is refused, naming where the set holds it.
    cat = sorted((catsdogs_dir / "train" / "cats").iterdir())[0]
    at = _upload(at, [cat, cat])
    assert [path.name for path in builder.photos(folders["data"] / "built" / "pets")["cats"]] == [cat.name]
    assert f"{cat.name}: the same photo is in the data set already, as cats/{cat.name}." in [
        plain(error.value) for error in at.error
    ]
    # A photo removed by mistake can be put back (Remove had no undo).
    kept = folders["data"] / "built" / "pets" / "cats" / cat.name
    at = click(at, "Remove")
    assert not kept.exists() and f"Removed {cat.name} from cats." in texts(at)
    at = click(at, "Put back")
    assert kept.read_bytes() == cat.read_bytes() and "Added 1 photo to cats." in texts(at)
    assert not [button for button in at.button if button.label == "Put back"], "once"
    # The set deleted by another tab: no note about a set "being made above" that is not there.
    import shutil

    shutil.rmtree(folders["data"] / "built" / "pets")
    at.run()
    assert "Name a new data set to start." in texts(at) and "The data set in use is" not in texts(at)
