"""The two framework internals tlcore needs, which neither Keras nor TensorFlow exports.

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
