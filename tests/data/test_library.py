"""The data set library: recorded scans, renaming, the last one used, and deletion that spares a user's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tlcore.data import folders, library
from tlcore.files import write_json


def _scan(small_catsdogs: Path, place: Path):
    shutil.copytree(small_catsdogs, place)
    return folders.scan(place)


def _cache(runs: Path, key: str, data: str) -> Path:
    entry = runs / library.FEATURE_CACHE_FOLDER / key
    entry.mkdir(parents=True)
    write_json(entry / "meta.json", {"data": data})
    (entry / "train.npy").write_bytes(b"features")
    return entry


def test_a_scan_is_recorded_once_per_folder_with_its_counts_and_split(small_catsdogs, tmp_path):
    data = tmp_path / "data"
    scan = _scan(small_catsdogs, tmp_path / "mine" / "pets")
    first = library.record(data, scan, "folder", now=100.0)
    assert (first.name, first.kind, first.classes) == ("pets", "folder", ("cats", "dogs"))
    assert first.images == {"train": 24, "validation": 12} and (first.validation_fraction, first.seed) == (0.2, 1337)
    library.rename(data, first.id, "  my   pets ")
    again = library.record(data, scan, "folder", now=200.0)
    assert [entry.id for entry in library.entries(data)] == [first.id]
    assert (again.name, again.added, again.used) == ("my pets", 100.0, 200.0), "a chosen name stays"


def test_entries_are_newest_first_and_last_used_skips_vanished_folders(small_catsdogs, tmp_path):
    data = tmp_path / "data"
    old = library.record(data, _scan(small_catsdogs, tmp_path / "a"), "folder", now=1.0)
    new = library.record(data, _scan(small_catsdogs, tmp_path / "b"), "demo", now=2.0)
    assert [entry.id for entry in library.entries(data)] == [new.id, old.id]
    assert library.last_used(data).id == new.id and library.find(data, old.id).path == old.path
    shutil.rmtree(tmp_path / "b")
    assert library.last_used(data).id == old.id
    assert library.find(data, None) is None and library.find(data, "nope") is None


def test_a_damaged_library_file_reads_as_empty(tmp_path):
    (tmp_path / library.LIBRARY_FILE).write_text("{not json")
    assert library.entries(tmp_path) == [] and library.last_used(tmp_path) is None
    write_json(tmp_path / library.LIBRARY_FILE, {"entries": [{"id": "x"}]})
    assert library.entries(tmp_path) == []


def test_deleting_an_upload_removes_its_extracted_folder_and_its_feature_caches(small_catsdogs, tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    extracted = data / "uploads" / "pets-abc123"
    entry = library.record(data, _scan(small_catsdogs, extracted / "pets"), "upload")  # A wrapper folder.
    mine = _cache(runs, "k1", entry.path)
    other = _cache(runs, "k2", "/somewhere/else")
    removed = library.delete(data, entry.id, runs)
    assert removed == [extracted.resolve(), mine]
    assert not extracted.exists() and not mine.exists() and other.exists()
    assert library.entries(data) == [] and data.is_dir()


def test_deleting_a_users_own_folder_only_forgets_it(small_catsdogs, tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    entry = library.record(data, _scan(small_catsdogs, tmp_path / "mine"), "folder")
    assert not library.is_owned(data, entry.path) and not library.is_owned(data, data)
    assert library.delete(data, entry.id, runs) == []
    assert (tmp_path / "mine" / "train" / "cats").is_dir() and library.entries(data) == []


def test_bad_names_ids_and_kinds_are_refused(small_catsdogs, tmp_path):
    scan = _scan(small_catsdogs, tmp_path / "pets")
    entry = library.record(tmp_path, scan, "folder")
    with pytest.raises(ValueError, match="cannot be empty"):
        library.rename(tmp_path, entry.id, "   ")
    with pytest.raises(ValueError, match="No data set 'nope'"):
        library.rename(tmp_path, "nope", "x")
    with pytest.raises(ValueError, match="No data set 'nope'"):
        library.delete(tmp_path, "nope", tmp_path / "runs")
    with pytest.raises(ValueError, match="kind must be one of"):
        library.record(tmp_path, scan, "stolen")


def test_the_feature_cache_folder_is_the_trainers():
    from tlcore.training import feature_cache  # Loads Keras: only this test needs it.

    assert feature_cache.cache_dir("runs") == Path("runs") / library.FEATURE_CACHE_FOLDER


def test_a_data_set_scanned_as_a_whole_folder_of_the_data_folder_is_only_forgotten(small_catsdogs, tmp_path):
    data = tmp_path / "data"
    entry = library.record(data, _scan(small_catsdogs, data / "uploads"), "folder")  # uploads/ itself.
    assert library.delete(data, entry.id, tmp_path / "runs") == []
    assert (data / "uploads" / "train" / "cats").is_dir()
