"""The data set a run trains on, scanned as the trainer scans it: also before a run is made or resumed.

Light (no TensorFlow): `tlcore train` and the resume path call `scan_for_run` first, so that a data set
that cannot be used is refused with one message before a run folder is made, or before a stopped run is
queued again. Found only inside the worker, the same error marked a new run "failed" and a resumable run
"failed" for good.
"""

from __future__ import annotations

from tlcore.config import TrainConfig
from tlcore.data import cleaning, folders
from tlcore.data.dataset import DatasetScan


def scan_for_run(config: TrainConfig, trained_on: list[str] | None = None) -> tuple[DatasetScan, dict | None]:
    """Scans the config's data set with its split, and applies its cleaning decisions when it asks for them.

    Args:
        config: the run's settings (data_dir, validation_fraction, split_seed, cleaned).
        trained_on: the classes a resumed run was trained on (its labels.json), or None for a new run.

    Returns:
        (the data set the run trains on, the cleaning record to keep in the run, or None without --cleaned).

    Raises:
        tlcore.data.dataset.DatasetError: the folder cannot be used as a data set.
        ValueError: its cleaning decisions cannot be applied, or its classes are not those `trained_on`.
    """
    dataset = folders.scan(config.data_dir, config.validation_fraction, config.split_seed)
    applied = None
    if config.cleaned:
        dataset, applied = cleaning.cleaned_for_run(dataset)
    check_classes(dataset, trained_on)
    return dataset, applied


def check_classes(dataset: DatasetScan, trained_on: list[str] | None) -> None:
    """Raises ValueError when a resumed run's data set no longer has the classes the run was trained on."""
    if trained_on and trained_on != list(dataset.classes):
        raise ValueError(
            f"The data set {dataset.root} now has the classes {list(dataset.classes)}, but the run was trained "
            f"on {trained_on}: it cannot be resumed. Start a new run."
        )
