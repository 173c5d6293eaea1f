"""The framework internals wrapper: each function still reaches what Keras and TensorFlow keep private."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tlcore.training import trainer

REPOSITORY = Path(__file__).resolve().parents[1]


def test_keras_home_is_where_keras_caches_downloads(tmp_path):
    # Keras reads $KERAS_HOME once, when it loads: a fresh interpreter.
    code = "from tlcore import framework_private; print(framework_private.keras_home())"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, KERAS_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == str(tmp_path)


def test_determinism_turns_on_and_off_again():
    # The test may ask TensorFlow's internals what the trainer may not.
    from tensorflow.python.framework.config import is_op_determinism_enabled

    try:
        trainer.set_determinism(True)
        assert is_op_determinism_enabled()
        trainer.set_determinism(False)
        assert not is_op_determinism_enabled()
    finally:
        trainer.set_determinism(False)
