"""Two workers against one: does `--distribution multi_worker` reach a one-process run's accuracy?

    python -m benchmarks.multi_worker [--data DIR] [--train 100] [--validation 50] [--seeds 1,2,3]
                                      [--image-size 96] [--epochs 4] [--fine-tuning-epochs 2]
                                      [--tolerance 0.01]

For each seed, the same `python -m tlcore train --strategy all` runs twice on the same photos
(the first `--train` / `--validation` photos of each class, linked into a temporary folder):
once as two worker processes on 127.0.0.1 (a two-worker `TF_CONFIG`, free ports) and once as one
worker alone (`TF_CONFIG` unset). Both use `--replica-scaling none`, so the global batch and the
learning rates are the same; the model keeps its dropout. The chief draws the masks one process
draws, the other worker masks of its own for its rows of each batch
(`multi_worker.separate_random_streams`), so the two runs are the same training but for those
masks and the order of floating-point sums.

Prints a table of each stage's final validation accuracy (mean over the seeds) and the wall time
of each run, and exits 1 when a stage's mean accuracy of the two workers is more than
`--tolerance` away from the one-process run's, or when a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("feature_extraction", "frozen_augmented", "fine_tuning")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "catsdogs"


def say(message: str) -> None:
    """A progress line on standard error (the table alone goes to standard output)."""
    print(f"[bench_multi_worker] {message}", file=sys.stderr, flush=True)


def linked_subset(source: Path, target: Path, train: int, validation: int) -> Path:
    """The first photos of each class of each split, as symbolic links in `target`."""
    for split, count in (("train", train), ("validation", validation)):
        for folder in sorted((source / split).iterdir()):
            destination = target / split / folder.name
            destination.mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:count]:
                (destination / photo.name).symlink_to(photo)
    return target


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports of 127.0.0.1 that nothing listens on now."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def train(arguments: list[str], workers: int) -> tuple[dict, float]:
    """`python -m tlcore train ARGUMENTS` as `workers` processes (1: no TF_CONFIG); the chief's result and seconds."""
    ports = free_ports(workers)
    started = time.perf_counter()
    processes = []
    for index in range(workers):
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        environment.pop("TF_CONFIG", None)
        if workers > 1:
            cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
            environment["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tlcore", "train", *arguments],
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [process.communicate() for process in processes]
    seconds = time.perf_counter() - started
    for index, (process, (_, stderr)) in enumerate(zip(processes, outputs)):
        if process.returncode != 0:
            raise RuntimeError(f"worker {index} of {workers} exited {process.returncode}: {stderr[-2000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1]), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.multi_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a data set with train/ and validation/")
    parser.add_argument("--train", type=int, default=100, help="training photos per class")
    parser.add_argument("--validation", type=int, default=50, help="validation photos per class")
    parser.add_argument("--seeds", default="1,2,3", help="seeds, comma-separated")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fine-tuning-epochs", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest accuracy gap allowed per stage")
    arguments = parser.parse_args(argv)
    seeds = [int(seed) for seed in arguments.seeds.split(",")]
    accuracies: dict[int, dict[str, list[float]]] = {1: {stage: [] for stage in STAGES}, 2: {}}
    accuracies[2] = {stage: [] for stage in STAGES}
    seconds: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench-multi-worker-") as scratch:
        photos = linked_subset(arguments.data, Path(scratch) / "photos", arguments.train, arguments.validation)
        for seed in seeds:
            for workers in (2, 1):
                flags = [
                    *("--data", str(photos), "--strategy", "all", "--json", "--seed", str(seed)),
                    *("--image-size", str(arguments.image_size), "--epochs", str(arguments.epochs)),
                    *("--fine-tuning-epochs", str(arguments.fine_tuning_epochs), "--batch-size", "16"),
                    *("--distribution", "multi_worker", "--replica-scaling", "none"),
                    *("--runs-dir", str(Path(scratch) / f"runs-{seed}-{workers}")),
                ]
                say(f"seed {seed}: {workers} worker(s)")
                result, elapsed = train(flags, workers)
                seconds[workers].append(elapsed)
                for stage in STAGES:
                    accuracies[workers][stage].append(result["results"][stage]["val_accuracy"])
    rows, missed = [], []
    for stage in STAGES:
        one, two = statistics.mean(accuracies[1][stage]), statistics.mean(accuracies[2][stage])
        passed = abs(two - one) <= arguments.tolerance
        missed += [] if passed else [stage]
        # How far one worker's own seeds spread: the noise a gap between the two has to be read against.
        spread = statistics.stdev(accuracies[1][stage]) if len(seeds) > 1 else 0.0
        rows.append(
            (stage, f"{one:.4f}", f"{spread:.4f}", f"{two:.4f}", f"{two - one:+.4f}", "PASS" if passed else "MISS")
        )
    print(
        f"{arguments.train} + {arguments.validation} photos per class, {arguments.image_size} px, seeds {seeds}, "
        f"EfficientNet-Lite0, --strategy all (val_accuracy, mean over the seeds)"
    )
    header = ("stage", "one worker", "its seeds' sd", "two workers", "difference", f"within {arguments.tolerance:g}")
    for row in (header, *rows):
        print("  ".join(f"{cell:>14}" if position else f"{cell:<20}" for position, cell in enumerate(row)))
    print(
        f"wall time per run (s): one worker {statistics.mean(seconds[1]):.0f}, "
        f"two workers on this machine {statistics.mean(seconds[2]):.0f}"
    )
    for workers in (1, 2):
        for stage in STAGES:
            say(f"{workers} worker(s) {stage}: {accuracies[workers][stage]}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
