"""`MultiWorkerMirroredStrategy` as Keras 3's `fit` calls it: several processes train one model together.

Keras' TensorFlow trainer asks the strategy to reduce values it holds per replica in two ways that
`MultiWorkerMirroredStrategy.reduce` refuses once a second worker joins: a whole (inputs, targets)
batch at once, to learn the shapes it builds the model with, and the scalar metrics of each step
along axis 0, which a scalar does not have. Both failed the first step of every `fit`
(keras-team/keras#20329 shows the first). `KerasMultiWorkerStrategy` reduces each value of a
structure on its own, and a scalar across the replicas (what axis 0 means for a batch of one
value per replica); everything else is TensorFlow's own collective all-reduce.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _rank(value) -> int | None:
    """The rank of a value held per replica (each replica holds the same rank), or of a plain value."""
    if isinstance(value, tf.distribute.DistributedValues):
        value = value.values[0]
    return tf.convert_to_tensor(value).shape.rank


class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` whose `reduce` takes what Keras' `fit` gives it."""

    def reduce(self, reduce_op, value, axis):
        """Reduces every value of a (nested) structure across all replicas of all workers.

        Args:
            reduce_op: "SUM" or "MEAN" (or a `tf.distribute.ReduceOp`).
            value: a value per replica, or a structure (tuple, list, dict) of them.
            axis: the axis to reduce within each replica's value as well (None: across replicas
                only); a scalar has none, so it is reduced across the replicas only.

        Returns:
            The reduced values, in the structure given.
        """
        parent = super()

        def reduce_one(item):
            if item is None:  # A batch without sample weights.
                return None
            return parent.reduce(reduce_op, item, None if _rank(item) == 0 else axis)

        return tf.nest.map_structure(reduce_one, value)


class StopTogether(keras.callbacks.Callback):
    """Ends every worker's `fit` after the same batch (or epoch) when any one of them is asked to stop.

    A stop request (the Stop button, `tlcore stop`, Ctrl+C) reaches one worker's run only; a worker
    that left `fit` alone would leave the others waiting in their next all-reduce, which then fails.
    After each batch and each epoch every worker adds up whether it wants to stop, through the
    same collective all-reduce as the gradients; when any does, all do, and each marks its own run
    as asked to stop, so the stages after `fit` end the same way on every worker. Put it after the
    callbacks that may set `stop_training`.

    Args:
        run: this worker's `tlcore.runs.store.Run` (the chief's run, or the scratch run of another), or None.
    """

    def __init__(self, run):
        super().__init__()
        self.run = run

    def _stop_if_any_worker_stops(self) -> None:
        wanted = tf.constant(1.0 if self.model.stop_training else 0.0)
        if float(self.model.distribute_strategy.reduce("SUM", wanted, axis=None)) > 0:
            self.model.stop_training = True
            if self.run is not None and not self.run.stop_requested():
                self.run.request_stop()

    def on_train_batch_end(self, batch, logs=None):
        self._stop_if_any_worker_stops()

    def on_epoch_end(self, epoch, logs=None):
        self._stop_if_any_worker_stops()
