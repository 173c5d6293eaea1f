"""The framework internals tlcore needs, which neither Keras nor TensorFlow exports.

Nothing else in tlcore may import `keras.src` or `tensorflow.python` (tests/test_architecture.py
checks it), so a framework upgrade that moves one of these breaks here, in one small file.
"""

from __future__ import annotations

from pathlib import Path


def keras_home() -> Path:
    """The folder Keras caches downloads in (`keras.utils.get_file`'s default `cache_dir`).

    Keras decides it once, when it loads: `$KERAS_HOME`, else `~/.keras`, else `/tmp/.keras`
    where the home folder is not writable. It has no public accessor, so this asks Keras'
    own private one rather than repeat that logic and drift from it.
    """
    # Heavy: imports Keras. Private: `keras.config` does not export keras_home.
    from keras.src.backend import config as keras_config

    return Path(keras_config.keras_home()).expanduser()


def disable_op_determinism() -> None:
    """Undoes `tf.config.experimental.enable_op_determinism()` for this process.

    TensorFlow exports only the enabling half; a process that trains twice (a test session, a
    benchmark) must be able to turn determinism off again for a run with XLA.
    """
    # Heavy: imports TensorFlow. Private: only enable_op_determinism is exported.
    from tensorflow.python.framework import config as framework_config

    framework_config.disable_op_determinism()


def configure_multi_worker_heartbeat(timeout_seconds: int) -> bool:
    """Sets how long the workers of a `MultiWorkerMirroredStrategy` wait for a silent peer before failing.

    The strategy starts TensorFlow's coordination service with the default heartbeat timeout unless
    one is configured already, and the timeout has no public setting: this configures the service
    as the strategy would (same leader, same jobs), with `timeout_seconds`. Call it before the
    strategy is created and before TensorFlow runs its first operation.

    Returns:
        Whether it was configured (False without a `TF_CONFIG` cluster, or when a service already is).
    """
    # Heavy: imports TensorFlow. Private: the coordination service's configuration is not exported.
    import tensorflow as tf
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    cluster_spec = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    jobs = [job for job in ("chief", "worker") if job in cluster_spec.jobs]
    if not jobs or context.context().coordination_service is not None:
        return False
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        heartbeat_timeout_in_ms=timeout_seconds * 1000,
        coordinated_jobs=[
            coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job)) for job in jobs
        ],
    )
    return True


def forget_restored_epoch(model) -> None:
    """Makes the model's next `fit` start at its own `initial_epoch` again, not at an epoch restored earlier.

    `keras.callbacks.BackupAndRestore` resumes a `fit` by setting the model's private `_initial_epoch`, which
    every later `fit` of that model prefers to its `initial_epoch` argument, and which Keras never clears. A
    model that one stage resumed and the next stage trains again (end-to-end fine-tuning continues the
    frozen stage's model) would start that stage at the restored epoch, and end it early or at once. Call it
    before each `fit`: a backup of the stage being trained still sets the epoch anew when that `fit` begins.

    Args:
        model: the Keras model about to be trained.
    """
    # Private: Keras has no public way to clear the epoch BackupAndRestore set (keras.src.trainers.trainer).
    model._initial_epoch = None
