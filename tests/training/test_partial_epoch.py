"""A stop inside an epoch: the cut-short epoch is recorded as partial, never counted or drawn as a full one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.runs import train_config
from tlcore.insight import charts
from tlcore.runs import store, worker
from tlcore.training import callbacks, training_context


@pytest.fixture(scope="module")
def tiny_data(catsdogs_subset) -> Path:
    """8 train + 4 validation real photos per class of cats vs dogs: 4 batches of 4 per epoch."""
    return catsdogs_subset("tiny", train=8, validation=4)


def test_a_stop_in_the_first_batch_of_an_epoch_records_it_as_partial(tiny_data, tmp_path, monkeypatch):
    class StopInSecondEpoch(callbacks.RunRecorder):
        """The recorder, asking for a stop at the end of the first batch of the second epoch."""

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if self.epoch == 1 and batch == 0:
                self.run.request_stop()

    monkeypatch.setattr(training_context, "RunRecorder", StopInSecondEpoch)
    run = store.create(train_config(tiny_data, epochs=3), tmp_path)
    status = worker.execute(run, runs_dir=tmp_path)

    assert status["state"] == "stopped"
    first, second = run.metrics()
    assert not first.get("partial") and first["epoch"] == 1
    assert (second["partial"], second["batches"], second["steps"]) == (True, 1, 4)
    result = run.summary()["results"]["feature_extraction"]
    assert (result["epochs"], result["partial_epoch"]) == (1, True), "after 1 epoch, not 2"
    assert store.describe(run)["epochs"] == 1
    assert set(charts.history_frame(run.metrics())["epoch"]) == {1}, "the partial epoch is not drawn"
