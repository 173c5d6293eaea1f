"""TensorFlow's start-up lines stay off the command line's standard error unless --verbose is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What TensorFlow 2.21 writes as it starts (absl's notice, the oneDNN and CPU-feature INFO lines).
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard")


def _tlcore(*arguments: str) -> subprocess.CompletedProcess:
    # As from a shell: without the TF_CPP_MIN_LOG_LEVEL a command run in this test process earlier sets in its
    # environment (console.import_tensorflow_quietly), which would hide what --verbose is to show.
    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "tlcore", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


def _tiny_train(data: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    return _tlcore(
        "train", "--data", str(data), "--strategy", "feature_extraction", "--backbone", "vgg16", "--weights", "none",
        "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--runs-dir", str(runs), *extra,
    )  # fmt: skip


def test_scan_and_train_keep_tensorflow_start_up_lines_off_standard_error(tmp_path, catsdogs_subset):
    data = catsdogs_subset("quiet", train=4, validation=2)
    scan = _tlcore("scan", str(data))
    assert scan.returncode == 0, scan.stderr
    train = _tiny_train(data, tmp_path / "runs")
    assert train.returncode == 0, train.stderr
    for result in (scan, train):
        assert not [word for word in NOISE if word in result.stderr], result.stderr
    # The training's own lines are all still there.
    assert "[feature_extraction] epoch 1:" in train.stderr


def test_explore_and_suggest_keep_tensorflow_start_up_lines_off_standard_error(tmp_path, catsdogs_subset):
    # Both import TensorFlow through a pretrained base; they used to leave its start-up lines in.
    data = catsdogs_subset("quiet_explore", train=6, validation=2)
    common = ("--data", str(data), "--image-size", "64")
    explore = _tlcore("explore", *common, "--runs-dir", str(tmp_path / "runs"))
    suggest = _tlcore("suggest", *common, "--per-class", "6")
    for result in (explore, suggest):
        assert result.returncode == 0, result.stderr
        assert not [word for word in NOISE if word in result.stderr], result.stderr
    assert "Explored 16 images" in explore.stdout, explore.stdout
    assert "Train with:" in suggest.stdout, suggest.stdout


def test_verbose_shows_what_tensorflow_writes(tmp_path, catsdogs_subset):
    data = catsdogs_subset("verbose", train=4, validation=2)
    train = _tiny_train(data, tmp_path / "runs", "--verbose")
    assert train.returncode == 0, train.stderr
    assert "oneDNN custom operations" in train.stderr or "absl::InitializeLog" in train.stderr, train.stderr


def test_quiet_native_lines_keep_what_is_not_noise_in_order():
    """C++ code writes to descriptor 2 directly: the block's noise goes, an error line stays, in order."""
    script = (
        "import os, sys\n"
        "from tlcore import console\n"
        "print('before', file=sys.stderr, flush=True)\n"
        "with console.quiet_native_lines():\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    os.write(2, b'E0000 00:00:1.000000 1 file.cc:1] a real error\\n')\n"
        "    print('from python', file=sys.stderr)\n"
        "print('after', file=sys.stderr, flush=True)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines() == [
        "before",
        "E0000 00:00:1.000000 1 file.cc:1] a real error",
        "from python",
        "after",
    ]


def test_tensorflows_python_warnings_stay_out_unless_verbose():
    # "WARNING:tensorflow:5 out of the last 7 calls ... triggered tf.function retracing" reached a quiet train.
    script = (
        "import sys\n"
        "from tlcore import console\n"
        "console.import_tensorflow_quietly(verbose=sys.argv[1] == 'verbose')\n"
        "import tensorflow as tf\n"
        "tf.get_logger().warning('a retracing warning')\n"
    )
    quiet, verbose = (
        subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120)
        for mode in ("quiet", "verbose")
    )
    assert quiet.returncode == 0 and "a retracing warning" not in quiet.stderr, quiet.stderr
    assert "WARNING:tensorflow:a retracing warning" in verbose.stderr
