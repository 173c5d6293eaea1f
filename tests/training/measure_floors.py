"""One-off measurement behind the floors of test_learning.py: each case trained over several seeds.

Trains every case of `test_learning.CASES` exactly as the tests do (same data, settings and
evaluation of the saved model through `tlcore.serving.predict`), once per seed, and prints each
case's validation accuracy per seed, mean, min, the least per-class share, chance and the floor the
tests use. A floor should sit a margin below the min, well above chance. Not a test (pytest does
not collect it); takes a few minutes on two cores:

    python -m tests.training.measure_floors [--seeds 1 2 3 4 5] [--cases feature_extraction ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.training.test_learning import CASES, accuracy, make_subset, train_case, validation_predictions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--cases", nargs="+", default=[case.name for case in CASES])
    arguments = parser.parse_args()
    cases = [case for case in CASES if case.name in arguments.cases]
    header = f"{'case':30} {'per seed':>{6 * len(arguments.seeds)}} {'mean':>6} {'min':>6} {'class':>6}"
    print(header + f" {'chance':>6} {'floor':>6} {'s/run':>6}", flush=True)
    with tempfile.TemporaryDirectory(prefix="measure-floors-") as temporary:
        root = Path(temporary)
        for case in cases:
            data_dir = make_subset(root / case.name / "data", case)
            scores, class_shares, started = [], [], time.time()
            for seed in arguments.seeds:
                trained = train_case(case, data_dir, root / case.name / f"runs-{seed}", seed=seed)
                predicted = validation_predictions(trained)
                scores.append(accuracy(predicted))
                class_shares.append(min(labels.count(name) / len(labels) for name, labels in predicted.items()))
            seconds = (time.time() - started) / len(arguments.seeds)
            per_seed = " ".join(f"{score:5.3f}" for score in scores)
            print(
                f"{case.name:30} {per_seed} {sum(scores) / len(scores):6.3f} {min(scores):6.3f} "
                f"{min(class_shares):6.3f} {case.chance:6.3f} {case.floor:6.2f} {seconds:6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
