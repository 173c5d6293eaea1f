"""A run killed twice and resumed against the same run uninterrupted: the validation accuracy of each stage.

python -m benchmarks.resume [--data DIR] [--train 100] [--validation 250] [--seeds 7] [--image-size 96]

For each seed, two runs of the 'all' strategy (EfficientNet-Lite0 with its bundled weights) train on the
first photos of each class of the data set, each in its own worker process as the app starts them: one to
its end, the other killed (SIGKILL) once its feature extraction has an epoch backed up, resumed, killed
again once fine-tuning has one, and resumed to its end. Prints one table; exits 1 when a stage's final
validation accuracy differs by more than TOLERANCE_POINTS, or a run does not end "done".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from tlcore.config import TrainConfig
from tlcore.runs import resumption, store, worker

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE_POINTS = 1.0
STAGES = ("feature_extraction", "frozen_augmented", "fine_tuning")
WAIT_SECONDS = 1800


def kill_after_backup(run: store.Run, stage: str, timeout: float = WAIT_SECONDS) -> float:
    """SIGKILLs a run's worker once `stage` has a finished epoch backed up; returns the time of the kill.

    Raises:
        RuntimeError: the run ended, or no epoch was backed up within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not resumption.backed_up_epochs(run, stage):
        if run.state not in ("queued", "running") or time.monotonic() > deadline:
            raise RuntimeError(f"Run {run.id} has no {stage} epoch backed up ({run.status()}).")
        time.sleep(0.02)
    os.kill(run.raw_status()["pid"], signal.SIGKILL)
    killed = time.time()
    while run.state != "interrupted":
        time.sleep(0.05)
    return killed


def wait_until_finished(run: store.Run, timeout: float = WAIT_SECONDS) -> dict:
    """Waits for a run to reach a final state; returns its status.

    Raises:
        RuntimeError: it did not within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while run.state not in store.FINAL_STATES:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Run {run.id} did not finish within {timeout} s ({run.status()}).")
        time.sleep(0.2)
    return run.status()


def subset(source: Path, target: Path, train: int, validation: int) -> Path:
    """Symbolic links to the first photos of each class of each split."""
    for split, count in (("train", train), ("validation", validation)):
        for folder in sorted(path for path in (source / split).iterdir() if path.is_dir()):
            (target / split / folder.name).mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:count]:
                (target / split / folder.name / photo.name).symlink_to(photo.resolve())
    return target


def accuracies(run: store.Run) -> dict[str, float]:
    results = run.summary().get("results", {})
    return {stage: results[stage]["val_accuracy"] for stage in STAGES if stage in results}


def compare(config: TrainConfig, runs_dir: Path) -> tuple[dict, dict, str]:
    """(uninterrupted accuracies, resumed accuracies, the resumed run's final state) for one config."""
    uninterrupted = worker.start(config, runs_dir)
    wait_until_finished(uninterrupted)
    resumed = worker.start(config, runs_dir)
    kill_after_backup(resumed, "feature_extraction")
    worker.resume(resumed, runs_dir)
    kill_after_backup(resumed, "fine_tuning")
    worker.resume(resumed, runs_dir)
    state = wait_until_finished(resumed)["state"]
    if uninterrupted.state != "done":
        raise RuntimeError(f"The uninterrupted run {uninterrupted.id} ended {uninterrupted.state}.")
    return accuracies(uninterrupted), accuracies(resumed), state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "catsdogs")
    parser.add_argument("--train", type=int, default=100, help="train photos per class")
    parser.add_argument("--validation", type=int, default=250, help="validation photos per class")
    parser.add_argument("--seeds", default="7", help="comma-separated seeds, one pair of runs each")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each stage")
    arguments = parser.parse_args()
    rows, missed = [], False
    with tempfile.TemporaryDirectory(prefix="tlcore-resume-") as folder:
        data = subset(arguments.data, Path(folder) / "data", arguments.train, arguments.validation)
        for seed in (int(item) for item in arguments.seeds.split(",")):
            config = TrainConfig(
                data_dir=str(data),
                strategy="all",
                backbone="efficientnet_lite0",
                image_size=arguments.image_size,
                epochs=arguments.epochs,
                fine_tuning_epochs=arguments.epochs,
                batch_size=8,
                augmented_views=2,
                seed=seed,
            )
            expected, received, state = compare(config, Path(folder) / f"runs-{seed}")
            for stage in STAGES:
                # Rounded: accuracies are fractions of whole images, stored as float32.
                difference = round(100 * (received[stage] - expected[stage]), 6)
                passed = state == "done" and abs(difference) <= TOLERANCE_POINTS
                missed |= not passed
                rows.append((seed, stage, expected[stage], received[stage], difference, passed))
    print(
        f"Killed twice (feature extraction, fine-tuning) and resumed, against uninterrupted: {arguments.data}, "
        f"{arguments.train} + {arguments.validation} photos per class, {arguments.image_size} px, "
        f"{arguments.epochs} epochs a stage"
    )
    print("| seed | stage | uninterrupted | resumed | difference (points) | target | result |")
    print("|---|---|---|---|---|---|---|")
    for seed, stage, expected, received, difference, passed in rows:
        print(
            f"| {seed} | {stage} | {expected:.3f} | {received:.3f} | {difference:+.1f} | "
            f"within {TOLERANCE_POINTS:g} | {'PASS' if passed else 'FAIL'} |"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
