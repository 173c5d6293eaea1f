"""Data set scanning, splitting, fingerprinting and the tf.data pipeline (tlcore.data)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import declared_png, encoded, refuse_reading
from tests.helpers.paths import PROJECT_ROOT
from tlcore.data import (
    browse,
    cleaning,
    decoder_processes,
    decoders,
    folders,
    images,
    library,
    pipeline,
    shared_batches,
)
from tlcore.data.dataset import DatasetError, DatasetScan, fingerprint


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _photos(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix == ".jpg")


def _validation_by_class(scan: DatasetScan) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {name: set() for name in scan.classes}
    for sample in scan.splits["validation"]:
        found[scan.classes[sample.label]].add(Path(sample.path).name)
    return found


# --- the real data set ------------------------------------------------------------------------


def test_scan_real_catsdogs(catsdogs_dir):
    scan = folders.scan(catsdogs_dir)
    assert scan.layout == "splits"
    assert scan.classes == ("cats", "dogs")
    assert scan.counts() == {
        "train": {"cats": 1000, "dogs": 999},
        "validation": {"cats": 250, "dogs": 250},
    }
    assert scan.rejected == ()
    # Labels follow the class folders.
    for split in ("train", "validation"):
        for path, label in zip(scan.paths(split), scan.labels(split)):
            assert Path(path).parent.name == scan.classes[label]


# --- bad and foreign files --------------------------------------------------------------------


def test_seeded_bad_files_are_rejected_with_reasons(seeded_bad_catsdogs):
    root, expected = seeded_bad_catsdogs
    scan = folders.scan(root)
    rejected = {item.path: item.reason for item in scan.rejected}
    assert set(rejected) == set(expected)
    for path, word in expected.items():
        assert word in rejected[path].lower(), (path, rejected[path])
    assert scan.counts() == {"train": {"cats": 12, "dogs": 12}, "validation": {"cats": 6, "dogs": 6}}
    usable = {path for split in scan.splits for path in scan.paths(split)}
    assert not usable & set(expected)


def test_a_file_that_cannot_be_read_is_rejected_by_name_and_the_scan_goes_on(tmp_path, small_catsdogs, monkeypatch):
    # The decoder's open() raised PermissionError past the scan, which lost the whole folder.
    root = _copy(small_catsdogs, tmp_path / "set")
    locked = _photos(root / "train" / "cats")[0]
    refuse_reading(monkeypatch, locked)
    scan = folders.scan(root)
    assert [(item.path, item.reason) for item in scan.rejected] == [(str(locked), "cannot be read (Permission denied)")]
    assert len(scan.paths("train")) == len(_photos(root / "train" / "cats")) + len(_photos(root / "train" / "dogs")) - 1


def test_non_image_extension_and_loose_files_are_rejected(tmp_path, small_catsdogs):
    root = _copy(small_catsdogs, tmp_path / "set")
    notes = root / "train" / "cats" / "notes.txt"
    notes.write_text("not a photo")
    loose = root / "train" / "stray.jpg"
    shutil.copy(_photos(root / "train" / "cats")[0], loose)
    rejected = {item.path: item.reason for item in folders.scan(root).rejected}
    assert set(rejected) == {str(notes.resolve()), str(loose.resolve())}
    assert "not an image file" in rejected[str(notes.resolve())]
    assert "outside any class folder" in rejected[str(loose.resolve())]


def test_scan_refuses_only_the_bad_images_and_keeps_the_odd_good_ones(tmp_path, small_catsdogs):
    root = _copy(small_catsdogs, tmp_path / "set")
    with Image.open(_photos(root / "train" / "cats")[0]) as opened:
        photo = opened.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    good = {
        "cmyk.jpg": encoded(photo.convert("CMYK"), "JPEG"),
        "grey16.png": encoded(Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16)), "PNG"),
        "rgba.png": encoded(photo.convert("RGBA"), "PNG"),
        "palette.gif": encoded(photo.convert("P"), "GIF"),
        "animated.gif": encoded(photo.convert("P"), "GIF", save_all=True, append_images=[photo.convert("P")]),
        "turned.jpg": encoded(photo, "JPEG", exif=exif.tobytes()),
        "photo.webp": encoded(photo, "WEBP"),
        "photo.bmp": encoded(photo, "BMP"),
    }
    png = encoded(photo, "PNG")
    bad = {
        "empty.png": (b"", "empty"),
        "page.png": (b"<!DOCTYPE html><html><body>Not found</body></html>", "html"),
        "cut.png": (png[: len(png) // 2], "truncated"),
        "bomb.png": (declared_png(20_000, 20_000), "decompression bomb"),
        "scan.jpg": (encoded(photo, "TIFF"), "expected one of"),
    }
    for name, content in good.items():
        (root / "train" / "cats" / name).write_bytes(content)
    for name, (content, _) in bad.items():
        (root / "train" / "dogs" / name).write_bytes(content)
    scan = folders.scan(root)
    rejected = {Path(item.path).name: item.reason for item in scan.rejected}
    assert set(rejected) == set(bad)
    for name, (_, words) in bad.items():
        assert words in rejected[name].lower(), (name, rejected[name])
    assert scan.counts()["train"] == {"cats": 12 + len(good), "dogs": 12}
    assert {Path(path).name for path in scan.paths("train")} >= set(good)


def _add_debris(folder: Path) -> None:
    """What a Mac or Windows leaves in a copied folder or zip."""
    junk = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # an AppleDouble header
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (folder / "Thumbs.db").write_bytes(bytes(64))
    macosx = folder / "__MACOSX"
    for class_folder in [path for path in folder.rglob("*") if path.is_dir() and "__MACOSX" not in path.parts]:
        (class_folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (class_folder / "Thumbs.db").write_bytes(bytes(32))
        for photo in _photos(class_folder)[:2]:
            (class_folder / f"._{photo.name}").write_bytes(junk)
            shadow = macosx / class_folder.relative_to(folder) / f"._{photo.name}"
            shadow.parent.mkdir(parents=True, exist_ok=True)
            shadow.write_bytes(junk)


def test_macos_and_windows_debris_is_ignored_in_splits_layout(tmp_path, small_catsdogs):
    root = _copy(small_catsdogs, tmp_path / "set")
    _add_debris(root)
    assert (root / "__MACOSX" / "train" / "cats").is_dir()
    scan = folders.scan(root)
    assert scan.classes == ("cats", "dogs")
    assert scan.rejected == ()
    assert scan.counts() == folders.scan(small_catsdogs).counts()


def test_macos_debris_is_ignored_in_flat_layout(tmp_path, flat_small):
    root = _copy(flat_small, tmp_path / "set")
    _add_debris(root)
    scan = folders.scan(root)
    assert scan.classes == ("cats", "dogs", "greys")
    assert scan.rejected == ()
    assert sum(len(samples) for samples in scan.splits.values()) == 30


def test_a_wrapper_folder_is_looked_through(tmp_path, small_catsdogs, flat_small):
    # As a zip made on a Mac unpacks: archive/<layout> beside __MACOSX/.
    for source in (small_catsdogs, flat_small):
        outer = tmp_path / source.name
        inner = _copy(source, outer / "archive" / "pets")
        (outer / "__MACOSX" / "archive").mkdir(parents=True)
        (outer / "__MACOSX" / "archive" / "._pets").write_bytes(b"junk")
        (outer / ".DS_Store").write_bytes(b"junk")
        wrapped, direct = folders.scan(outer), folders.scan(source)
        assert wrapped.root == str(inner.resolve())
        assert wrapped.layout == direct.layout
        assert wrapped.classes == direct.classes
        assert wrapped.counts() == direct.counts()


# --- the flat layout's split ------------------------------------------------------------------


def test_flat_split_is_stratified_disjoint_and_complete(flat_small):
    scan = folders.scan(flat_small, validation_fraction=0.3, seed=7)
    assert scan.layout == "flat"
    assert scan.classes == ("cats", "dogs", "greys")
    assert set(scan.splits) == {"train", "validation"}
    assert scan.counts() == {
        "train": {"cats": 7, "dogs": 7, "greys": 7},
        "validation": {"cats": 3, "dogs": 3, "greys": 3},
    }
    train, validation = set(scan.paths("train")), set(scan.paths("validation"))
    assert not train & validation
    every_file = {str(path) for path in Path(flat_small).resolve().glob("*/*.jpg")}
    assert train | validation == every_file
    for split in ("train", "validation"):
        for path, label in zip(scan.paths(split), scan.labels(split)):
            assert Path(path).parent.name == scan.classes[label]


@pytest.mark.parametrize(
    "fraction, held_out",
    [
        (0.1, 1),
        (0.38, 4),
        (0.5, 5),
        (0.8, 8),
        (0.01, 1),  # at least one image per class to validate on
        (0.99, 9),
    ],  # ... and at least one to train on
)
def test_flat_split_holds_out_the_given_fraction(flat_small, fraction, held_out):
    """10 images per class: the nearest whole number of images to the fraction is held out."""
    counts = folders.scan(flat_small, validation_fraction=fraction).counts()
    assert counts["validation"] == {"cats": held_out, "dogs": held_out, "greys": held_out}
    assert counts["train"] == {"cats": 10 - held_out, "dogs": 10 - held_out, "greys": 10 - held_out}


def test_flat_split_is_deterministic_for_a_seed(flat_small):
    first = folders.scan(flat_small, seed=11)
    again = folders.scan(flat_small, seed=11)
    other = folders.scan(flat_small, seed=12)
    assert first.splits == again.splits
    assert _validation_by_class(first) != _validation_by_class(other)
    # Each class is shuffled on its own, not only the first one.
    changed = [name for name in first.classes if _validation_by_class(first)[name] != _validation_by_class(other)[name]]
    assert len(changed) >= 2


def test_adding_a_class_does_not_reshuffle_the_others(tmp_path, flat_small):
    root = _copy(flat_small, tmp_path / "set")
    before = _validation_by_class(folders.scan(root, seed=3))
    # A class that sorts first shifts every other class's index.
    (root / "aardvarks").mkdir()
    for photo in _photos(root / "dogs"):
        shutil.copy(photo, root / "aardvarks" / photo.name)
    after = _validation_by_class(folders.scan(root, seed=3))
    assert {name: after[name] for name in before} == before


# --- data sets that cannot be used ------------------------------------------------------------


def _make_splits(root: Path, source: Path, layout: dict[str, list[str]]) -> Path:
    for split, classes in layout.items():
        for name in classes:
            target = root / split / name
            target.mkdir(parents=True)
            for photo in _photos(source)[:3]:
                shutil.copy(photo, target / photo.name)
    return root


def test_one_class_only_is_refused(tmp_path, flat_small, small_catsdogs):
    flat = tmp_path / "flat"
    _copy(flat_small / "cats", flat / "cats")
    with pytest.raises(DatasetError, match=r"1 class folder \(cats\); at least 2"):
        folders.scan(flat)
    splits = _make_splits(
        tmp_path / "splits", small_catsdogs / "train" / "dogs", {"train": ["dogs"], "validation": ["dogs"]}
    )
    with pytest.raises(DatasetError, match="at least 2 are needed"):
        folders.scan(splits)


def test_class_missing_from_validation_is_refused(tmp_path, small_catsdogs):
    root = _make_splits(
        tmp_path / "set",
        small_catsdogs / "train" / "cats",
        {"train": ["birds", "cats", "dogs"], "validation": ["cats", "dogs"]},
    )
    with pytest.raises(DatasetError, match=r"\['birds'\] missing from the validation split"):
        folders.scan(root)


def test_empty_class_is_refused(tmp_path, flat_small, small_catsdogs):
    flat = _copy(flat_small, tmp_path / "flat")
    (flat / "hamsters").mkdir()
    with pytest.raises(DatasetError, match="hamsters") as caught:
        folders.scan(flat)
    assert "no usable image" in str(caught.value)

    splits = _copy(small_catsdogs, tmp_path / "splits")
    for photo in (splits / "validation" / "dogs").iterdir():
        photo.unlink()
    with pytest.raises(DatasetError, match=r"\['dogs'\] have no usable image in the validation split"):
        folders.scan(splits)


def test_class_of_only_bad_files_is_refused(tmp_path, flat_small):
    root = _copy(flat_small, tmp_path / "flat")
    (root / "ghosts").mkdir()
    (root / "ghosts" / "a.jpg").write_bytes(b"")
    (root / "ghosts" / "b.jpg").write_text("boo")
    with pytest.raises(DatasetError, match="ghosts"):
        folders.scan(root)


def test_not_a_folder_is_refused(tmp_path):
    file = tmp_path / "cats.zip"
    file.write_bytes(b"PK\x05\x06" + bytes(18))
    for path, reason in ((file, "not a folder"), (tmp_path / "missing", "does not exist")):
        with pytest.raises(DatasetError, match=reason) as caught:
            folders.scan(path)
        assert path.name in str(caught.value)


def test_train_without_validation_is_refused(tmp_path, small_catsdogs):
    root = tmp_path / "set"
    _copy(small_catsdogs / "train", root / "train")
    with pytest.raises(DatasetError, match="no validation folder"):
        folders.scan(root)


def test_two_folders_for_one_split_are_refused_naming_both(tmp_path, small_catsdogs):
    # With val/ and validation/ both there, val/ was read and validation/ left out without a word.
    root = tmp_path / "set"
    for split in ("train", "validation", "val"):
        _copy(small_catsdogs / ("train" if split == "train" else "validation"), root / split)
    with pytest.raises(DatasetError, match="both val/ and validation/ are validation folders; expected one"):
        folders.scan(root)


def test_a_split_folder_among_class_folders_is_refused_not_taken_as_a_class(tmp_path, small_catsdogs):
    # cats/, dogs/ and test/{cats,dogs}: "test" became a third class of cat and dog photos.
    root = tmp_path / "set"
    for name in ("cats", "dogs"):
        _copy(small_catsdogs / "train" / name, root / name)
    _copy(small_catsdogs / "validation", root / "test")
    with pytest.raises(DatasetError, match="test/ holds class folders beside the class folders, but there is no"):
        folders.scan(root)


def test_the_folder_above_data_sets_is_refused_not_taken_as_a_set_of_their_classes(
    tmp_path, small_catsdogs, flat_small
):
    # A folder holding two data sets scanned as 2 classes, each data set's train and validation photos mixed
    # into one class and split again, with no word said.
    above = tmp_path / "data"
    _copy(small_catsdogs, above / "pets")
    _copy(flat_small, above / "flat")
    with pytest.raises(
        DatasetError,
        match=r"the class folder pets/ holds train/ and validation/: it looks like a data "
        rf"set of its own, not a class\..*scan {re.escape(str(above / 'pets'))}\.",
    ):
        folders.scan(above)
    # The same inside a split layout: a class folder that is itself a data set.
    nested = tmp_path / "nested"
    _copy(small_catsdogs, nested)
    _copy(small_catsdogs, nested / "train" / "cats" / "pets")
    _copy(small_catsdogs / "train", nested / "train" / "cats" / "training")
    with pytest.raises(DatasetError, match=r"the class folder cats/ holds training/: it looks like a data set"):
        folders.scan(nested)
    # A lone test/ or val/ folder of photos inside a class is the class's photos, as any nested folder is.
    lone = tmp_path / "lone"
    for name in ("cats", "dogs"):
        _copy(small_catsdogs / "train" / name, lone / name)
    _copy(small_catsdogs / "validation" / "cats", lone / "cats" / "test")
    _copy(small_catsdogs / "validation" / "dogs", lone / "dogs" / "val")
    scan = folders.scan(lone)
    photos = sum(1 for path in small_catsdogs.rglob("*") if path.is_file())
    assert scan.classes == ("cats", "dogs") and sum(len(samples) for samples in scan.splits.values()) == photos


def test_a_folder_beside_the_split_folders_is_listed_as_not_read(tmp_path, small_catsdogs):
    root = tmp_path / "set"
    _copy(small_catsdogs, root)
    _copy(small_catsdogs / "train", root / "extra")
    dataset = folders.scan(root)
    assert [(Path(item.name).name, item.reason) for item in dataset.rejected] == [
        ("extra", "folder beside train/ and validation/: not a split, not read")
    ]
    assert dataset.counts() == folders.scan(small_catsdogs).counts()


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5])
def test_validation_fraction_out_of_range_is_refused(flat_small, fraction):
    with pytest.raises(ValueError, match=repr(fraction).replace(".", r"\.")):
        folders.scan(flat_small, validation_fraction=fraction)


def test_asking_for_a_missing_split_names_the_ones_there(small_catsdogs):
    with pytest.raises(ValueError, match="'test'"):
        folders.scan(small_catsdogs).paths("test")


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_follows_the_files(tmp_path, small_catsdogs):
    root = _copy(small_catsdogs, tmp_path / "set")
    first = fingerprint(folders.scan(root))
    assert len(first) == 16 and int(first, 16) >= 0
    assert fingerprint(folders.scan(root)) == first

    photo = _photos(root / "train" / "cats")[0]
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    touched = fingerprint(folders.scan(root))
    assert touched != first
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(folders.scan(root)) == first

    shutil.copy(photo, root / "train" / "cats" / "another.jpg")
    added = fingerprint(folders.scan(root))
    assert added not in (first, touched)


def test_fingerprint_follows_the_split(flat_small):
    assert fingerprint(folders.scan(flat_small, seed=1)) == fingerprint(folders.scan(flat_small, seed=1))
    assert fingerprint(folders.scan(flat_small, seed=1)) != fingerprint(folders.scan(flat_small, seed=2))


# A file name that is not valid UTF-8 reaches Python as a str with lone surrogates (os.fsdecode).
NOT_UTF8_NAME = os.fsdecode(b"bad\xff\xfename.jpg")


def _fingerprint_as_first_written(dataset: DatasetScan) -> str:
    """`fingerprint` as it was before it hashed paths with os.fsencode: it keys the feature caches."""
    digest = hashlib.sha256()
    digest.update(repr(dataset.classes).encode())
    for split in sorted(dataset.splits):
        for sample in dataset.splits[split]:
            stat = os.stat(sample.path)
            digest.update(f"{split}\0{sample.path}\0{sample.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def test_the_fingerprint_of_ordinary_file_names_is_unchanged_so_feature_caches_still_match(tmp_path, small_catsdogs):
    root = _copy(small_catsdogs, tmp_path / "set")
    shutil.copy(_photos(root / "train" / "cats")[0], root / "train" / "cats" / "chat-été-猫.jpg")
    scan = folders.scan(root)
    assert any(Path(sample.path).name == "chat-été-猫.jpg" for sample in scan.splits["train"])
    assert fingerprint(scan) == _fingerprint_as_first_written(scan)


def test_a_file_name_that_is_not_utf8_is_scanned_fingerprinted_and_decoded(tmp_path, small_catsdogs):
    """Such a file was listed as usable, then train, explore and lr-find failed with a UnicodeEncodeError
    naming no file: the fingerprint (and the tf.data pipeline) encoded its name as UTF-8."""
    root = _copy(small_catsdogs, tmp_path / os.fsdecode(b"set-\xe9"))  # The data set's own folder too.
    shutil.copy(_photos(root / "train" / "cats")[0], root / "train" / "cats" / NOT_UTF8_NAME)
    scan = folders.scan(root)
    odd = [path for path in scan.paths("train") if Path(path).name == NOT_UTF8_NAME]
    assert len(odd) == 1 and not scan.rejected
    first = fingerprint(scan)
    assert len(first) == 16 and fingerprint(folders.scan(root)) == first
    os.remove(odd[0])
    assert fingerprint(folders.scan(root)) != first  # The name counts, as any other does.
    shutil.copy(_photos(root / "train" / "dogs")[0], odd[0])
    # The other keys made of the data set's paths: the app's folder stamp, library entry and decisions file.
    assert len(browse.folder_stamp(root)) == 16
    assert len(library.entry_id(root)) == 12
    assert cleaning.decisions_path(scan, tmp_path / "data").suffix == ".json"
    batches = _batches(pipeline.make_dataset(odd, None, num_classes=2, image_size=16, batch_size=1))
    assert np.array_equal(batches[0].astype(np.uint8), pipeline.load_images(odd, 16))


def test_a_class_folder_whose_name_is_not_utf8_is_split_and_fingerprinted(tmp_path, flat_small):
    root = _copy(flat_small, tmp_path / "set")
    odd_class = os.fsdecode(b"gr\xe9ys")  # Latin-1 "gréys".
    (root / "greys").rename(root / odd_class)
    scan = folders.scan(root, seed=1)
    assert odd_class in scan.classes
    assert len(fingerprint(scan)) == 16


# --- feeding Keras ----------------------------------------------------------------------------


def test_load_images_matches_the_decoder(small_catsdogs):
    paths = folders.scan(small_catsdogs).paths("validation")
    batch = pipeline.load_images(paths, 48, workers=2)
    assert batch.shape == (len(paths), 48, 48, 3) and batch.dtype == np.uint8
    for index, path in enumerate(paths):
        assert np.array_equal(batch[index], images.load_resized(path, 48))


def test_encode_labels():
    assert np.array_equal(pipeline.encode_labels(np.array([0, 1, 1]), 2), np.array([0.0, 1.0, 1.0], "float32"))
    one_hot = pipeline.encode_labels(np.array([2, 0]), 3)
    assert one_hot.dtype == np.float32
    assert np.array_equal(one_hot, np.array([[0, 0, 1], [1, 0, 0]], "float32"))


def _batches(dataset) -> list:
    return [
        tuple(np.asarray(part) for part in batch) if isinstance(batch, tuple) else np.asarray(batch)
        for batch in dataset
    ]


def test_make_dataset_binary(small_catsdogs):
    scan = folders.scan(small_catsdogs)
    paths, labels = scan.paths("train"), scan.labels("train")
    batches = _batches(pipeline.make_dataset(paths, labels, num_classes=2, image_size=40, batch_size=5))
    assert [len(targets) for _, targets in batches] == [5, 5, 5, 5, 4]
    pixels = np.concatenate([batch for batch, _ in batches])
    targets = np.concatenate([targets for _, targets in batches])
    for batch, batch_targets in batches:
        assert batch.dtype == np.float32 and batch.shape[1:] == (40, 40, 3)
        assert batch_targets.dtype == np.float32 and batch_targets.ndim == 1
    assert pixels.min() >= 0 and pixels.max() <= 255 and pixels.max() > 1  # [0, 255], not rescaled
    assert np.array_equal(targets, labels.astype("float32"))
    assert np.array_equal(pixels, pipeline.load_images(paths, 40).astype("float32"))


def test_make_dataset_one_hot_for_three_classes(flat_small):
    scan = folders.scan(flat_small)
    paths, labels = scan.paths("train"), scan.labels("train")
    batches = _batches(pipeline.make_dataset(paths, labels, num_classes=3, image_size=32, batch_size=8))
    targets = np.concatenate([batch_targets for _, batch_targets in batches])
    assert targets.shape == (len(paths), 3) and targets.dtype == np.float32
    assert np.array_equal(targets.sum(axis=1), np.ones(len(paths)))
    assert np.array_equal(targets.argmax(axis=1), labels)


def test_make_dataset_shuffle_keeps_images_with_their_labels(flat_small):
    scan = folders.scan(flat_small)
    paths, labels = scan.paths("train"), scan.labels("train")
    label_of = {image.tobytes(): label for image, label in zip(pipeline.load_images(paths, 24), labels)}
    assert len(label_of) == len(paths)
    dataset = pipeline.make_dataset(paths, labels, num_classes=3, image_size=24, batch_size=6, shuffle=True, seed=5)
    order = []
    for batch, targets in _batches(dataset):
        for image, target in zip(batch, targets):
            assert label_of[image.astype(np.uint8).tobytes()] == target.argmax()
            order.append(image.astype(np.uint8).tobytes())
    assert sorted(order) == sorted(label_of)
    assert order != [image.tobytes() for image in pipeline.load_images(paths, 24)]


def test_make_dataset_images_only(small_catsdogs):
    paths = folders.scan(small_catsdogs).paths("validation")
    batches = _batches(pipeline.make_dataset(paths, None, num_classes=2, image_size=32, batch_size=4))
    assert [batch.shape for batch in batches] == [(4, 32, 32, 3)] * 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux lowers a single thread's priority")
@pytest.mark.parametrize(
    "pipeline",
    [
        lambda paths: _batches(pipeline.make_dataset(paths, None, num_classes=2, image_size=32, batch_size=8)),
        lambda paths: list(pipeline.decoded_batches(paths, 32, batch_size=8)),
    ],
    ids=["make_dataset", "decoded_batches"],
)
def test_decoding_runs_on_the_pipelines_own_lowered_threads_and_leaves_the_caller_alone(
    small_catsdogs, monkeypatch, pipeline
):
    paths = folders.scan(small_catsdogs).paths("train")  # The scan decodes too, on its own threads.
    decoders = []
    load_resized = images.load_resized

    def recording(path, image_size):
        thread = threading.get_native_id()
        decoders.append((thread, os.getpriority(os.PRIO_PROCESS, thread)))
        return load_resized(path, image_size)

    monkeypatch.setattr(images, "load_resized", recording)
    caller, before = threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    batches = pipeline(paths)

    assert sum(len(batch) for batch in batches) == len(paths) == len(decoders)
    assert all(priority == 19 for _, priority in decoders)  # Decoders yield the cores to the model ...
    assert caller not in {thread for thread, _ in decoders}
    assert os.getpriority(os.PRIO_PROCESS, caller) == before  # ... and the caller keeps its priority.


# --- decoded_batches: the extraction passes' decoder ------------------------------------------


def _one_by_one(paths, image_size: int) -> np.ndarray:
    return np.stack([images.load_resized(path, image_size) for path in paths])


def _shared_files() -> list[str]:
    return sorted(
        name
        for folder in shared_batches.SHARED_FOLDERS
        for name in os.listdir(folder)
        if name.startswith(f"{shared_batches.FILE_PREFIX}{os.getpid()}-")
    )


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_decoded_batches_are_the_decoders_pixels_in_order(small_catsdogs, processes):
    paths = folders.scan(small_catsdogs).paths("train")  # 24 photos: batches of 10, 10, 4.
    batches = list(pipeline.decoded_batches(paths, 40, batch_size=10, ahead=2, workers=3, processes=processes))
    assert [batch.shape for batch in batches] == [(10, 40, 40, 3), (10, 40, 40, 3), (4, 40, 40, 3)]
    assert all(batch.dtype == np.uint8 for batch in batches)
    assert np.array_equal(np.concatenate(batches), _one_by_one(paths, 40))
    assert np.array_equal(pipeline.load_images(paths, 40, processes=processes), _one_by_one(paths, 40))
    assert _shared_files() == []


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_decoded_batches_name_a_damaged_file_after_yielding_the_batches_before_it(tmp_path, small_catsdogs, processes):
    paths = folders.scan(small_catsdogs).paths("train")[:12]
    damaged = tmp_path / "damaged.jpg"
    photo = Path(paths[0]).read_bytes()
    damaged.write_bytes(photo[: len(photo) // 2])  # A photo cut short, as by an interrupted copy.
    paths = paths[:9] + [str(damaged)] + paths[9:]
    received = []
    with pytest.raises(images.InvalidImageError) as raised:
        for batch in pipeline.decoded_batches(paths, 32, batch_size=3, workers=2, processes=processes):
            received.append(batch)
    assert raised.value.path == str(damaged)
    assert "truncated" in raised.value.reason
    assert len(received) == 3 and np.array_equal(np.concatenate(received), _one_by_one(paths[:9], 32))
    # The decoders are left in step: the next pass gets its own pixels, not answers due to this one.
    assert np.array_equal(
        pipeline.load_images(paths[:9], 32, workers=2, processes=processes), _one_by_one(paths[:9], 32)
    )


# --- decoder processes: machines with many cores ------------------------------------------------


def test_decoder_processes_are_reused_yield_the_cores_and_leave_no_shared_memory(small_catsdogs):
    paths = folders.scan(small_catsdogs).paths("train")
    first = list(pipeline.decoded_batches(paths, 32, batch_size=8, workers=2, processes=True))
    idle = decoder_processes._idle_pools[2]
    pids = {process.pid for pool in idle for process in pool.processes}
    batches = pipeline.decoded_batches(paths, 32, batch_size=8, workers=2, processes=True)
    assert np.array_equal(next(batches), first[0])
    assert decoder_processes._idle_pools[2] == []  # Taken by the pass that runs: no other pass shares it.
    batches.close()  # Early, as after a stop request.
    reused = {process.pid for pool in decoder_processes._idle_pools[2] for process in pool.processes}
    assert reused <= pids and len(reused) == 2
    assert all(os.getpriority(os.PRIO_PROCESS, pid) == 19 for pid in reused)  # The model keeps the cores.
    assert os.getpriority(os.PRIO_PROCESS, 0) != 19
    before = decoder_processes.cpu_seconds()
    assert np.array_equal(
        np.concatenate(list(pipeline.decoded_batches(paths * 4, 32, batch_size=8, workers=2, processes=True))),
        np.concatenate(first * 4),
    )
    assert decoder_processes.cpu_seconds() > before  # Their CPU time, which process_time() misses.
    counted = decoder_processes.cpu_seconds()
    decoder_processes._shut_down()  # Sets that close keep counting what they used.
    assert decoder_processes.cpu_seconds() >= counted
    assert _shared_files() == []


def test_decoder_processes_killed_mid_pass_say_so_and_the_next_pass_starts_new_ones(small_catsdogs):
    paths = folders.scan(small_catsdogs).paths("train")
    list(pipeline.decoded_batches(paths[:4], 32, batch_size=4, workers=2, processes=True))
    victim = decoder_processes._idle_pools[2][-1].processes[0]
    batches = pipeline.decoded_batches(paths, 32, batch_size=2, ahead=1, workers=2, processes=True)
    next(batches)
    victim.kill()
    victim.wait()
    with pytest.raises(decoder_processes.DecoderProcessError, match=f"decoder process {victim.pid} ended"):
        list(batches)
    assert _shared_files() == []
    again = list(pipeline.decoded_batches(paths, 32, batch_size=8, workers=2, processes=True))
    assert np.array_equal(np.concatenate(again), _one_by_one(paths, 32))
    assert victim.pid not in {process.pid for pool in decoder_processes._idle_pools[2] for process in pool.processes}


def test_decoder_processes_leave_ctrl_c_to_their_caller(small_catsdogs):
    # Ctrl+C in a terminal reaches the whole process group: the CLI handles it; its decoders print nothing.
    paths = folders.scan(small_catsdogs).paths("train")
    list(pipeline.decoded_batches(paths[:4], 32, batch_size=4, workers=2, processes=True))
    pool = decoder_processes._idle_pools[2][-1]
    for process in pool.processes:
        os.kill(process.pid, signal.SIGINT)
    batches = list(pipeline.decoded_batches(paths, 32, batch_size=8, workers=2, processes=True))
    assert np.array_equal(np.concatenate(batches), _one_by_one(paths, 32))
    assert all(process.poll() is None for process in pool.processes)


def test_decoder_processes_left_idle_are_not_reused(small_catsdogs):
    paths = folders.scan(small_catsdogs).paths("train")[:4]
    list(pipeline.decoded_batches(paths, 32, batch_size=4, workers=2, processes=True))
    stale = decoder_processes._idle_pools[2][-1]
    stale.last_used -= decoder_processes.IDLE_SECONDS  # Its processes exit about now.
    list(pipeline.decoded_batches(paths, 32, batch_size=4, workers=2, processes=True))
    assert stale not in decoder_processes._idle_pools[2]
    assert all(process.poll() is not None for process in stale.processes)  # Closed, not left behind.


def test_a_slow_caller_keeps_its_decoder_processes_and_idle_ones_end_after_the_pass(small_catsdogs, monkeypatch):
    monkeypatch.setattr(decoder_processes, "IDLE_SECONDS", 1.0)  # The processes started below get 1 s.
    paths = folders.scan(small_catsdogs).paths("train")
    batches = pipeline.decoded_batches(paths, 32, batch_size=8, ahead=1, workers=3, processes=True)
    received = [next(batches)]
    time.sleep(2.5)  # A first batch's compilation, say: longer than the idle time, in the middle of a pass.
    received += list(batches)
    assert np.array_equal(np.concatenate(received), _one_by_one(paths, 32))
    pool = decoder_processes._idle_pools[3][-1]
    assert all(process.wait(timeout=10) == 0 for process in pool.processes)  # Idle after the pass: they end.
    again = list(pipeline.decoded_batches(paths, 32, batch_size=8, workers=3, processes=True))  # A new set.
    assert np.array_equal(np.concatenate(again), _one_by_one(paths, 32))
    assert pool not in decoder_processes._idle_pools[3]


def test_decoder_processes_send_back_other_errors_as_they_are(tmp_path, small_catsdogs):
    # What the decoder raises besides InvalidImageError (an unreadable file's PermissionError, a bad
    # size's ValueError) comes back as that exception, as the decoder threads raise it.
    photo = folders.scan(small_catsdogs).paths("train")[0]
    memory = tmp_path / "batches"
    memory.write_bytes(bytes(2 * 32 * 32 * 3))
    tasks = io.BytesIO()
    for image_size in (32, 0):
        pickle.dump((str(memory), (1, 2, 32, 32, 3), 0, 0, [photo], ["photo.jpg"], image_size), tasks)
    tasks.seek(0)
    answers = io.BytesIO()
    decoder_processes._decode_tasks(tasks, answers)
    answers.seek(0)
    assert pickle.load(answers) is None
    error = decoder_processes._error(pickle.load(answers))
    assert isinstance(error, ValueError) and "image_size must be a positive integer" in str(error)
    assert np.array_equal(
        np.fromfile(memory, np.uint8)[: 32 * 32 * 3].reshape(32, 32, 3), images.load_resized(photo, 32)
    )


def test_decoder_processes_run_the_callers_tlcore_on_paths_relative_to_the_caller(
    tmp_path, small_catsdogs, monkeypatch
):
    # `python -m` would import a tlcore of the current folder first, and the processes' own folder is
    # the one they started in: neither may change what they decode.
    (tmp_path / "tlcore").mkdir()
    (tmp_path / "tlcore" / "__init__.py").write_text("raise ImportError('not the caller tlcore')\n")
    shutil.copytree(small_catsdogs / "train", tmp_path / "train")
    monkeypatch.chdir(tmp_path)
    paths = [os.path.relpath(path, tmp_path) for path in folders.scan(tmp_path / "train").paths("train")]
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    batches = list(pipeline.decoded_batches(paths, 32, batch_size=8, workers=3, processes=True))
    assert np.array_equal(np.concatenate(batches), _one_by_one(paths, 32))
    with pytest.raises(images.InvalidImageError) as raised:
        list(pipeline.decoded_batches(["broken.jpg"], 32, batch_size=8, workers=3, processes=True))
    assert raised.value.path == "broken.jpg"  # Named as the caller gave it.


def test_decoder_processes_remove_the_batches_of_a_killed_caller(small_catsdogs):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    folder = shared_batches.SHARED_FOLDERS[0]
    orphan = Path(folder) / f"{shared_batches.FILE_PREFIX}{ended.pid}-abc"
    alive = Path(folder) / f"{shared_batches.FILE_PREFIX}{os.getppid()}-abc"  # pytest's parent runs.
    orphan.write_bytes(b"batches")
    alive.write_bytes(b"batches")
    try:
        list(
            pipeline.decoded_batches(
                folders.scan(small_catsdogs).paths("train")[:4], 32, batch_size=4, workers=2, processes=True
            )
        )
        assert not orphan.exists() and alive.exists()
    finally:
        orphan.unlink(missing_ok=True)
        alive.unlink(missing_ok=True)


def test_decoder_processes_use_the_next_folder_when_shared_memory_has_no_room(small_catsdogs, monkeypatch):
    # A container's /dev/shm can be 64 MB: a process writing past its room would die of SIGBUS, so the
    # room is reserved up front, and the temp folder takes the batches when it fails.
    paths = folders.scan(small_catsdogs).paths("train")[:8]
    calls = []
    reserve = os.posix_fallocate

    def full_first(descriptor, offset, length):
        calls.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return reserve(descriptor, offset, length)

    monkeypatch.setattr(shared_batches, "SHARED_FOLDERS", ("/dev/shm", tempfile.gettempdir()))
    monkeypatch.setattr(os, "posix_fallocate", full_first)
    batches = list(pipeline.decoded_batches(paths, 32, batch_size=4, workers=2, processes=True))
    assert np.array_equal(np.concatenate(batches), _one_by_one(paths, 32))
    assert [Path(call).parent for call in calls] == [Path("/dev/shm"), Path(tempfile.gettempdir())]
    monkeypatch.setattr(os, "posix_fallocate", lambda *arguments: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="no room for 0.0 MB of decoded batches .*/dev/shm: full"):
        next(pipeline.decoded_batches(paths, 32, batch_size=4, workers=2, processes=True))
    assert _shared_files() == []


def test_a_decoder_process_exits_when_left_idle(tmp_path):
    # Its input stays open, as the caller's would: only the idle timer can end it.
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tlcore.data import decoder_processes as d; "
            "d._decode_tasks(sys.stdin.buffer, sys.stdout.buffer, idle_seconds=0.5)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.stdin.close()
        process.stdout.close()


def test_decoder_processes_do_not_run_the_callers_script_again(tmp_path, small_catsdogs):
    # multiprocessing's children would re-run a script without a main guard (or fail on `python -`);
    # the decoder processes run tlcore.data.decoder_processes alone.
    script = tmp_path / "script.py"
    script.write_text(
        "import pathlib, sys\n"
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
        "from tlcore.data import folders, pipeline\n"
        f"pathlib.Path({str(tmp_path / 'runs.txt')!r}).open('a').write('ran\\n')\n"
        f"paths = folders.scan({str(small_catsdogs)!r}).paths('train')\n"
        "print(pipeline.load_images(paths, 32, workers=2, processes=True).shape)\n"
    )
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "(24, 32, 32, 3)"
    assert (tmp_path / "runs.txt").read_text() == "ran\n"


def test_machines_with_many_cores_decode_in_processes(small_catsdogs, monkeypatch):
    paths = folders.scan(small_catsdogs).paths("train")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert decoders.decoder_processes() == 0  # A small machine keeps its threads: they start at once.
    monkeypatch.setattr(os, "cpu_count", lambda: decoders.DECODER_PROCESSES_FROM_CORES)
    assert decoders.decoder_processes() == decoders.DECODER_PROCESSES_FROM_CORES
    monkeypatch.setattr(decoder_processes, "_idle_pools", {})
    batches = list(pipeline.decoded_batches(paths, 32, batch_size=16))
    pools = decoder_processes._idle_pools.pop(decoders.DECODER_PROCESSES_FROM_CORES)
    for pool in pools:
        pool.close()
    assert np.array_equal(np.concatenate(batches), _one_by_one(paths, 32))
    assert [len(pool.processes) for pool in pools] == [decoders.DECODER_PROCESSES_FROM_CORES]  # One per core.
    assert decoders.decoder_description() == f"{decoders.DECODER_PROCESSES_FROM_CORES} decoder processes"
    monkeypatch.setenv("TLCORE_DECODER_PROCESSES", "0")  # A person's choice wins over the core count.
    assert decoders.decoder_processes() == 0 and decoders.decoder_description() == "8 decoder threads"
    monkeypatch.setenv("TLCORE_DECODER_PROCESSES", "many")
    with pytest.raises(ValueError, match="TLCORE_DECODER_PROCESSES must be a whole number of 0 or more .* 'many'"):
        decoders.decoder_processes()


def test_decoded_batches_closed_early_stop_decoding(small_catsdogs, monkeypatch):
    paths = folders.scan(small_catsdogs).paths("train")  # 24 photos, 12 batches of 2.
    decoded = []
    load_resized = images.load_resized

    def recording(path, image_size):
        decoded.append(path)
        return load_resized(path, image_size)

    monkeypatch.setattr(images, "load_resized", recording)
    batches = pipeline.decoded_batches(paths, 32, batch_size=2, ahead=2)
    first = next(batches)
    batches.close()  # As extract_to_file does after a stop request.
    settled = len(decoded)
    assert first.shape == (2, 32, 32, 3)
    assert settled <= 2 * 3  # The batch used and the two ahead of it, never the rest.
    assert len(decoded) == settled  # Nothing runs on after the close.


@pytest.mark.parametrize("arguments", [{"batch_size": 0}, {"batch_size": 2, "ahead": 0}, {"batch_size": 1.5}])
def test_decoded_batches_refuse_bad_sizes(arguments):
    with pytest.raises(ValueError, match="must be a positive integer"):
        next(pipeline.decoded_batches(["unused.jpg"], 32, **arguments))


def test_decoder_threads_stay_few_on_a_machine_with_many_cores(small_catsdogs, monkeypatch):
    # Decoding holds the GIL for part of every photo: on a 16-core machine 16 threads decoded about
    # half as fast as 8, so a machine with many cores gets MAX_DECODER_THREADS, not one per core.
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    paths = folders.scan(small_catsdogs).paths("train")  # 24 photos: batches of 24 split into slices.
    threads = set()
    load_resized = images.load_resized

    def recording(path, image_size):
        threads.add(threading.get_ident())
        return load_resized(path, image_size)

    monkeypatch.setattr(images, "load_resized", recording)
    batches = list(pipeline.decoded_batches(paths, 32, batch_size=24, ahead=1, processes=False))
    decoding_threads = set(threads)  # Before load_images below adds threads of its own.
    assert decoders.decoder_threads() == decoders.MAX_DECODER_THREADS == 8
    assert np.array_equal(np.concatenate(batches), pipeline.load_images(paths, 32, workers=2, processes=False))
    assert 1 < len(decoding_threads) <= decoders.MAX_DECODER_THREADS
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert decoders.decoder_threads() == 2  # A small machine keeps one thread per core.


def test_a_class_named_with_another_case_in_one_split_is_pointed_out(tmp_path, small_catsdogs):
    root = tmp_path / "set"
    _copy(small_catsdogs, root)
    (root / "train" / "cats").rename(root / "train" / "Cats")
    with pytest.raises(DatasetError, match=r"'cats' is 'Cats' there: class names must match exactly, case included"):
        folders.scan(root)
