"""Cleaning decisions: keep, drop or relabel each file of a data set, without ever touching the photos.

The decisions of a data set are a JSON file in the app's data folder (`$TLCORE_DATA_DIR`, else
`data/` of `tlcore.home`), under `cleaning/`, beside the data set's record (`DatasetScan.to_json`) they were made on.
`apply_decisions` gives the cleaned view of a scan, which `tlcore.training.trainer.train(config,
dataset=...)` trains on as it is; `write_cleaned_copy` writes it as a new folder (hard links where
the file system allows, else copies) that any run, or the app's worker, can scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tlcore import home, wording
from tlcore.data.dataset import DatasetScan, Sample
from tlcore.files import read_json, write_json

ACTIONS = ("keep", "drop", "relabel")
DECISIONS_FOLDER = "cleaning"
DECISIONS_VERSION = 1


@dataclass(frozen=True)
class Decision:
    """What to do with one file.

    Attributes:
        path: the image file, as the scan lists it.
        action: "keep", "drop" or "relabel".
        label: the class name it moves to, for "relabel" only.
    """

    path: str
    action: str
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path must be a file path, received {self.path!r}.")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {list(ACTIONS)}, received {self.action!r}.")
        if self.action == "relabel" and (not isinstance(self.label, str) or not self.label):
            raise ValueError(f"A relabel decision needs the new class name as label, received {self.label!r}.")
        if self.action != "relabel" and self.label is not None:
            raise ValueError(f"Only a relabel decision takes a label, received {self.label!r} with {self.action!r}.")

    def to_dict(self) -> dict:
        return {"path": self.path, "action": self.action, "label": self.label}


RELABEL_PREFIX = "relabel to "


def choices(classes: Iterable[str]) -> list[str]:
    """What a person can pick for one file: "keep", "drop", or "relabel to <class>" for each class."""
    return ["keep", "drop"] + [f"{RELABEL_PREFIX}{name}" for name in classes]


def decision_for(path: str, choice: str) -> Decision:
    """The decision a choice of `choices` stands for.

    Raises:
        ValueError: a choice that is none of them (or an empty path).
    """
    if choice.startswith(RELABEL_PREFIX):
        return Decision(path, "relabel", choice.removeprefix(RELABEL_PREFIX))
    return Decision(path, choice)


def choice_of(decision: Decision | None) -> str:
    """The choice that shows a saved decision ("keep" for none)."""
    if decision is None:
        return "keep"
    return f"{RELABEL_PREFIX}{decision.label}" if decision.action == "relabel" else decision.action


def default_data_dir() -> Path:
    """The app's data folder: `$TLCORE_DATA_DIR`, else `data/` of tlcore's home folder (see `tlcore.home`)."""
    return home.default_folder("data")


def decisions_path(dataset: DatasetScan, data_dir: str | os.PathLike | None = None) -> Path:
    """The decisions file of a data set: named after its folder, and a hash of its root so two
    folders of one name never share one."""
    root = Path(dataset.root)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name)[:40] or "dataset"
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:12]  # Bytes on disk: any folder name hashes.
    return Path(data_dir if data_dir is not None else default_data_dir()) / DECISIONS_FOLDER / f"{name}-{digest}.json"


def check_decisions(dataset: DatasetScan, decisions: Iterable[Decision]) -> dict[str, Decision]:
    """Path -> decision, checked against a data set.

    Raises:
        ValueError: a decision is not a Decision, names a file the data set does not list or a
            class it does not have, or two decisions name one file.
    """
    known = {sample.path for samples in dataset.splits.values() for sample in samples}
    checked: dict[str, Decision] = {}
    for decision in decisions:
        if not isinstance(decision, Decision):
            raise ValueError(f"Expected Decision objects, received {type(decision).__name__}.")
        if decision.path not in known:
            raise ValueError(f"{decision.path}: not a file of the data set at {dataset.root}.")
        if decision.action == "relabel" and decision.label not in dataset.classes:
            raise ValueError(
                f"{decision.path}: relabel to {decision.label!r}, expected one of {list(dataset.classes)}."
            )
        if decision.path in checked:
            raise ValueError(f"{decision.path}: two decisions for one file.")
        checked[decision.path] = decision
    return checked


def save_decisions(
    dataset: DatasetScan, decisions: Iterable[Decision], data_dir: str | os.PathLike | None = None
) -> Path:
    """Writes the decisions of a data set, with its record, to its decisions file (replaced whole).

    Returns:
        The file written.
    """
    checked = check_decisions(dataset, decisions)
    path = decisions_path(dataset, data_dir)
    write_json(
        path,
        {
            "version": DECISIONS_VERSION,
            "dataset": dataset.to_json(),
            "decisions": [decision.to_dict() for decision in checked.values()],
        },
    )
    return path


@dataclass(frozen=True)
class SavedDecisions:
    """A data set's saved decisions as they fit it now.

    Attributes:
        decisions: path -> decision, for the files the data set still lists.
        set_aside: (path, why) for each other file a saved decision names: a file no longer at its saved path
            (deleted, moved or renamed since), or a relabel to a class the data set no longer has. They
            can change nothing now, so they are set aside and named, not refused with the others.
    """

    decisions: dict[str, Decision]
    set_aside: tuple[tuple[str, str], ...] = ()


def read_decisions(dataset: DatasetScan, data_dir: str | os.PathLike | None = None) -> SavedDecisions:
    """The saved decisions of a data set, with those that no longer fit it set aside.

    Raises:
        ValueError: the file is not a decisions file, or names one listed file twice.
    """
    path = decisions_path(dataset, data_dir)
    if not path.is_file():
        return SavedDecisions({})
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a decisions file ({error}).") from None
    if not isinstance(values, dict) or not isinstance(values.get("decisions"), list):
        raise ValueError(f"{path}: expected a JSON object with a list of decisions, received {str(values)[:200]}.")
    listed = {sample.path for samples in dataset.splits.values() for sample in samples}
    fitting, set_aside = [], {}
    for item in values["decisions"]:
        if not isinstance(item, dict):
            raise ValueError(f"{path}: expected each decision as {{path, action, label}}, received {item!r:.200}.")
        decision = Decision(item.get("path"), item.get("action"), item.get("label"))
        if decision.path not in listed:
            set_aside.setdefault(decision.path, "no longer at its saved path")
        elif decision.action == "relabel" and decision.label not in dataset.classes:
            set_aside.setdefault(decision.path, f"relabel to {decision.label!r}, no longer a class")
        else:
            fitting.append(decision)
    try:
        checked = check_decisions(dataset, fitting)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return SavedDecisions(checked, tuple(set_aside.items()))


def load_decisions(dataset: DatasetScan, data_dir: str | os.PathLike | None = None) -> dict[str, Decision]:
    """The saved decisions of a data set (path -> decision) for the files it still lists; {} when none were saved.

    Raises:
        ValueError: as `read_decisions`.
    """
    return read_decisions(dataset, data_dir).decisions


def apply_decisions(dataset: DatasetScan, decisions: Iterable[Decision]) -> DatasetScan:
    """The cleaned view of a data set: dropped files left out, relabelled files in their new class.

    Each split stays grouped by class in class order, as `folders.scan` makes it; files keep their
    split. The photos are not touched.

    Raises:
        ValueError: the decisions do not fit the data set (see `check_decisions`), or leave a class
            without images in train or validation.
    """
    checked = check_decisions(dataset, decisions)
    splits = {}
    for split, samples in dataset.splits.items():
        kept = []
        for sample in samples:
            decision = checked.get(sample.path)
            if decision is None or decision.action == "keep":
                kept.append(sample)
            elif decision.action == "relabel":
                kept.append(Sample(sample.path, dataset.classes.index(decision.label)))
        kept.sort(key=lambda sample: sample.label)  # Stable: the scan's order within each class.
        splits[split] = tuple(kept)
    for split in ("train", "validation"):
        present = {sample.label for sample in splits[split]}
        empty = [name for index, name in enumerate(dataset.classes) if index not in present]
        if empty:
            raise ValueError(f"These decisions leave class(es) {empty} without images in the {split} split.")
    return DatasetScan(
        root=dataset.root,
        layout=dataset.layout,
        classes=dataset.classes,
        splits=splits,
        rejected=dataset.rejected,
        validation_fraction=dataset.validation_fraction,
        seed=dataset.seed,
    )


def _place(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # Another file system, or one without hard links.
        shutil.copy2(source, target)


def write_cleaned_copy(
    dataset: DatasetScan, decisions: Iterable[Decision], destination: str | os.PathLike
) -> DatasetScan:
    """Writes the cleaned view as a new folder: destination/<split>/<class>/<file>.

    Its splits are the view's, so a flat data set's seeded split is kept as it was. Files are hard
    links to the originals where the file system allows, else copies; two files of one name in one
    class get a numbered name.

    Args:
        dataset: the data set.
        decisions: its decisions.
        destination: a new folder, or an empty one.

    Returns:
        The scan of the copy (the same samples in their new places; no image decoded again).

    Raises:
        ValueError: the destination holds files, lies inside the data set, or the decisions do not fit.
    """
    cleaned = apply_decisions(dataset, decisions)
    target_root = Path(destination).expanduser().resolve()
    if target_root.is_relative_to(Path(dataset.root).resolve()):
        raise ValueError(f"The cleaned copy must be outside the data set {dataset.root}, received {target_root}.")
    if target_root.exists() and (not target_root.is_dir() or any(target_root.iterdir())):
        raise ValueError(f"The cleaned copy needs a new or empty folder, received {target_root}.")
    splits = {}
    for split, samples in cleaned.splits.items():
        for name in cleaned.classes:
            (target_root / split / name).mkdir(parents=True, exist_ok=True)
        placed, used = [], set()
        for sample in samples:
            folder = target_root / split / cleaned.classes[sample.label]
            source = Path(sample.path)
            target, number = folder / source.name, 1
            while target in used:
                number += 1
                target = folder / f"{source.stem}-{number}{source.suffix}"
            used.add(target)
            _place(source, target)
            placed.append(Sample(str(target), sample.label))
        splits[split] = tuple(placed)
    return DatasetScan(
        root=str(target_root),
        layout="splits",
        classes=cleaned.classes,
        splits=splits,
        validation_fraction=cleaned.validation_fraction,
        seed=cleaned.seed,
    )


# A run trained on a cleaned view keeps, in this file of its folder, which decisions it applied.
RUN_FILE = "cleaning.json"


def applied_record(
    dataset: DatasetScan,
    decisions: dict[str, Decision],
    source: Path | None,
    set_aside: Iterable[tuple[str, str]] = (),
) -> dict:
    """What a run records of the decisions it applied: counts, a digest that names this exact set of
    decisions (two runs with one digest cleaned alike), the file they came from, the decisions, and the
    saved decisions that no longer fit the data set (`SavedDecisions.set_aside`), each with why."""
    listed = [decision.to_dict() for decision in sorted(decisions.values(), key=lambda decision: decision.path)]
    actions = [decision["action"] for decision in listed]
    return {
        "dataset": dataset.root,
        "decisions_file": None if source is None else str(source),
        "count": len(listed),
        "dropped": actions.count("drop"),
        "relabelled": actions.count("relabel"),
        "digest": hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()[:16],
        "decisions": listed,
        "set_aside": [{"path": path, "reason": reason} for path, reason in sorted(set_aside)],
    }


def cleaned_for_run(dataset: DatasetScan, data_dir: str | os.PathLike | None = None) -> tuple[DatasetScan, dict]:
    """The cleaned view of a data set with its saved decisions, and the record (`applied_record`) a run keeps.

    With no saved decisions the view is the data set as scanned, and the record says 0 decisions. Saved
    decisions that no longer fit the data set are set aside, and the record names them.

    Raises:
        ValueError: as `read_decisions` and `apply_decisions`.
    """
    saved = read_decisions(dataset, data_dir)
    source = decisions_path(dataset, data_dir) if saved.decisions or saved.set_aside else None
    applied = applied_record(dataset, saved.decisions, source, saved.set_aside)
    return apply_decisions(dataset, saved.decisions.values()), applied


def describe_set_aside(set_aside: Iterable[tuple[str, str]], root: str | os.PathLike | None) -> str:
    """'2 saved decisions no longer fit the data set (train/cats/1.jpg: no longer at its saved path; ...): set
    aside.', with paths relative to the data set's `root`; '' for none."""
    items = list(set_aside)
    if not items:
        return ""

    def shown(path) -> str:
        if not root or not isinstance(path, str):
            return str(path)
        relative = os.path.relpath(path, root)
        return path if relative.startswith("..") else relative

    named = "; ".join(f"{shown(path)}: {reason}" for path, reason in items[:3])
    more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
    fit = "no longer fits" if len(items) == 1 else "no longer fit"
    return f"{wording.count(len(items), 'saved decision')} {fit} the data set ({named}{more}): set aside."


def describe_applied(record: dict) -> str:
    """'Cleaned view: 3 decisions applied (2 dropped, 1 relabelled, 0 kept as they were), digest 1a2b....'."""
    entries = record.get("set_aside") or []
    pairs = [(entry.get("path"), entry.get("reason")) for entry in entries if isinstance(entry, dict)]
    set_aside = describe_set_aside(pairs, record.get("dataset"))
    if not record.get("count"):
        lead = "no saved decision fits the data set now" if set_aside else "no cleaning decisions were saved"
        described = f"Cleaned view asked for: {lead}, so the data set trained as scanned."
    else:
        kept = record["count"] - record["dropped"] - record["relabelled"]
        described = (
            f"Cleaned view: {wording.count(record['count'], 'decision')} applied ({record['dropped']} dropped, "
            f"{record['relabelled']} relabelled, {kept} kept as they were), digest {record['digest']}."
        )
    return f"{described} {set_aside}" if set_aside else described


def applied_in_run(run_folder: str | os.PathLike) -> dict | None:
    """The cleaning record of a run folder, or None for a run on the data set as scanned (or an unreadable record)."""
    record = read_json(Path(run_folder) / RUN_FILE, default=None)
    return record if isinstance(record, dict) and isinstance(record.get("count"), int) else None
