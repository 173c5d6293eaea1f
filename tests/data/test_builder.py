"""Data sets made in the browser: classes and photos in an ordinary class-folder set, bad files refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.images import bad_input_kit, encoded
from tlcore.data import builder, folders, library


def _photos(catsdogs_dir: Path, class_name: str, count: int) -> list[tuple[bytes, str]]:
    found = sorted((catsdogs_dir / "train" / class_name).iterdir())[:count]
    return [(path.read_bytes(), path.name) for path in found]


def test_a_made_set_scans_as_an_ordinary_flat_data_set_and_joins_the_library(catsdogs_dir, tmp_path):
    data = tmp_path / "data"
    folder = builder.create_set(data, "  my   pets ")
    assert folder == data / "built" / "my pets"
    for name in ("cats", "dogs"):
        builder.add_class(folder, name)
        report = builder.add_photos(folder, name, _photos(catsdogs_dir, name, 5))
        assert len(report.added) == 5 and report.refused == ()
    assert builder.missing(folder) == []
    scan = folders.scan(folder)
    assert (scan.layout, scan.classes, scan.rejected) == ("flat", ("cats", "dogs"), ())
    assert {split: len(samples) for split, samples in scan.splits.items()} == {"train": 8, "validation": 2}
    entry = library.record(data, scan, "built")
    assert [item.id for item in library.entries(data)] == [entry.id] and entry.kind == "built"
    assert builder.sets(data) == [folder]
    builder.delete_set(folder, data, tmp_path / "runs")
    assert not folder.exists() and library.entries(data) == [], "deleted with its photos, and forgotten"


def test_bad_files_are_refused_with_their_name_and_reason_and_nothing_is_written(catsdogs_dir, tmp_path):
    folder = builder.create_set(tmp_path, "kit")
    builder.add_class(folder, "odd")
    kit = bad_input_kit(sorted((catsdogs_dir / "train" / "cats").iterdir())[0])
    report = builder.add_photos(folder, "odd", [(content, name) for name, (content, _) in kit.items()])
    refused = dict(report.refused)
    for name, (_, word) in kit.items():
        if word is None:
            assert name not in refused, f"{name} should be usable: {refused.get(name)}"
        else:
            assert word in refused[name].lower(), (name, refused[name])
    written = builder.photos(folder)["odd"]
    assert len(written) == len(report.added) == sum(word is None for _, word in kit.values())
    assert not list((folder / "odd").glob(".*")), "no temporary file left behind"
    with pytest.raises(builder.InvalidImageError, match=r"note\.jpg: .*text"):
        builder.add_photo(folder, "odd", b"a note, not a photo", "note.jpg")


def test_files_take_their_real_format_and_same_names_are_numbered(tmp_path):
    folder = builder.create_set(tmp_path, "shots")
    builder.add_class(folder, "red")
    png, other, third_png = (encoded(Image.new("RGB", (40, 30), colour), "PNG") for colour in ("red", "pink", "plum"))
    first = builder.add_photo(folder, "red", png, "image.jpg")  # A PNG with a JPEG's name.
    second = builder.add_photo(folder, "red", other, "image.jpg")
    third = builder.add_photo(folder, "red", third_png, "../../x y?.png")
    assert [path.name for path in (first, second, third)] == ["image.png", "image-2.png", "x-y.png"]
    assert first.read_bytes() == png, "the bytes are kept as uploaded"
    builder.remove_photo(folder, second)
    assert builder.photos(folder) == {"red": [first, third]}
    with pytest.raises(ValueError, match="not a photo of the data set"):
        builder.remove_photo(folder, tmp_path / "elsewhere.png")


def test_a_photo_the_set_holds_already_is_refused_naming_where_it_is(tmp_path):
    # The same upload twice was kept as image.png and image-2.png: counted double, and possibly in training and
    # validation both; in another class it would teach two labels for one photo.
    folder = builder.create_set(tmp_path, "shots")
    builder.add_class(folder, "red")
    builder.add_class(folder, "blue")
    png = encoded(Image.new("RGB", (40, 30), "red"), "PNG")
    first = builder.add_photo(folder, "red", png, "image.png")
    with pytest.raises(
        builder.DuplicatePhotoError, match=r"copy\.png: the same photo is in the data set already, as red/image\.png"
    ):
        builder.add_photo(folder, "blue", png, "copy.png")
    report = builder.add_photos(folder, "red", [(png, "again.png"), (png + b"", "again-2.png")])
    assert report.added == () and [name for name, _ in report.refused] == ["again.png", "again-2.png"]
    fresh = encoded(Image.new("RGB", (40, 30), "blue"), "PNG")
    report = builder.add_photos(folder, "blue", [(fresh, "b.png"), (fresh, "b-copy.png")])
    assert [path.name for path in report.added] == ["b.png"], "a batch's own repeat is refused too"
    assert report.refused == (("b-copy.png", "the same photo is in the data set already, as blue/b.png."),)
    assert builder.photos(folder) == {"blue": [folder / "blue" / "b.png"], "red": [first]}


def test_classes_are_renamed_and_deleted_with_their_photos(tmp_path):
    folder = builder.create_set(tmp_path, "colours")
    builder.add_class(folder, "red")
    builder.add_class(folder, "blue")
    photo = builder.add_photo(folder, "red", encoded(Image.new("RGB", (8, 8), "red"), "JPEG"), "a.jpg")
    builder.rename_class(folder, "red", "crimson")
    assert builder.photos(folder) == {"blue": [], "crimson": [folder / "crimson" / photo.name]}
    with pytest.raises(ValueError, match="class 'blue' already"):
        builder.rename_class(folder, "crimson", "Blue")
    builder.delete_class(folder, "crimson")
    assert builder.classes(folder) == ["blue"]
    with pytest.raises(ValueError, match="No class 'crimson'"):
        builder.delete_class(folder, "crimson")
    builder.delete_set(folder, tmp_path, tmp_path / "runs")
    assert builder.sets(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("   ", "cannot be empty"),
        ("a/b", "cannot hold"),
        (".hidden", "cannot start with"),
        ("__MACOSX", "system folder"),
        ("Train", "split folder"),
        ("val", "split folder"),
        ("x" * 61, "at most 60"),
    ],
)
def test_class_names_that_would_change_what_the_scan_sees_are_refused(tmp_path, name, message):
    folder = builder.create_set(tmp_path, "names")
    with pytest.raises(ValueError, match=message):
        builder.add_class(folder, name)
    assert builder.classes(folder) == []


def test_missing_says_what_stands_between_a_set_and_training(tmp_path):
    folder = builder.create_set(tmp_path, "early")
    assert builder.missing(folder) == ["2 more classes: training needs at least 2."]
    builder.add_class(folder, "red")
    builder.add_photo(folder, "red", encoded(Image.new("RGB", (8, 8), "red"), "PNG"), "r.png")
    assert builder.missing(folder) == [
        "1 more class: training needs at least 2.",
        "3 more photos in 'red' (it has 1 of 4).",
    ]
    with pytest.raises(ValueError, match="exists already"):
        builder.create_set(tmp_path, "early")
