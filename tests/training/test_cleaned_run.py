"""A run on the cleaned view of a data set: trained without the dropped photos and with the relabelled ones moved,
and it records which decisions it applied (its folder's cleaning.json), which the run view shows."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from tests.helpers.runs import trained_run
from tlcore.data import cleaning, folders
from tlcore.data.dataset import DatasetScan


def _show_run(run_path: str) -> None:
    from pathlib import Path

    from tlcore.runs import store
    from views import run_view

    run_view.show(store.Run(Path(run_path)))


def test_a_cleaned_run_trains_on_the_view_and_records_the_decisions_it_applied(catsdogs_subset, tmp_path, monkeypatch):
    photos = catsdogs_subset("cleaned_run_photos", train=6, validation=3)
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "data"))
    scan = folders.scan(photos)
    cats, dogs = ([sample.path for sample in scan.splits["train"] if sample.label == label] for label in (0, 1))
    decisions = [
        cleaning.Decision(cats[0], "drop"),
        cleaning.Decision(cats[1], "drop"),
        cleaning.Decision(dogs[0], "relabel", "cats"),
        cleaning.Decision(dogs[1], "keep"),
    ]
    saved = cleaning.save_decisions(scan, decisions)
    run = trained_run(tmp_path / "runs", photos, cleaned=True)

    record = json.loads((run.path / cleaning.RUN_FILE).read_text())
    assert (record["count"], record["dropped"], record["relabelled"]) == (4, 2, 1)
    assert record["decisions_file"] == str(saved) and record["dataset"] == scan.root
    assert record["digest"] == cleaning.applied_record(scan, {d.path: d for d in decisions}, saved)["digest"]
    assert sorted(item["path"] for item in record["decisions"]) == sorted(decision.path for decision in decisions)
    trained_on = DatasetScan.from_json(json.loads((run.path / "dataset.json").read_text()))
    train = trained_on.splits["train"]
    assert cats[0] not in {sample.path for sample in train} and len(train) == 12 - 2
    assert next(sample.label for sample in train if sample.path == dogs[0]) == 0, "the relabelled dog trains as a cat"

    at = AppTest.from_function(_show_run, args=(str(run.path),), default_timeout=60).run()
    assert not at.exception
    shown = [caption.value.replace("\\", "") for caption in at.caption]
    expected = "Cleaned view: 4 decisions applied (2 dropped, 1 relabelled, 1 kept as they were), digest "
    assert expected + record["digest"] + "." in shown


def test_decisions_on_photos_deleted_since_are_set_aside_and_the_cleaned_run_trains(
    catsdogs_subset, tmp_path, monkeypatch
):
    """Deleting a photo one marked to drop is the obvious next step: the saved decisions must not then refuse
    the whole cleaned view (they did: "not a file of the data set"), and the others still apply."""
    from pathlib import Path

    photos = catsdogs_subset("deleted_since_photos", train=6, validation=3)
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "data"))
    scan = folders.scan(photos)
    cats, dogs = ([sample.path for sample in scan.splits["train"] if sample.label == label] for label in (0, 1))
    cleaning.save_decisions(
        scan,
        [
            cleaning.Decision(cats[0], "drop"),
            cleaning.Decision(cats[1], "drop"),
            cleaning.Decision(dogs[0], "relabel", "cats"),
            cleaning.Decision(dogs[1], "keep"),
        ],
    )
    for deleted in (cats[1], dogs[1]):
        Path(deleted).unlink()

    run = trained_run(tmp_path / "runs", photos, cleaned=True)

    record = cleaning.applied_in_run(run.path)
    assert (record["count"], record["dropped"], record["relabelled"]) == (2, 1, 1)
    gone = "no longer at its saved path"
    assert record["set_aside"] == [{"path": path, "reason": gone} for path in sorted([cats[1], dogs[1]])]
    trained_on = DatasetScan.from_json(json.loads((run.path / "dataset.json").read_text()))
    labels = {sample.path: sample.label for sample in trained_on.splits["train"]}
    assert cats[0] not in labels and labels[dogs[0]] == 0 and len(labels) == 12 - 2 - 1
    described = cleaning.describe_applied(record)
    assert described.startswith("Cleaned view: 2 decisions applied (1 dropped, 1 relabelled, 0 kept as they were)")
    named = f"train/cats/{Path(cats[1]).name}: {gone}; train/dogs/{Path(dogs[1]).name}: {gone}"
    assert described.endswith(f" 2 saved decisions no longer fit the data set ({named}): set aside.")


def test_a_run_on_the_data_set_as_scanned_records_no_cleaning(catsdogs_subset, tmp_path, monkeypatch):
    photos = catsdogs_subset("uncleaned_run_photos", train=4, validation=2)
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "data"))
    scan = folders.scan(photos)
    cleaning.save_decisions(scan, [cleaning.Decision(scan.splits["train"][0].path, "drop")])
    run = trained_run(tmp_path / "runs", photos)
    assert not (run.path / cleaning.RUN_FILE).exists() and cleaning.applied_in_run(run.path) is None
    assert len(json.loads((run.path / "dataset.json").read_text())["files"]["train"]["cats"]) == 4
    asked = trained_run(tmp_path / "runs", catsdogs_subset("no_decisions_photos", train=4, validation=2), cleaned=True)
    assert cleaning.applied_in_run(asked.path)["count"] == 0
    assert cleaning.describe_applied(cleaning.applied_in_run(asked.path)).startswith("Cleaned view asked for: no ")


def test_the_train_page_option_asks_for_the_cleaned_view(small_catsdogs, tmp_path, monkeypatch):
    from tests.app.page_kit import click, open_page, scan
    from tlcore.runs import store, worker

    monkeypatch.setenv("TLCORE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TLCORE_DATA_ROOTS", str(small_catsdogs.parent))
    monkeypatch.setattr(worker, "start", lambda config, runs_dir: store.create(config, runs_dir))  # No process.
    at = open_page("pages/2_Train.py", scan(open_page("pages/1_Data.py"), small_catsdogs))
    toggle = at.toggle(key="train_cleaned")
    assert toggle.label == "Use the cleaning decisions" and toggle.value is False
    toggle.set_value(True).run()
    click(at, "Start training")
    config = json.loads((tmp_path / "runs" / at.session_state["run_id"] / "config.json").read_text())
    assert config["cleaned"] is True
