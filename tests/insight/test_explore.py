"""The data explorer and the cleaning decisions on a small planted set of real cats/dogs photos.

The set (`benchmarks.explore.plant`): 16 + 16 training and 6 + 6 validation photos, 2 dogs moved into
train/cats/ and 2 cats into train/dogs/, 2 training photos re-encoded into validation/ (leaks), and one
training cat copied byte for byte beside itself (a duplicate, not a leak). Explored once at 160 px.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from benchmarks.explore import plant
from tlcore import cli
from tlcore.data import cleaning, folders
from tlcore.insight import explore

IMAGE_SIZE = 160  # The default: at 96 px the features of 16 photos a class leave a flipped cat unflagged.
FLIPS = 2
LEAKS = 2


@pytest.fixture(scope="module")
def planted_set(tmp_path_factory, catsdogs_dir: Path):
    work = tmp_path_factory.mktemp("explore")
    planted = plant(catsdogs_dir, work / "data", FLIPS, LEAKS, per_class={"train": 16, "validation": 6})
    # The tests below loop over what was planted: with nothing planted they would pass and check nothing.
    assert len(planted.leaks) == LEAKS and len(planted.flipped) == 2 * FLIPS
    taken = set(planted.flipped) | {source for source, _ in planted.leaks}
    original = next(path for path in sorted((work / "data" / "train" / "cats").glob("cat.*")) if path not in taken)
    duplicate = original.with_name(f"copy-{original.name}")
    shutil.copy2(original, duplicate)
    dataset = folders.scan(work / "data")
    settings = explore.ExploreSettings(image_size=IMAGE_SIZE)
    exploration = explore.explore(dataset, settings, runs_dir=work / "runs")
    return {
        "planted": planted,
        "duplicate": (str(original.resolve()), str(duplicate.resolve())),
        "dataset": dataset,
        "exploration": exploration,
        "runs": work / "runs",
    }


def _pairs(exploration) -> dict:
    return {frozenset((pair.a, pair.b)): pair for pair in exploration.duplicates}


def test_map_has_every_image_with_label_and_split(planted_set):
    dataset, exploration = planted_set["dataset"], planted_set["exploration"]
    expected = {
        (sample.path, dataset.classes[sample.label], split)
        for split, samples in dataset.splits.items()
        for sample in samples
    }
    assert {(point.path, point.label, point.split) for point in exploration.map} == expected
    spread = {round(point.x, 3) for point in exploration.map}
    assert len(spread) > len(exploration.map) // 2  # Real coordinates, not a constant.


def test_planted_leaks_are_found_and_flagged_as_leaks(planted_set):
    pairs = _pairs(planted_set["exploration"])
    for source, copy in planted_set["planted"].leaks:
        pair = pairs[frozenset((str(source.resolve()), str(copy.resolve())))]
        assert pair.leak
        assert pair.similarity >= explore.DEFAULT_THRESHOLD


def test_exact_duplicate_in_one_class_is_a_duplicate_but_not_a_leak(planted_set):
    pair = _pairs(planted_set["exploration"])[frozenset(planted_set["duplicate"])]
    assert pair.similarity == pytest.approx(1.0, abs=1e-4)
    assert not pair.leak


def test_only_planted_pairs_are_reported(planted_set):
    planted = {frozenset((str(a.resolve()), str(b.resolve()))) for a, b in planted_set["planted"].leaks}
    assert set(_pairs(planted_set["exploration"])) == planted | {frozenset(planted_set["duplicate"])}


def test_flipped_labels_rank_among_the_top_suspects(planted_set):
    flipped = {str(path.resolve()) for path in planted_set["planted"].flipped}
    suspects = planted_set["exploration"].suspects
    top = {suspect.path: suspect for suspect in suspects[: 2 * len(flipped)]}
    assert flipped <= set(top), [(suspect.path, suspect.score) for suspect in suspects]
    for path in flipped:
        # Moved into the other class: the suggestion is the class it came from.
        assert top[path].suggested != top[path].label
        assert Path(path).name.startswith(top[path].suggested[:-1])  # "dog.1.jpg" came from "dogs".
    scores = [suspect.score for suspect in suspects]
    assert scores == sorted(scores, reverse=True)


def test_decisions_round_trip_and_the_cleaned_view(planted_set, tmp_path, monkeypatch):
    dataset = planted_set["dataset"]
    dropped, relabelled = sorted(str(path.resolve()) for path in planted_set["planted"].flipped)[:2]
    kept = planted_set["duplicate"][0]
    new_label = "dogs" if Path(relabelled).name.startswith("dog") else "cats"
    decisions = [
        cleaning.Decision(dropped, "drop"),
        cleaning.Decision(relabelled, "relabel", new_label),
        cleaning.Decision(kept, "keep"),
    ]
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "app-data"))
    path = cleaning.save_decisions(dataset, decisions)
    assert path.parent == tmp_path / "app-data" / cleaning.DECISIONS_FOLDER
    stored = json.loads(path.read_text())
    assert stored["dataset"]["files"] == dataset.to_json()["files"]
    assert cleaning.load_decisions(dataset) == {decision.path: decision for decision in decisions}

    cleaned = cleaning.apply_decisions(dataset, cleaning.load_decisions(dataset).values())
    before = {sample.path: sample.label for samples in dataset.splits.values() for sample in samples}
    after = {sample.path: sample.label for samples in cleaned.splits.values() for sample in samples}
    assert set(before) - set(after) == {dropped}
    changed = {path for path in after if after[path] != before[path]}
    assert changed == {relabelled} and cleaned.classes[after[relabelled]] == new_label
    assert all(list(cleaned.labels(split)) == sorted(cleaned.labels(split)) for split in cleaned.splits)

    copy = cleaning.write_cleaned_copy(dataset, decisions, tmp_path / "cleaned")
    rescanned = folders.scan(tmp_path / "cleaned")
    assert rescanned.counts() == cleaned.counts() == copy.counts()
    moved = tmp_path / "cleaned" / "train" / new_label / Path(relabelled).name
    assert moved.is_file() and not list((tmp_path / "cleaned").rglob(Path(dropped).name))
    assert os.path.samefile(relabelled, moved) or moved.read_bytes() == Path(relabelled).read_bytes()
    assert Path(dropped).is_file() and Path(relabelled).is_file()  # The photos stay where they were.


def test_a_damaged_decisions_file_is_named_in_the_refusal(planted_set, tmp_path):
    # json.loads' own message ("Expecting value: line 2 column 1") named no file.
    dataset = planted_set["dataset"]
    path = cleaning.decisions_path(dataset, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: not a decisions file"):
        cleaning.load_decisions(dataset, tmp_path)


def test_decisions_that_do_not_fit_are_refused(planted_set):
    dataset = planted_set["dataset"]
    path = dataset.paths("train")[0]
    with pytest.raises(ValueError, match="relabel to 'birds'"):
        cleaning.apply_decisions(dataset, [cleaning.Decision(path, "relabel", "birds")])
    with pytest.raises(ValueError, match="not a file of the data set"):
        cleaning.apply_decisions(dataset, [cleaning.Decision("/nowhere/cat.jpg", "drop")])
    with pytest.raises(ValueError, match="action must be one of"):
        cleaning.Decision(path, "delete")


def test_cli_json_has_exactly_the_documented_keys(planted_set, capsys):
    status = cli.main(
        [
            "explore",
            "--data",
            str(planted_set["planted"].root),
            "--image-size",
            str(IMAGE_SIZE),
            "--runs-dir",
            str(planted_set["runs"]),
            "--json",
        ]
    )
    assert status == 0
    values = json.loads(capsys.readouterr().out)
    assert list(values) == ["map", "duplicates", "suspects"]
    assert all(set(item) == {"path", "label", "split", "x", "y"} for item in values["map"])
    assert all(set(item) == {"a", "b", "similarity", "leak"} for item in values["duplicates"])
    assert all(set(item) == {"path", "label", "suggested", "score"} for item in values["suspects"])
    assert len(values["map"]) == len(planted_set["exploration"].map)
    assert values["duplicates"] and values["suspects"]


def test_blockwise_duplicate_search_equals_the_full_matrix(monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype("float32")
    vectors[10] = vectors[3] + 0.01  # Near-copies across blocks.
    vectors[41] = vectors[7]
    vectors = explore.normalise(vectors)
    monkeypatch.setattr(explore, "BLOCK_ENTRIES", 7 * 50)  # Blocks of 7 rows.
    similarities = vectors @ vectors.T
    expected = {(i, j) for i in range(50) for j in range(i + 1, 50) if similarities[i, j] >= 0.9}
    found = explore.near_duplicates(vectors, 0.9)
    assert {(i, j) for i, j, _ in found} == expected and {(3, 10), (7, 41)} <= expected


def test_saved_decisions_that_no_longer_fit_are_set_aside_once_each_and_the_others_kept(planted_set, tmp_path):
    """A relabel to a class since renamed, and a file decided twice then deleted: set aside with why, not a
    refusal of the whole file (the explorer then saved over every decision)."""
    dataset = planted_set["dataset"]
    kept, renamed = dataset.paths("train")[:2]
    gone = str(Path(dataset.root) / "train" / "cats" / "deleted.jpg")
    path = cleaning.decisions_path(dataset, tmp_path)
    path.parent.mkdir(parents=True)
    decisions = [
        {"path": kept, "action": "drop", "label": None},
        {"path": renamed, "action": "relabel", "label": "kittens"},
        {"path": gone, "action": "drop", "label": None},
        {"path": gone, "action": "keep", "label": None},
    ]
    path.write_text(json.dumps({"version": 1, "decisions": decisions}))
    saved = cleaning.read_decisions(dataset, tmp_path)
    assert saved.decisions == {kept: cleaning.Decision(kept, "drop")}
    assert saved.set_aside == (
        (renamed, "relabel to 'kittens', no longer a class"),
        (gone, "no longer at its saved path"),
    )
    described = cleaning.describe_set_aside(saved.set_aside, dataset.root)
    assert described == (
        f"2 saved decisions no longer fit the data set ({Path(renamed).relative_to(dataset.root)}: relabel to "
        "'kittens', no longer a class; train/cats/deleted.jpg: no longer at its saved path): set aside."
    )
