"""Several devices through TensorFlow's own engine, `tf.distribute`: no engine of ours.

`strategy_for(config)` returns the strategy a run trains under: the default single device,
`MirroredStrategy` over the local GPUs (or over logical CPUs, for testing on a laptop), or
`MultiWorkerMirroredStrategy` across machines described by the `TF_CONFIG` environment variable.

With several workers only the chief writes the run folder, the model and the feature cache; every
other worker trains in a scratch folder of its own under the runs folder and removes it at the end
(`worker_task`, `scratch_directory`): the convention of Keras' multi-worker guide for saving, where
every worker saves (saving may take part in collective operations) but only the chief's copy is kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tlcore import framework_private
from tlcore.config import TrainConfig

# The other workers' scratch folder inside the runs folder, as Keras names it ("workertemp_<index>"),
# hidden so that the runs table never lists it as a run.
SCRATCH_PREFIX = ".workertemp_"
# How long workers wait for a silent peer before the run fails. TensorFlow's default is short enough that a
# worker starved of CPU for a while on a busy machine failed a whole two-worker run; one that really died is
# still noticed within this (and at once when its connection closes).
HEARTBEAT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class WorkerTask:
    """This process's place in a multi-worker cluster, as `TF_CONFIG` describes it.

    Attributes:
        type: the task type ("worker" or "chief").
        index: the task's index within its type.
        workers: how many tasks of type "worker" and "chief" the cluster has.
        is_chief: whether this task writes the run (a "chief" task, else worker 0 when there is no chief).
        rank: the task's place among all of them, as TensorFlow counts: 0 for the chief, then the workers
            in order (so worker 0 is 1 when the cluster has a chief).
    """

    type: str
    index: int
    workers: int
    is_chief: bool
    rank: int

    def __post_init__(self) -> None:
        if self.type not in ("worker", "chief"):
            raise ValueError(f"TF_CONFIG task type {self.type!r} cannot train; expected 'worker' or 'chief'.")
        if self.index < 0 or self.workers < 1:
            raise ValueError(
                f"Expected a task index >= 0 in a cluster of >= 1 workers, received index {self.index} "
                f"of {self.workers}."
            )


def worker_task(environment=None) -> WorkerTask | None:
    """The task `$TF_CONFIG` gives this process, or None when it is unset (one worker alone).

    Raises:
        ValueError: TF_CONFIG is not JSON or lacks the cluster and task a worker needs.
    """
    text = (os.environ if environment is None else environment).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        described = json.loads(text)
        cluster, task = described["cluster"], described["task"]
        kind, index = str(task["type"]), int(task["index"])
        tasks = {name: list(addresses) for name, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"TF_CONFIG must be JSON with a cluster and a task, as "
            f'{{"cluster": {{"worker": ["host1:port", "host2:port"]}}, "task": {{"type": "worker", "index": 0}}}}; '
            f"received {text[:200]!r} ({type(error).__name__}: {error})."
        ) from None
    if not 0 <= index < len(tasks.get(kind, [])):
        raise ValueError(
            f"TF_CONFIG gives this process task {kind!r} {index}, but its cluster lists "
            f"{len(tasks.get(kind, []))} {kind!r} addresses: {tasks}."
        )
    workers = len(tasks.get("worker", [])) + len(tasks.get("chief", []))
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not tasks.get("chief"))
    rank = 0 if kind == "chief" else index + len(tasks.get("chief", []))
    return WorkerTask(type=kind, index=index, workers=workers, is_chief=is_chief, rank=rank)


def shared_task(config: TrainConfig) -> WorkerTask | None:
    """This process's task when several workers train the run together, or None when it trains alone.

    Raises:
        ValueError: `$TF_CONFIG` is set for a multi-worker run but cannot be read.
    """
    task = worker_task() if config.distribution == "multi_worker" else None
    return task if task is not None and task.workers > 1 else None


def scratch_directory(runs_dir: str | os.PathLike, task: WorkerTask) -> Path:
    """Where a worker other than the chief keeps its run, model and feature cache until it ends."""
    return Path(runs_dir) / f"{SCRATCH_PREFIX}{task.type}_{task.index}"


def configure_cpu_replicas(count: int) -> None:
    """Splits the CPU into `count` logical devices; must run before TensorFlow touches a device.

    Raises:
        RuntimeError: TensorFlow was already initialised in this process (start a new one, as
            the worker and the CLI do).
    """
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise RuntimeError(
            f"Cannot split the CPU into {count} logical devices: TensorFlow is already initialised in this "
            f"process ({error}). Train in a new process (python -m tlcore train ...)."
        ) from None


def strategy_for(config: TrainConfig):
    """The `tf.distribute` strategy for a config (call `configure_cpu_replicas` first if needed)."""
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    if config.cpu_replicas:
        configure_cpu_replicas(config.cpu_replicas)
    if config.distribution == "default":
        return tf.distribute.get_strategy()
    if config.distribution == "multi_worker":
        # Heavy: imports TensorFlow (as above), only for multi-worker runs.
        from tlcore.training.multi_worker import KerasMultiWorkerStrategy

        framework_private.configure_multi_worker_heartbeat(HEARTBEAT_TIMEOUT_SECONDS)
        return KerasMultiWorkerStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    # No GPU: mirror over the logical CPUs (one replica unless cpu_replicas split the CPU).
    # The CPU-only all-reduce avoids NCCL, which needs GPUs.
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def scaled(config: TrainConfig, replicas: int) -> tuple[int, float]:
    """The global batch size and the learning-rate factor for a replica count.

    Returns:
        (global batch size, factor to multiply every learning rate by).
    """
    if config.replica_scaling == "linear":
        return config.batch_size * replicas, float(replicas)
    return config.batch_size, 1.0


def task_runs_dir(config: TrainConfig, runs_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """The runs folder this process writes in, and the scratch folder to remove at its end (None: keep it).

    The chief of a multi-worker run (and any run that is not one) writes in `runs_dir`; another
    worker writes in its `scratch_directory`, so that on a runs folder shared by every machine only
    the chief's run, model and features appear.

    Raises:
        ValueError: `$TF_CONFIG` is set for a multi-worker run but cannot be read.
    """
    task = worker_task() if config.distribution == "multi_worker" else None
    if task is None or task.is_chief:
        return Path(runs_dir), None
    scratch = scratch_directory(runs_dir, task)
    return scratch, scratch
