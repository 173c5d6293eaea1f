"""Every run writes TensorBoard logs: the scalars of each epoch, per stage, under <run>/tensorboard/<stage>/."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from tests.helpers.runs import finished_run, train_config
from tlcore.training import training_context


def _epoch_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every event file under a folder, read back as TensorBoard reads them."""
    values: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                values.setdefault(value.tag, []).append((event.step, number))
    return values


def test_a_run_writes_the_epoch_scalars_of_each_stage(tmp_path, catsdogs_subset):
    if not training_context.tensorboard_installed():
        pytest.skip("tensorboard (the optional extra) is not installed")
    data = catsdogs_subset("tensorboard", train=6, validation=3)
    run = finished_run(train_config(data, strategy="all", epochs=2, fine_tuning_epochs=2, augmented_views=2), tmp_path)
    metrics = run.metrics()
    for stage in ("feature_extraction", "frozen_augmented", "fine_tuning"):
        folder = run.path / "tensorboard" / stage
        train, validation = _epoch_scalars(folder / "train"), _epoch_scalars(folder / "validation")
        recorded = [record for record in metrics if record["stage"] == stage]
        assert [step for step, _ in train["epoch_loss"]] == [0, 1], train
        assert [step for step, _ in validation["epoch_accuracy"]] == [0, 1], validation
        # The same numbers as the run's own metrics.
        assert [value for _, value in train["epoch_loss"]] == pytest.approx([record["loss"] for record in recorded])
        assert [value for _, value in validation["epoch_loss"]] == pytest.approx(
            [record["val_loss"] for record in recorded]
        )
