"""Keras callbacks that connect training to a run folder (one records, one stops) and show it (two). Nothing else."""

from __future__ import annotations

import time

import keras


class RunRecorder(keras.callbacks.Callback):
    """Writes each epoch's logs to the run's metrics, and batch progress every few batches.

    An epoch cut short by a stop request is recorded with "partial": True and the batches it
    trained: its training metrics are of those batches only, so no curve may draw it as an epoch.
    The History that `fit` returns is marked too (`partial_epoch`), for the stage's epoch count.

    Args:
        run: the `tlcore.runs.store.Run` to write to.
        stage: the strategy being trained ("feature_extraction", ...).
        epoch_offset: epochs already trained by earlier stages of the same model, so the
            fine-tuning curves continue the epoch count.
        total_epochs: the epochs this stage will run (for the progress estimate).
        every_batches: how often batch progress is written.
    """

    def __init__(self, run, stage: str, epoch_offset: int = 0, total_epochs: int = 1, every_batches: int = 5):
        super().__init__()
        self.run = run
        self.stage = stage
        self.epoch_offset = epoch_offset
        self.total_epochs = total_epochs
        self.every_batches = every_batches
        self.epoch = 0
        self.batches = 0
        self.started = time.time()
        self.epoch_started = time.time()

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.batches = 0
        self.epoch_started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1
        if batch % self.every_batches:
            return
        steps = self.params.get("steps") if self.params else None
        self.run.set_progress(
            {
                "stage": self.stage,
                "epoch": self.epoch + 1,
                "epochs": self.total_epochs,
                "batch": batch + 1,
                "steps": steps,
                "loss": _number((logs or {}).get("loss")),
                "stage_elapsed": time.time() - self.started,
                "time": time.time(),
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        record = {"stage": self.stage, "epoch": self.epoch_offset + epoch + 1, "stage_epoch": epoch + 1}
        record.update({key: _number(value) for key, value in (logs or {}).items()})
        record["seconds"] = time.time() - self.epoch_started
        if self._partial():
            record.update({"partial": True, "batches": self.batches, "steps": self.params.get("steps")})
            history = getattr(self.model, "history", None)  # Keras's History, which `fit` returns.
            if history is not None:
                history.partial_epoch = True
        record["time"] = time.time()
        self.run.append_metrics(record)
        self.run.set_progress(
            {
                "stage": self.stage,
                "epoch": epoch + 1,
                "epochs": self.total_epochs,
                "batch": None,
                "steps": None,
                "stage_elapsed": time.time() - self.started,
                "time": time.time(),
            }
        )

    def _partial(self) -> bool:
        """Whether the epoch ending now was cut short by a stop request (not all its batches trained)."""
        steps = self.params.get("steps") if self.params else None
        if steps:
            return self.batches < steps
        # Without a known step count: a stop set during the batches (StopOnRequest checks the epoch's end
        # after this callback) ended it early, or at its last batch, which cannot be told apart.
        return bool(getattr(self.model, "stop_training", False))


class StopOnRequest(keras.callbacks.Callback):
    """Ends training after the current batch once the run has been asked to stop (or its folder deleted:
    then `store.RunFolderGone` is raised, and nothing more is written).

    A request that arrives after an epoch's last batch, while that epoch validates, ends training
    with that epoch: it is checked again at the epoch's end, so no batch of another epoch trains.
    Validation itself is never cut short, so every recorded epoch has whole validation metrics.
    """

    def __init__(self, run):
        super().__init__()
        self.run = run
        self.stopped = False

    def _stop_training_if_requested(self) -> None:
        # A run folder deleted while it trains ends training here, before a model or backup re-creates it.
        self.run.check_present()
        if self.run.stop_requested():
            self.model.stop_training = True
            self.stopped = True

    def on_train_batch_end(self, batch, logs=None):
        self._stop_training_if_requested()

    def on_epoch_end(self, epoch, logs=None):
        # Keras checks `stop_training` right after the epoch-end callbacks, so the recorder
        # (earlier in the list) still writes this epoch's metrics.
        self._stop_training_if_requested()

    def on_predict_batch_end(self, batch, logs=None):
        # Feature extraction is a `predict` pass: stop it too.
        self.run.check_present()
        if self.run.stop_requested():
            self.model.stop_predicting = True
            self.stopped = True


class PrintProgress(keras.callbacks.Callback):
    """One line per epoch on a stream (the CLI's progress display)."""

    def __init__(self, stage: str, stream, epoch_offset: int = 0):
        super().__init__()
        self.stage = stage
        self.stream = stream
        self.epoch_offset = epoch_offset

    def on_epoch_end(self, epoch, logs=None):
        print(epoch_line(self.stage, self.epoch_offset + epoch + 1, logs), file=self.stream, flush=True)


class BarProgress(keras.callbacks.Callback):
    """A bar of the batches of each epoch on a `tlcore.progress.RichDisplay`; when the epoch ends, its
    line (PrintProgress's) above the bars."""

    def __init__(self, display, stage: str, epochs: int, epoch_offset: int = 0):
        super().__init__()
        self.display = display
        self.stage = stage
        self.epochs = epochs
        self.epoch_offset = epoch_offset
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        steps = self.params.get("steps") if self.params else None
        number = self.epoch_offset + epoch + 1
        self.bar = self.display.task(f"[{self.stage}] epoch {number}/{self.epoch_offset + self.epochs}", steps)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.advance(1, loss=(logs or {}).get("loss"))

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.display.print(epoch_line(self.stage, self.epoch_offset + epoch + 1, logs))

    def on_train_end(self, logs=None):
        if self.bar is not None:  # Stopped within an epoch.
            self.bar.close()
            self.bar = None


def epoch_line(stage: str, epoch: int, logs: dict | None) -> str:
    """ "[stage] epoch N: accuracy=... loss=... val_accuracy=... val_loss=...": an epoch's line of progress."""
    parts = [f"{key}={_number(value):.4f}" for key, value in (logs or {}).items() if _number(value) is not None]
    return f"[{stage}] epoch {epoch}: " + " ".join(parts)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
