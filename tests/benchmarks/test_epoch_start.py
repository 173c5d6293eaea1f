"""benchmarks.epoch_start: which measurements miss its target (no training here)."""

from __future__ import annotations

from benchmarks import epoch_start


def measured(epochs: list[float], waits: list[float]) -> epoch_start.EpochWaits:
    recorded = epoch_start.EpochWaits()
    recorded.epochs, recorded.waits = epochs, waits
    return recorded


def test_only_the_datasets_of_row_batches_are_held_to_starting_their_epochs_on_time():
    late = measured([5.0, 10.0, 5.0], [0.0, 5.0, 0.0])  # One epoch began an epoch's length late.
    on_time = measured([5.0, 5.1, 4.9], [0.01, 0.0, 0.4])
    assert epoch_start.misses(epoch_start.DATASET_WAY, late)
    assert not epoch_start.misses(epoch_start.DATASET_WAY, on_time)
    # Keras' own pipeline is what the table compares against, not a target.
    assert not epoch_start.misses(epoch_start.KERAS_WAY, late)
