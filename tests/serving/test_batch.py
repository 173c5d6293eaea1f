"""Batch prediction: folders (recursively) and zips, bad files as error rows, debris ignored, CSV, the CLI."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
import zipfile
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.helpers.cli import options
from tlcore.data import zips
from tlcore.serving import batch, predict


@pytest.fixture(scope="module")
def photos(catsdogs_dir) -> list[Path]:
    """Two real validation photos per class: cats 0 and 1, then dogs 0 and 1."""
    return [
        sorted((catsdogs_dir / "validation" / name).iterdir())[index] for name in ("cats", "dogs") for index in (0, 1)
    ]


@pytest.fixture(scope="module")
def predictor(tiny_trained_run) -> predict.Predictor:
    return predict.load(tiny_trained_run)


@pytest.fixture
def messy_folder(tmp_path, photos) -> Path:
    """Photos in nested folders, a text file named .jpg, an empty image, a note, and OS debris."""
    root = tmp_path / "to_predict"
    (root / "garden" / "deep").mkdir(parents=True)
    (root / "garden" / "a.jpg").write_bytes(photos[0].read_bytes())
    (root / "garden" / "deep" / "b.jpg").write_bytes(photos[2].read_bytes())
    (root / "c.jpg").write_bytes(photos[1].read_bytes())
    (root / "fake.jpg").write_text("not a photo at all\n")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("my notes\n")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")
    (root / ".DS_Store").write_bytes(b"\x00")
    (root / "garden" / "._b.jpg").write_bytes(b"\x00")
    (root / "Thumbs.db").write_bytes(b"\x00")
    return root


def assert_same_ranking(top_k: list[dict], expected: list[dict]) -> None:
    """Same labels in the same order, same probabilities (up to batch-size float noise)."""
    assert [item["label"] for item in top_k] == [item["label"] for item in expected]
    assert [item["probability"] for item in top_k] == pytest.approx(
        [item["probability"] for item in expected], abs=1e-6
    )


def test_find_files_is_recursive_sorted_and_skips_debris(messy_folder):
    found = [path.relative_to(messy_folder).as_posix() for path in batch.find_files(messy_folder)]
    assert found == ["c.jpg", "empty.png", "fake.jpg", "garden/a.jpg", "garden/deep/b.jpg", "notes.txt"]


def test_folder_rows_predict_the_good_files_and_explain_the_bad(predictor, messy_folder):
    rows = batch.predict_folder(predictor, messy_folder, top=3)
    by_file = {row["file"]: row for row in rows}
    assert list(by_file) == ["c.jpg", "empty.png", "fake.jpg", "garden/a.jpg", "garden/deep/b.jpg", "notes.txt"]
    assert "empty" in by_file["empty.png"]["error"]
    assert "text" in by_file["fake.jpg"]["error"]
    assert "not an image file" in by_file["notes.txt"]["error"]
    for name in ("c.jpg", "garden/a.jpg", "garden/deep/b.jpg"):
        row = by_file[name]
        assert row["error"] is None and len(row["top_k"]) == 2  # Two classes: top 3 is both.
        assert row["top_label"] == row["top_k"][0]["label"] and row["probability"] == row["top_k"][0]["probability"]
        assert sum(item["probability"] for item in row["top_k"]) == pytest.approx(1.0)
    # The same numbers as predicting the file on its own.
    (alone,) = predict.predict_sources(predictor, [messy_folder / "garden" / "a.jpg"], top=3)
    assert_same_ranking(by_file["garden/a.jpg"]["top_k"], alone["top"])
    for row in rows:
        if row["error"]:
            assert row["top_label"] is None and row["probability"] is None and row["top_k"] == []


def _zip_of(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in batch.find_files(folder):
            archive.write(path, f"batch/{path.relative_to(folder).as_posix()}")
        archive.writestr("__MACOSX/batch/._c.jpg", b"\x00\x05")
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return target


def test_zip_rows_use_the_member_names_and_match_the_folder(predictor, messy_folder, tmp_path):
    archive = _zip_of(messy_folder, tmp_path / "photos.zip")
    rows = batch.predict_folder(predictor, archive)
    folder_rows = batch.predict_folder(predictor, messy_folder)
    assert [row["file"] for row in rows] == [f"batch/{row['file']}" for row in folder_rows]
    for row, folder_row in zip(rows, folder_rows):
        assert_same_ranking(row["top_k"], folder_row["top_k"])
        assert bool(row["error"]) == bool(folder_row["error"])
    uploaded = batch.predict_folder(predictor, archive.read_bytes())  # An upload's bytes.
    assert [row["file"] for row in uploaded] == [row["file"] for row in rows]
    assert not list(tmp_path.glob("**/img_*"))  # Extracted into a temporary folder, removed afterwards.


def test_unsafe_zips_and_bad_sources_are_refused(predictor, tmp_path, photos):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../escape.jpg", photos[0].read_bytes())
    with pytest.raises(zips.UnsafeArchiveError, match=r"'\.\.'"):
        batch.predict_folder(predictor, evil)
    with pytest.raises(ValueError) as caught:
        batch.predict_folder(predictor, photos[0])
    assert str(caught.value) == (
        f"{photos[0]} is neither a folder nor a .zip archive: expected a folder of photos or a .zip archive."
    )
    # The message reaches people as it is: it names the path typed, not an internal parameter.
    with pytest.raises(ValueError) as caught:
        batch.predict_folder(predictor, tmp_path / "nope")
    assert str(caught.value) == f"{tmp_path / 'nope'} does not exist: expected a folder of photos or a .zip archive."
    with pytest.raises(ValueError, match="top"):
        batch.predict_folder(predictor, tmp_path, top=0)


def test_csv_has_the_columns_and_formats_and_defuses_formulas():
    rows = [
        {
            "file": "a.jpg",
            "top_label": "dogs",
            "probability": 0.876543,
            "error": None,
            "top_k": [{"label": "dogs", "probability": 0.876543}, {"label": "cats", "probability": 0.123457}],
        },
        batch.error_row('=HYPERLINK("x").jpg', "the file is empty (0 bytes)"),
    ]
    parsed = list(csv.DictReader(io.StringIO(batch.to_csv(rows))))
    assert list(parsed[0]) == ["file", "top_label", "probability", "top_k", "error"]
    assert parsed[0] == {
        "file": "a.jpg",
        "top_label": "dogs",
        "probability": "0.8765",
        "top_k": "dogs:0.8765;cats:0.1235",
        "error": "",
    }
    assert parsed[1] == {
        "file": '\'=HYPERLINK("x").jpg',
        "top_label": "",
        "probability": "",
        "top_k": "",
        "error": "the file is empty (0 bytes)",
    }


def test_cli_predict_expands_folders_and_zips_and_writes_a_csv(tiny_trained_run, messy_folder, tmp_path, photos):
    run, runs_dir = tiny_trained_run, tiny_trained_run.path.parent
    archive = _zip_of(messy_folder, tmp_path / "photos.zip", {"batch/notes.md": b"# notes\n"})
    output = tmp_path / "out" / "predictions.csv"
    sources = [str(photos[3]), str(messy_folder), str(archive)]
    completed = cli.tlcore("predict", *options(run=run.id, runs_dir=runs_dir, json=True, csv=output), *sources)
    assert completed.returncode == 1, completed.stderr  # Some files failed; the others were predicted.
    results = json.loads(completed.stdout)
    names = [result["image"] for result in results]
    assert names[0] == str(photos[3]) and "top" in results[0]  # A plain image: as before.
    assert f"{messy_folder}/garden/deep/b.jpg" in names and f"{archive}/batch/garden/a.jpg" in names
    assert f"{archive}/batch/notes.md" in names and len(results) == 1 + 6 + 7
    parsed = list(csv.DictReader(output.read_text().splitlines()))
    assert [row["file"] for row in parsed] == names
    errors = {row["file"] for row in parsed if row["error"]}
    assert errors == {
        f"{prefix}/{name}"
        for prefix in (messy_folder, f"{archive}/batch")
        for name in ("empty.png", "fake.jpg", "notes.txt")
    } | {f"{archive}/batch/notes.md"}


def test_find_files_refuses_a_folder_above_the_cap_naming_it(tmp_path):
    from tlcore.data import browse

    for index in range(6):
        folder = tmp_path / f"album{index % 2}"
        folder.mkdir(exist_ok=True)
        (folder / f"photo{index}.jpg").write_bytes(b"x")
    assert len(batch.find_files(tmp_path, max_files=6)) == 6
    with pytest.raises(browse.FolderTooLargeError, match=f"{tmp_path}: holds more than 5 files"):
        batch.find_files(tmp_path, max_files=5)


def test_cli_predict_gives_a_refused_archive_its_own_row_and_predicts_the_rest(tiny_trained_run, tmp_path, photos):
    # The help promises "A file that cannot be read gets its reason; the others are still predicted": one
    # archive with a '../' entry cancelled the whole command.
    run, runs_dir = tiny_trained_run, tiny_trained_run.path.parent
    unsafe = tmp_path / "traversal.zip"
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("../evil.jpg", photos[0].read_bytes())
    sources = [str(photos[1]), str(unsafe), str(photos[2])]
    completed = cli.tlcore("predict", *options(run=run.id, runs_dir=runs_dir, json=True), *sources)
    assert completed.returncode == 1, completed.stderr
    results = json.loads(completed.stdout)
    assert [result["image"] for result in results] == sources
    assert "top" in results[0] and "top" in results[2]
    assert "'..'" in results[1]["error"] and "refused" in results[1]["error"]
    # An empty folder is its own error row too (it printed nothing and exited 0).
    empty = tmp_path / "empty"
    empty.mkdir()
    completed = cli.tlcore("predict", *options(run=run.id, runs_dir=runs_dir), str(empty), str(photos[0]))
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout.splitlines()[0] == f"{empty}: error: {batch.NO_FILES}"


def test_cli_predict_checks_the_csv_path_first_and_keeps_the_results_when_writing_fails(
    tiny_trained_run, tmp_path, photos
):
    # A CSV path that could not be written ended the command with a traceback after every image was predicted.
    run, runs_dir = tiny_trained_run, tiny_trained_run.path.parent
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("a file where a folder would be made")
    for target, reason in ((tmp_path, "a folder, expected the path of a file"), (in_the_way / "x.csv", "is a file")):
        completed = cli.tlcore("predict", *options(run=run.id, runs_dir=runs_dir, csv=target), str(photos[1]))
        assert completed.returncode == 2 and "Traceback" not in completed.stderr, completed.stderr
        assert completed.stderr.startswith(f"error: {target}: ") and reason in completed.stderr
        assert completed.stdout == "", "refused before predicting"
    unwritable = Path("/proc/predictions.csv")  # Its folder exists; writing there fails, even for root.
    completed = cli.tlcore("predict", *options(run=run.id, runs_dir=runs_dir, csv=unwritable), str(photos[1]))
    assert completed.returncode == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert f"error: {unwritable}: the CSV could not be written" in completed.stderr
    assert completed.stdout.startswith(f"{photos[1]}: "), "the predictions are still printed"


def test_folder_label_is_the_nearest_folder_named_after_a_class():
    labels = ["cats", "dogs"]
    assert batch.folder_label("cats/1.jpg", labels) == "cats"
    assert batch.folder_label("validation/dogs/deep/2.jpg", labels) == "dogs"
    assert batch.folder_label("dogs/cats/3.jpg", labels) == "cats"  # The nearest: a cat sorted inside dogs/.
    assert batch.folder_label("cats.jpg", labels) is None and batch.folder_label("garden/4.jpg", labels) is None
    # The folder predicted counts, farthest: `tlcore predict validation/cats` or that folder typed on the page.
    assert batch.folder_label("1.jpg", labels, folder="cats") == "cats"
    assert batch.folder_label("dogs/1.jpg", labels, folder="cats") == "dogs"
    # A zip's folder names as its data set made them: NFC (macOS zips are NFD), characters Windows refuses.
    assert batch.folder_label(unicodedata.normalize("NFD", "café") + "/1.jpg", ["café"]) == "café"
    assert batch.folder_label("a:b/1.jpg", ["a_b"]) == "a_b"


def test_a_folder_score_refuses_counts_that_are_not_a_score():
    for classes, received in (
        ({"cats": (7, 6)}, r"'cats': \(7, 6\)"),
        ({"cats": (0, 0)}, r"'cats': \(0, 0\)"),
        ({"cats": (1.5, 2)}, r"'cats': \(1.5, 2\)"),
    ):
        with pytest.raises(ValueError, match=r"whole numbers with 0 <= correct <= photos.*received " + received):
            batch.FolderScore(classes)
    with pytest.raises(ValueError, match="at least one class, received none"):
        batch.FolderScore({})


def test_photos_sorted_into_class_folders_are_scored_against_their_folder(
    predictor, tiny_trained_run, tmp_path, catsdogs_dir
):
    # A held-out folder sorted by class is an evaluation too: each photo's top label against its folder.
    root = tmp_path / "sorted"
    chosen = {name: sorted((catsdogs_dir / "validation" / name).iterdir())[10:16] for name in ("cats", "dogs")}
    for name, paths in chosen.items():
        (root / "held_out" / name).mkdir(parents=True)
        for path in paths:
            (root / "held_out" / name / path.name).symlink_to(path)
    (root / "held_out" / "cats" / "broken.jpg").write_text("not a photo")  # An error row: not counted.
    (root / "unsorted.jpg").symlink_to(chosen["dogs"][0])  # In no class folder: not counted.
    rows = batch.predict_folder(predictor, root)
    score = batch.score_by_folder(rows, predictor.labels)
    # The same photos predicted one class at a time, by file, give the same counts.
    expected = {}
    for name, paths in chosen.items():
        results = predict.predict_sources(predictor, paths, names=[path.name for path in paths], top=1)
        expected[name] = (sum(result["top"][0]["label"] == name for result in results), len(paths))
    assert score.classes == expected and score.photos == 12
    assert score.accuracy == sum(correct for correct, _ in expected.values()) / 12
    assert batch.score_by_folder([row for row in rows if row["file"] == "unsorted.jpg"], predictor.labels) is None
    # The command line says it under the rows, as the Predict page does; a photo given alone is not scored,
    # though its path holds a folder named dogs.
    run, runs_dir = tiny_trained_run, tiny_trained_run.path.parent
    completed = cli.tlcore("predict", *options(run=run.id, runs_dir=runs_dir), str(root), str(chosen["dogs"][0]))
    assert completed.returncode == 1, completed.stderr  # broken.jpg
    assert completed.stdout.splitlines()[-1] == score.describe()


def test_photos_sorted_into_folders_no_class_names_are_said_to_be_unscored():
    # A cats/dogs model run on scenes said only "60 photos predicted": the folders it could not score are named.
    rows = [
        {"file": "buildings/1.jpg", "error": None},
        {"file": "forest/deep/2.jpg", "error": None},
        {"file": "forest/3.jpg", "error": None},
        {"file": "caf\udce9/4.jpg", "error": None},  # A folder name that is not UTF-8: shown, not a crash.
        {"file": "broken/5.jpg", "error": "not an image"},
        {"file": "loose.jpg", "error": None},
    ]
    labels = ["cats", "dogs"]
    assert batch.unscored_folders(rows, labels) == ["buildings", "caf\ufffd", "deep", "forest"]
    assert batch.unscored_folders(rows, labels, folder="scenes") == [
        "buildings",
        "caf\ufffd",
        "deep",
        "forest",
        "scenes",
    ]
    assert batch.unscored_note(rows, labels) == (
        "Not scored: the photos are in folders (buildings, caf\ufffd, deep, forest) that name none of this model's "
        "classes (cats, dogs)."
    )
    many = [{"file": f"folder{index}/photo.jpg", "error": None} for index in range(7)]
    assert batch.unscored_note(many, labels).startswith(
        "Not scored: the photos are in folders (folder0, folder1, folder2, folder3, folder4 and 2 more) that"
    )
    # One folder of photos is an album, not a sorting; photos scored against a class folder need no note.
    assert batch.unscored_note(rows[:1], labels) is None
    assert batch.unscored_note([*rows, {"file": "cats/6.jpg", "error": None, "top_label": "cats"}], labels) is None
    assert batch.unscored_folders([], labels) == [] and batch.unscored_note([], labels) is None
