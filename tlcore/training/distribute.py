"""Several devices through TensorFlow's own engine, `tf.distribute`: no engine of ours.

`strategy_for(config)` returns the strategy a run trains under: the default single device,
`MirroredStrategy` over the local GPUs (or over logical CPUs, for testing on a laptop), or
`MultiWorkerMirroredStrategy` across machines described by the `TF_CONFIG` environment variable.
"""

from __future__ import annotations

from tlcore.config import TrainConfig


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
        return tf.distribute.MultiWorkerMirroredStrategy()
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
