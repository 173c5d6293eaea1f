"""`MultiWorkerMirroredStrategy` as Keras 3's `fit` calls it: several processes train one model together.

Keras' TensorFlow trainer asks the strategy to reduce values it holds per replica in two ways that
`MultiWorkerMirroredStrategy.reduce` refuses once a second worker joins: a whole (inputs, targets)
batch at once, to learn the shapes it builds the model with, and the scalar metrics of each step
along axis 0, which a scalar does not have. Both failed the first step of every `fit`
(keras-team/keras#20329 shows the first). `KerasMultiWorkerStrategy` reduces each value of a
structure on its own, and a scalar across the replicas (what axis 0 means for a batch of one
value per replica); everything else is TensorFlow's own collective all-reduce.

Two things one process does alone, the workers must do together: draw their own random numbers
(`separate_random_streams`) and stop (`any_worker`, `StopTogether`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tlcore.training import resume

# How far apart the workers' random keys are. A Keras generator's state is [key, counter], and each draw
# advances the counter: generators of different keys never meet. Far from 1, since the augmentation layers
# take consecutive seeds (seed, seed + 1, ...): a worker's flips must not draw the chief's rotations.
WORKER_SEED_STRIDE = 1_000_003


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


def separate_random_streams(model: keras.Model, rank: int, already=()) -> list:
    """Gives this worker's copy of a model random draws of its own: dropout masks, augmentation.

    Every worker seeds Keras alike (`keras.utils.set_random_seed(config.seed)`), so its generators
    start in the same states as every other worker's and advance alike, one draw per step: the rows
    of a global batch that worker 1 trains would get the same dropout masks (and augmentation) as
    worker 0's, where one process alone draws a mask of its own for every row. This shifts the key of
    each generator's state by `rank` strides. The chief (rank 0) keeps its states, so it draws what
    one process alone draws; the weights, initialised before, stay the same on every worker.

    Args:
        model: the model about to be trained (built, its generators created).
        rank: this worker's `distribute.WorkerTask.rank`.
        already: generator states shifted before (by an earlier stage sharing layers), left as they are.

    Returns:
        The generator states it shifted.
    """
    shifted = []
    if rank == 0:
        return shifted
    for state in resume.generator_variables(model):
        if any(state is done for done in already):
            continue
        key_and_counter = np.array(state)
        key_and_counter[0] += rank * WORKER_SEED_STRIDE
        state.assign(key_and_counter)
        shifted.append(state)
    return shifted


def any_worker(wanted: bool, strategy: tf.distribute.Strategy) -> bool:
    """Whether any worker of the run wants something (to stop, to extract): one collective all-reduce.

    Every worker must call it at the same point of the run, and as often as the others: an
    all-reduce that one worker never makes leaves the others waiting.

    Args:
        wanted: whether this worker wants it.
        strategy: the run's strategy (a `KerasMultiWorkerStrategy`).
    """
    return float(strategy.reduce("SUM", tf.constant(1.0 if wanted else 0.0), axis=None)) > 0


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
        if any_worker(self.model.stop_training, self.model.distribute_strategy):
            self.model.stop_training = True
            if self.run is not None and not self.run.stop_requested():
                self.run.request_stop()

    def on_train_batch_end(self, batch, logs=None):
        self._stop_if_any_worker_stops()

    def on_epoch_end(self, epoch, logs=None):
        self._stop_if_any_worker_stops()
