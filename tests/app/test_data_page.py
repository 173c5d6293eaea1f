"""The Data page: scans, zip uploads, the demo set, the bad-input kit, the augmentation preview."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.app.page_kit import (
    bad_input_kit,
    chart_specs,
    click,
    metrics,
    open_page,
    plain,
    scan,
    texts,
    zip_bytes,
)
from tlcore.config import AugmentationConfig
from tlcore.data import library
from views import session


def test_data_page_scans_a_folder_and_shows_classes_counts_and_images(small_catsdogs):
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    assert not at.error, [element.value for element in at.error]
    assert metrics(at) == {"Classes": "2", "Train images": "24", "Validation images": "12", "Left out": "0"}
    counts = at.dataframe[0].value
    assert list(counts.index) == ["cats", "dogs"]
    assert counts.loc["cats", "train"] == 12 and counts.loc["dogs", "validation"] == 6
    assert at.session_state["dataset"].classes == ("cats", "dogs")
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert sum(caption.startswith("cat.") and "KB" in caption for caption in captions) == 12  # One page of cats.
    # The grid's cells follow one another in reading order (they wrap at the window's edge).
    numbers = [int(caption.split(".")[1]) for caption in captions if caption.startswith("cat.")]
    assert numbers == sorted(numbers), "photos in the order a person counts (cat.2 before cat.10)"
    at = open_page("app.py", at)
    assert f"{small_catsdogs.name}: 2 classes (cats, dogs), 24 train / 12 validation images" in texts(at)


def test_a_photo_whose_name_is_not_utf8_is_shown_and_a_class_folder_so_named_is_refused(small_catsdogs, tmp_path):
    # The scan uses such a photo (its name reaches Python with surrogates, PEP 383), but the page failed as a
    # whole: Streamlit's cache hashed the name as UTF-8 for the thumbnail and the augmentation preview.
    root = tmp_path / "set"
    shutil.copytree(small_catsdogs, root)
    first = sorted((root / "train" / "cats").iterdir())[0]
    first.rename(root / "train" / "cats" / os.fsdecode(b"caf\xe9.jpg"))
    at = scan(open_page("pages/1_Data.py"), root)
    assert not at.error, [element.value for element in at.error]
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert any(caption.startswith("caf\ufffd.jpg") for caption in captions)
    assert at.selectbox(key=session.preview_image_key(at.session_state["dataset"])).value.endswith("caf\udce9.jpg")
    # A class is a label every chart, table and prediction shows as text: such a folder name is refused, named.
    for split in ("train", "validation"):
        (root / split / "dogs").rename(root / split / os.fsdecode(b"d\xf6gs"))
    at = scan(at, root)
    assert "the class folder d\ufffdgs has a name that is not UTF-8 text" in plain(at.error[0].value)


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
    if kind in ("missing", "file"):  # Said as the Predict page's batch tab says it.
        reason = "does not exist" if kind == "missing" else "not a folder"
        assert [plain(box.value) for box in at.error] == [f"{target}: {reason}."]


def test_data_page_zip_upload_extracts_under_the_data_folder_and_scans(small_catsdogs, folders):
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Zip upload").run()
    members = _photo_members(small_catsdogs) | {"__MACOSX/pets/._cat.1.jpg": b"junk", "pets/.DS_Store": b"junk"}
    members["pets/train/cats/notes.txt"] = b"my notes"
    at.file_uploader(key="zip_upload").set_value(("pets.zip", zip_bytes(members), "application/zip")).run()
    at = click(at, "Extract and scan")
    assert not at.error, [element.value for element in at.error]
    assert metrics(at)["Classes"] == "2" and metrics(at)["Train images"] == "24"
    root = Path(at.session_state["dataset"].root)
    assert (folders["data"] / "uploads").resolve() in root.parents
    left_out = "1 file in the archive not extracted"
    assert [expander.label for expander in at.expander if "not extracted" in expander.label] == [left_out]
    at = click(at, "Extract and scan")  # The same upload is not extracted twice, and says again what it left out.
    assert len(list((folders["data"] / "uploads").iterdir())) == 1 and not at.error
    assert [expander.label for expander in at.expander if "not extracted" in expander.label] == [left_out]


def test_deleting_an_uploaded_set_says_what_becomes_of_its_runs_and_what_was_removed(small_catsdogs, folders):
    # The confirmation named only the photos and caches, and the result said "5 folders removed".
    from tests.app.page_kit import fake_finished_run

    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Zip upload").run()
    archive = zip_bytes(_photo_members(small_catsdogs))
    at.file_uploader(key="zip_upload").set_value(("pets.zip", archive, "application/zip")).run()
    at = click(at, "Extract and scan")
    root = Path(at.session_state["dataset"].root)
    fake_finished_run(folders["runs"], root)
    damaged = fake_finished_run(folders["runs"], root)  # Its config's data_dir is no path: skipped, not a crash.
    (damaged.path / "config.json").write_text(json.dumps({**damaged.config(), "data_dir": 5}))
    at.segmented_control(key="data_source").set_value("Library").run()
    [entry] = library.entries(folders["data"])
    at.checkbox(key=f"library_delete_confirmed_{entry.id}").check().run()
    assert plain(at.checkbox[0].label) == (
        f"Yes, delete {entry.name}: the app's copy of its photos and its cached features are removed. 1 run "
        "trained on it keeps its model (Predict, exports) but can no longer be evaluated, resumed or trained on it "
        "again"
    )
    at = click(at, "Delete")
    assert not root.exists()
    assert f"{entry.name}: deleted (the app's copy of its photos removed)." in texts(at)


def test_a_zip_that_is_no_data_set_leaves_nothing_behind_and_the_same_zip_again_is_one_data_set(
    small_catsdogs, folders
):
    # Its extracted copy stayed, unlisted in the library so nothing could delete it, and the message named that
    # internal folder; the same archive uploaded again was extracted again, a second library entry.
    photos = sorted((small_catsdogs / "train" / "cats").iterdir())[:3]
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Zip upload").run()
    flat = zip_bytes({photo.name: photo.read_bytes() for photo in photos})
    at.file_uploader(key="zip_upload").set_value(("loose.zip", flat, "application/zip")).run()
    click(at, "Extract and scan")
    [error] = [plain(element.value) for element in at.error]
    assert error.startswith("loose.zip: found no class folder; at least 2 are needed.") and "uploads" not in error
    uploads = folders["data"] / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    pets = zip_bytes(_photo_members(small_catsdogs))  # Built once: a zip holds the time its members were added.
    for _ in range(2):  # Two uploads of one archive: two upload ids, one content.
        at.file_uploader(key="zip_upload").set_value(("pets.zip", pets, "application/zip"))
        click(at, "Extract and scan")
        assert not at.error, [element.value for element in at.error]
    assert len(list(uploads.iterdir())) == 1 and len(library.entries(folders["data"])) == 1


@pytest.mark.parametrize(
    "name, content",
    [
        ("traversal.zip", zip_bytes({"../cats/a.jpg": b"x", "dogs/b.jpg": b"y"})),
        ("absolute.zip", zip_bytes({"/etc/cats/a.jpg": b"x"})),
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


def test_a_failed_demo_download_says_why_in_a_few_words_and_points_to_the_offline_button(
    folders, tmp_path, monkeypatch
):
    # It read "(URL fetch failure on https://...: None -- [Errno -2] Name or service not known) ... or
    # tlcore.data.demo.build_offline_demo(folder) in Python": the address twice, and a Python call on a page.
    import functools
    import socket

    from tlcore.data import demo

    with socket.socket() as probe:  # A local port nobody listens on: the real download, refused.
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    origin = f"http://127.0.0.1:{port}/{demo.CATS_AND_DOGS_FILE}"
    download = functools.partial(demo.download_cats_and_dogs, cache_dir=tmp_path / "cache", origin=origin)
    monkeypatch.setattr(demo, "download_cats_and_dogs", download)
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Demo set").run()
    click(at, "Download cats vs dogs")
    assert [plain(element.value) for element in at.error] == [
        "Could not download cats vs dogs: Connection refused. It needs network access. The offline demo needs no "
        "download: **Offline demo: brick, grass, gravel**."
    ]


def test_data_page_lists_the_whole_bad_input_kit_and_browses_the_odd_but_valid_images(small_catsdogs, tmp_path):
    root = tmp_path / "kit"
    shutil.copytree(small_catsdogs, root)
    kit = bad_input_kit(sorted((small_catsdogs / "validation" / "dogs").iterdir())[0])
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
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert {f"kit-{name}" for name, (_, word) in kit.items() if word is None} <= {
        caption.split(" · ")[0] for caption in captions
    }


def _photo_members(small_catsdogs: Path) -> dict[str, bytes]:
    return {
        f"pets/{path.relative_to(small_catsdogs)}": path.read_bytes() for path in sorted(small_catsdogs.rglob("*.jpg"))
    }


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
    preview_images = [
        caption for element in at.image for caption in element.captions if plain(caption).startswith("original")
    ]
    assert preview_images, "the preview shows the original"
    at.slider(key="aug_rotation_degrees").set_value(25.0).run()
    at.toggle(key="aug_vertical_flip").set_value(True).run()
    assert not at.exception
    settings = at.session_state["augmentation"]
    assert settings.rotation_degrees == 25.0 and settings.vertical_flip is True
    at = open_page("pages/2_Train.py", at)
    [line] = [text for text in texts(at).splitlines() if text.startswith("Augmentation (set on the Data page)")]
    assert "rotation up to 25°" in line and "flips left-right" in line and "upside down" in line
    at = open_page("pages/1_Data.py", at)
    assert at.slider(key="aug_rotation_degrees").value == 25.0, "settings survive a page switch"
    click(at, "Reset to the defaults")
    assert at.session_state["augmentation"] == AugmentationConfig()


def test_a_typed_folder_outside_the_data_roots_is_refused_with_the_roots_named(folders):
    at = scan(open_page("pages/1_Data.py"), "/etc")
    [error] = [plain(element.value) for element in at.error]
    assert error.startswith("/etc is outside the allowed data folders")
    assert "TLCORE_DATA_ROOTS" in error
    assert "dataset" not in at.session_state


def test_file_names_in_image_captions_are_text_not_links(small_catsdogs, tmp_path):
    root = tmp_path / "odd"
    shutil.copytree(small_catsdogs, root)
    photo = root / "train" / "cats" / "cat.1.jpg"
    photo.rename(photo.with_name("[x](https:\\evil).jpg"))
    at = scan(open_page("pages/1_Data.py"), root)
    captions = [caption for element in at.image for caption in element.captions]
    [odd] = [caption for caption in captions if "evil" in caption]
    assert odd.startswith("\\[x\\]\\(https\\:\\\\evil\\)\\.jpg · "), odd  # Escaped: no link.
    assert plain(odd).startswith("[x](https:\\evil).jpg · ")


def test_the_library_lists_scans_reopens_the_last_one_after_a_reload_and_picks_renames_deletes(
    small_catsdogs, tmp_path, folders
):
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(small_catsdogs, first)
    shutil.copytree(small_catsdogs / "train", second)  # Flat: two class folders.
    at = scan(scan(open_page("pages/1_Data.py"), first), second)
    assert at.session_state["dataset"].root == str(second.resolve())
    ids = {Path(entry.path).name: entry.id for entry in library.entries(folders["data"])}
    assert at.query_params["dataset"] == ids["second"]

    at = open_page("pages/1_Data.py")  # A reload: a new, empty session reopens the last data set used.
    assert at.session_state["dataset"].root == str(second.resolve()) and not at.error
    at.segmented_control(key="data_source").set_value("Library").run()
    choice = at.selectbox(key="library_choice")
    assert [option.split(":")[0] for option in choice.options] == ["second", "first"]
    choice.set_value(ids["first"]).run()
    click(at, "Use this data set")
    assert at.session_state["dataset"].root == str(first.resolve())
    at.text_input(key=f"library_name_{ids['first']}").input("my *pets*").run()
    click(at, "Rename")
    assert at.selectbox(key="library_choice").options[0].startswith("my *pets*: 2 classes, 24 train / 12 validation")
    assert "first is now my *pets*." in texts(at)

    assert at.button(key="library_delete").disabled, "deleting asks for a confirmation first"
    at.checkbox(key=f"library_delete_confirmed_{ids['first']}").check().run()
    assert "Yes, delete my *pets*: it is forgotten with its cached features" in plain(at.checkbox[0].label)
    assert at.checkbox[0].label.startswith("Yes, delete my \\*pets\\*"), "the name is text, not Markdown"
    click(at, "Delete")  # A folder of the user's own: forgotten, never removed.
    assert (first / "train" / "cats").is_dir() and "dataset" not in at.session_state
    assert [entry.id for entry in library.entries(folders["data"])] == [ids["second"]]
    assert "my *pets*: deleted." in texts(at)  # It said "(0 folders removed)".


def test_after_renaming_a_library_entry_that_is_not_the_first_use_and_delete_act_on_it(
    small_catsdogs, tmp_path, folders
):
    # In the browser the selector fell back to the first entry after a rename, and Use, then Delete, acted on
    # another data set than the one shown: tests/app/test_browser.py shows that (AppTest keeps the value).
    # Here: the choice kept, Delete behind its confirmation, and the new name wherever the set is named.
    roots = [tmp_path / name for name in ("one", "two", "three")]
    at = open_page("pages/1_Data.py")
    for root in roots:
        shutil.copytree(small_catsdogs, root)
        at = scan(at, root)
    ids = {Path(entry.path).name: entry.id for entry in library.entries(folders["data"])}
    at.segmented_control(key="data_source").set_value("Library").run()
    at.selectbox(key="library_choice").set_value(ids["one"]).run()  # The last entry: the oldest used.
    at.text_input(key=f"library_name_{ids['one']}").input("renamed").run()
    click(at, "Rename")
    assert at.selectbox(key="library_choice").value == ids["one"]
    click(at, "Use this data set")
    assert at.session_state["dataset"].root == str(roots[0].resolve())
    # Its new name wherever the data set is named (the sidebar, Home, the Train page), not the folder's.
    assert plain(at.sidebar.caption[0].value).startswith("Data set: renamed: 2 classes")
    assert "renamed: 2 classes (cats, dogs)" in texts(open_page("pages/2_Train.py", at))
    at = open_page("pages/1_Data.py", at)
    at.checkbox(key=f"library_delete_confirmed_{ids['one']}").check().run()
    click(at, "Delete")
    assert sorted(entry.id for entry in library.entries(folders["data"])) == sorted([ids["two"], ids["three"]])


def test_deleting_an_uploaded_data_set_from_the_library_removes_its_extracted_folder(small_catsdogs, folders):
    at = open_page("pages/1_Data.py")
    at.segmented_control(key="data_source").set_value("Zip upload").run()
    at.file_uploader(key="zip_upload").set_value(("pets.zip", zip_bytes(_photo_members(small_catsdogs)), "x")).run()
    click(at, "Extract and scan")
    uploads = folders["data"] / "uploads"
    assert len(list(uploads.iterdir())) == 1
    at.segmented_control(key="data_source").set_value("Library").run()
    assert at.selectbox(key="library_choice").options[0].startswith("pets: 2 classes")
    assert at.selectbox(key="library_choice").options[0].endswith("images (upload)")
    entry_id = at.selectbox(key="library_choice").value
    at.checkbox(key=f"library_delete_confirmed_{entry_id}").check().run()
    click(at, "Delete")
    assert list(uploads.iterdir()) == [] and "dataset" not in at.session_state
    assert "The library is empty" in texts(at)


def test_the_count_table_gives_class_names_room_to_show_whole(small_catsdogs, tmp_path):
    root = tmp_path / "flowers"
    shutil.copytree(small_catsdogs / "train" / "cats", root / "dandelion")
    shutil.copytree(small_catsdogs / "train" / "dogs", root / "sunflowers_in_the_evening")
    at = scan(open_page("pages/1_Data.py"), root)
    config = json.loads(at.dataframe[0].proto.columns)["_index"]
    assert config["label"] == "class"
    assert config["width"] >= 9 * len("sunflowers_in_the_evening"), config  # Pixels: the longest name, whole.
    spec = json.loads([chart for chart in chart_specs(at) if '"yOffset"' in chart][0])
    assert spec["encoding"]["y"]["axis"]["labelLimit"] >= 9 * len("sunflowers_in_the_evening")


def test_the_validation_fraction_and_split_seed_split_a_flat_data_set_and_the_library_keeps_them(flat_small, folders):
    at = scan(open_page("pages/1_Data.py"), flat_small)
    assert metrics(at)["Validation images"] == "6"  # 20% of 10 per class, 3 classes.
    before = set(at.session_state["dataset"].paths("validation"))
    at.slider(key="split_fraction").set_value(0.5).run()
    assert metrics(at)["Validation images"] == "15" and not at.error
    at.number_input(key="split_seed").set_value(7).run()
    dataset = at.session_state["dataset"]
    assert (dataset.validation_fraction, dataset.seed) == (0.5, 7) and set(dataset.paths("validation")) != before
    assert "No validation folder: 50% of each class is held out for validation (seed 7)." in texts(at)
    [entry] = library.entries(folders["data"])
    assert (entry.validation_fraction, entry.seed, entry.images["validation"]) == (0.5, 7, 15)
    at = open_page("pages/1_Data.py")  # A reload: the data set comes back with its split, and so do the widgets.
    assert (at.session_state["dataset"].validation_fraction, at.session_state["dataset"].seed) == (0.5, 7)
    assert (at.slider(key="split_fraction").value, at.number_input(key="split_seed").value) == (0.5, 7)
    at = open_page("pages/2_Train.py", at)
    assert not at.exception


def test_at_full_brightness_every_preview_copy_is_framed_and_numbered(small_catsdogs, monkeypatch):
    from tlcore.data import browse

    shown = []
    original = browse.framed
    monkeypatch.setattr(browse, "framed", lambda picture, *args, **kwargs: shown.append(picture) or original(picture))
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    at.slider(key="aug_brightness").set_value(1.0).run()
    assert not at.exception and not at.error
    captions = [plain(caption) for element in at.image for caption in element.captions]
    assert [caption for caption in captions if caption.startswith("copy ")] == [f"copy {n}" for n in range(1, 9)]
    assert len(shown) % 9 == 0 and shown, "the original and its 8 copies, each framed, on every draw"


def test_the_explorer_shows_the_map_the_leaks_and_saves_decisions_on_suspects(small_catsdogs, folders, monkeypatch):
    from tlcore.data import cleaning
    from tlcore.insight import explore

    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    dataset = at.session_state["dataset"]
    cats, dogs = dataset.paths("train")[:1], dataset.paths("validation")[-1:]
    found = explore.Exploration(
        map=tuple(
            explore.MapPoint(path, dataset.classes[label], split, float(index), 0.0)
            for index, (path, label, split) in enumerate(zip(*explore.dataset_items(dataset)))
        ),
        duplicates=(explore.DuplicatePair(cats[0], dogs[0], 0.97, True),),
        suspects=(explore.Suspect(cats[0], "cats", "dogs", 0.9), explore.Suspect(dogs[0], "dogs", "cats", 0.8)),
        seconds=1.0,
        features_from_cache=False,
    )
    calls = []
    monkeypatch.setattr(explore, "explore", lambda scanned, **kwargs: calls.append(kwargs) or found)
    images_before = len(at.image)
    click(at, "Explore this data set")
    assert calls == [{"runs_dir": folders["runs"]}] and not at.error
    spec = json.loads([chart for chart in chart_specs(at) if '"shape"' in chart][0])
    assert spec["encoding"]["color"]["field"] == "class" and spec["encoding"]["shape"]["field"] == "split"
    pairs = [frame.value for frame in at.dataframe if "twin" in frame.value.columns][0]
    assert pairs.to_dict("records") == [
        {
            "photo": "train/cats/" + Path(cats[0]).name,
            "twin": "validation/dogs/" + Path(dogs[0]).name,
            "similarity": 0.97,
            "leak": True,
        }
    ]
    assert at.selectbox(key="explore_choice_0").options == ["keep", "drop", "relabel to cats", "relabel to dogs"]
    # Each suspect beside its photo (decided unseen before), its score said as what a classifier gave its class.
    suspects = [plain(block.value) for block in at.markdown if "looks like" in block.value]
    assert suspects[0] == (
        f"train/cats/{Path(cats[0]).name}: labelled cats, looks like dogs (a classifier that never saw it rates "
        "it 10% cats)"
    )
    assert len(at.image) - images_before == 2, "one thumbnail per suspect"
    at.selectbox(key="explore_choice_0").set_value("relabel to dogs")
    at.selectbox(key="explore_choice_1").set_value("drop")
    click(at, "Save decisions")
    assert cleaning.load_decisions(dataset, folders["data"]) == {
        cats[0]: cleaning.Decision(cats[0], "relabel", "dogs"),
        dogs[0]: cleaning.Decision(dogs[0], "drop"),
    }
    assert "2 photos to drop or relabel, saved in the app's data folder (the photos are untouched); a run" in (
        texts(at)
    )
    at.run()  # The saved decisions are what the explorer shows next.
    assert at.selectbox(key="explore_choice_0").value == "relabel to dogs" and len(calls) == 1


def test_the_explorer_keeps_the_decisions_that_still_fit_when_a_decided_photo_was_deleted(
    catsdogs_subset, folders, monkeypatch
):
    """It loaded none of them (one file gone refused the whole file), and the next save wrote over them all."""
    from tlcore.data import cleaning
    from tlcore.data import folders as data_folders
    from tlcore.insight import explore

    photos = catsdogs_subset("explorer_deleted_photos", train=4, validation=2)
    dataset = data_folders.scan(photos)
    cats, dogs = dataset.paths("train")[:2], dataset.paths("train")[-1:]
    cleaning.save_decisions(
        dataset,
        [cleaning.Decision(cats[0], "relabel", "dogs"), cleaning.Decision(cats[1], "drop")],
        folders["data"],
    )
    Path(cats[1]).unlink()
    at = scan(open_page("pages/1_Data.py"), photos)
    rescanned = at.session_state["dataset"]
    found = explore.Exploration(
        map=tuple(
            explore.MapPoint(path, rescanned.classes[label], split, float(index), 0.0)
            for index, (path, label, split) in enumerate(zip(*explore.dataset_items(rescanned)))
        ),
        duplicates=(),
        suspects=(explore.Suspect(cats[0], "cats", "dogs", 0.9), explore.Suspect(dogs[0], "dogs", "cats", 0.8)),
        seconds=1.0,
        features_from_cache=False,
    )
    monkeypatch.setattr(explore, "explore", lambda scanned, **kwargs: found)
    click(at, "Explore this data set")
    assert not at.error and not at.warning
    assert at.selectbox(key="explore_choice_0").value == "relabel to dogs"
    gone = f"train/cats/{Path(cats[1]).name}: no longer at its saved path"
    expected = f"1 saved decision no longer fits the data set ({gone}): set aside, and left out when you save."
    assert any(plain(caption.value).startswith(expected) for caption in at.caption), [c.value for c in at.caption]
    at.selectbox(key="explore_choice_1").set_value("drop")
    click(at, "Save decisions")
    assert cleaning.load_decisions(rescanned, folders["data"]) == {
        cats[0]: cleaning.Decision(cats[0], "relabel", "dogs"),
        dogs[0]: cleaning.Decision(dogs[0], "drop"),
    }


def test_the_flip_check_measures_the_photos_and_applies_its_suggestion(small_catsdogs):
    at = scan(open_page("pages/1_Data.py"), small_catsdogs)
    at.toggle(key="aug_vertical_flip").set_value(True).run()  # The defaults already leave it off.
    click(at, "Check which flips suit these photos")
    assert not at.exception
    findings = [plain(caption.value) for caption in at.caption if "copies of these photos" in caption.value]
    assert findings[0].startswith(
        "Flip upside down: off, because a classifier on the backbone's features tells upside-down"
    )
    assert findings[1].startswith("Flip left-right: on, because ")
    click(at, "Apply the suggested flips")
    assert at.toggle(key="aug_vertical_flip").value is False and at.toggle(key="aug_horizontal_flip").value is True
    assert at.session_state["augmentation"].vertical_flip is False
    assert "The flips are set as suggested." in texts(at)
