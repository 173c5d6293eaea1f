"""Cold against warm EfficientNet-Lite0 builds: converting the PyTorch weights, or loading the cached conversion.

python -m benchmarks.weights_cache [--repeats 3] [--image-size 224]

Each build runs in a fresh process with its own $KERAS_HOME (a temporary folder), timed from before the model
is built (TensorFlow already imported) until its ImageNet weights are set: "cold" removes the cached conversion
first, "warm" finds it.
Prints one table (median and all times, seconds); results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

BUILD = """
import json, sys, time
import keras
from tlcore.models import efficientnet_lite
started = time.perf_counter()
size = int(sys.argv[1])
model = efficientnet_lite.EfficientNetLite0(input_shape=(size, size, 3), weights="imagenet")
built = time.perf_counter() - started
print(json.dumps({"seconds": built}))
"""


def build_seconds(keras_home: Path, image_size: int) -> float:
    environment = dict(os.environ, KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-c", BUILD, str(image_size)],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    arguments = parser.parse_args()
    times = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="tlcore-keras-home-") as folder:
        keras_home = Path(folder)
        for _ in range(arguments.repeats):
            shutil.rmtree(keras_home / "models", ignore_errors=True)
            times["cold"].append(build_seconds(keras_home, arguments.image_size))
            times["warm"].append(build_seconds(keras_home, arguments.image_size))
    cold, warm = statistics.median(times["cold"]), statistics.median(times["warm"])
    print(f"EfficientNet-Lite0 with ImageNet weights, {arguments.image_size} px, {arguments.repeats} builds each")
    print("build                       median (s)  all (s)")
    for name, label in (("cold", "cold (convert + cache)"), ("warm", "warm (cached .weights.h5)")):
        median = statistics.median(times[name])
        print(f"{label:<27} {median:>10.2f}  {' '.join(f'{value:.2f}' for value in times[name])}")
    print(f"saved per warm build: {cold - warm:.2f} s ({(cold - warm) / cold:.0%} of a cold build)")


if __name__ == "__main__":
    main()
