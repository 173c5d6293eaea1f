"""--distribution multi_worker: two `tlcore train` processes on 127.0.0.1 train one run together.

Both workers share one runs folder, as machines on shared storage do: only the chief's run may
appear there, and the other worker's scratch folder must be gone when it ends. Without dropout,
each stage trains deterministically (features and augmented views are cached, the base runs in
inference mode), so two workers splitting every global batch reach what one worker reaches alone
on the same data and seed, but for the order of floating-point sums.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.helpers.cli import options
from tests.helpers.server import free_port
from tlcore.training import distribute

STAGES = ("feature_extraction", "frozen_augmented", "fine_tuning")
# Every stage of strategy "all", small: dropout 0 makes the two-worker run comparable to the one-worker run.
SETTINGS = options(
    strategy="all",
    image_size=64,
    epochs=2,
    fine_tuning_epochs=1,
    batch_size=8,
    augmented_views=1,
    dropout=0,
    seed=7,
    replica_scaling="none",  # The same global batch and learning rates as one worker.
    distribution="multi_worker",
    json=True,
)


@pytest.fixture(scope="module")
def photos(catsdogs_subset) -> Path:
    return catsdogs_subset("multi_worker", train=12, validation=8)


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def two_free_ports() -> list[int]:
    ports = [free_port()]
    while len(ports) < 2:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def test_two_workers_train_one_run_that_only_the_chief_keeps(photos, tmp_path):
    runs_dir = tmp_path / "shared_runs"
    ports = two_free_ports()
    workers = [
        cli.tlcore_started(
            "train", "--data", str(photos), *SETTINGS, "--runs-dir", str(runs_dir),
            environment={"TF_CONFIG": tf_config(ports, index)},
        )
        for index in range(2)
    ]  # fmt: skip
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for index, (worker, (stdout, stderr)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}: {stderr[-3000:]}"
    chief, other = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)
    assert chief["chief"] and not other["chief"] and other["run"] is None
    assert chief["status"] == other["status"] == "done"
    assert chief["replicas"] == 2 and chief["global_batch_size"] == 8

    # Only the chief's run, with its model and the feature cache; the other worker's scratch folder is gone.
    entries = sorted(path.name for path in runs_dir.iterdir())
    run = Path(chief["run"])
    assert entries == sorted([".cache", ".training.lock", run.name]), entries
    assert (run / "model.keras").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2 and list(summary["results"]) == list(STAGES)
    assert not list(runs_dir.glob(distribute.SCRATCH_PREFIX + "*"))

    # One worker alone on the same data and seed (TF_CONFIG unset): the same training.
    alone = cli.tlcore("train", "--data", str(photos), *SETTINGS, "--runs-dir", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr[-3000:]
    single = cli.last_json(alone)
    assert single["replicas"] == 1
    for stage in STAGES:
        together, by_itself = chief["results"][stage], single["results"][stage]
        assert abs(together["val_accuracy"] - by_itself["val_accuracy"]) <= 0.01, stage
        assert together["val_loss"] == pytest.approx(by_itself["val_loss"], rel=1e-3), stage
        # Both workers report the same all-reduced metrics.
        assert other["results"][stage]["val_loss"] == pytest.approx(together["val_loss"], rel=1e-6), stage


def test_tf_config_names_the_chief_and_refuses_what_it_cannot_read(tmp_path):
    two = {"cluster": {"worker": ["a:1", "b:2"]}}
    first = distribute.worker_task({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 0}})})
    second = distribute.worker_task({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 1}})})
    assert first.is_chief and not second.is_chief and first.workers == second.workers == 2
    with_chief = {"cluster": {"chief": ["c:3"], "worker": ["a:1"]}}
    chief = distribute.worker_task({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})})
    worker = distribute.worker_task({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "worker", "index": 0}})})
    assert chief.is_chief and not worker.is_chief and chief.workers == 2
    assert distribute.worker_task({}) is None
    assert distribute.scratch_directory(tmp_path, second) == tmp_path / ".workertemp_worker_1"
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        distribute.worker_task({"TF_CONFIG": "{not json"})
    with pytest.raises(ValueError, match="lists 2 'worker' addresses"):
        distribute.worker_task({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 2}})})
