"""--distribution multi_worker: two `tlcore train` processes on 127.0.0.1 train one run together.

Both workers share one runs folder, as machines on shared storage do: only the chief's run may
appear there, and the other worker's scratch folder must be gone when it ends. Without dropout,
each stage trains deterministically (features and augmented views are cached, the base runs in
inference mode), so two workers splitting every global batch reach what one worker reaches alone
on the same data and seed, but for the order of floating-point sums.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import cli
from tests.helpers.cli import options
from tests.helpers.paths import PROJECT_ROOT
from tests.helpers.server import free_port
from tlcore.config import TrainConfig
from tlcore.data import folders
from tlcore.models import heads
from tlcore.runs import store
from tlcore.training import distribute, training_context

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


def start_two_workers(photos: Path, runs_dir: Path, settings: list[str]) -> list:
    """Two `tlcore train` processes, worker 0 (the chief) and worker 1, sharing `runs_dir`."""
    ports = two_free_ports()
    return [
        cli.tlcore_started(
            "train", "--data", str(photos), *settings, "--runs-dir", str(runs_dir),
            environment={"TF_CONFIG": tf_config(ports, index)},
        )
        for index in range(2)
    ]  # fmt: skip


def finish(workers: list, timeout: float = 600) -> list[dict]:
    """Waits for both workers, `timeout` seconds at most; each must exit 0. Their last JSON lines, chief first."""
    try:
        outputs = [worker.communicate(timeout=timeout) for worker in workers]
    except subprocess.TimeoutExpired:
        for worker in workers:
            worker.kill()
        outputs = [worker.communicate() for worker in workers]
        raise AssertionError(f"the workers did not end within {timeout} s: {[stderr[-2000:] for _, stderr in outputs]}")
    for index, (worker, (_, stderr)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}: {stderr[-3000:]}"
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


def only_the_chiefs_run(runs_dir: Path, chief: dict) -> Path:
    """The chief's run folder, checked to be the only entry of the shared runs folder besides the cache and lock."""
    run = Path(chief["run"])
    entries = sorted(path.name for path in runs_dir.iterdir())
    assert entries == sorted([".cache", ".training.lock", run.name]), entries
    assert not list(runs_dir.glob(distribute.SCRATCH_PREFIX + "*"))
    assert (run / "model.keras").stat().st_size > 0
    return run


def test_two_workers_train_one_run_that_only_the_chief_keeps(photos, tmp_path):
    runs_dir = tmp_path / "shared_runs"
    chief, other = finish(start_two_workers(photos, runs_dir, SETTINGS))
    assert chief["chief"] and not other["chief"] and other["run"] is None
    assert chief["status"] == other["status"] == "done"
    assert chief["replicas"] == 2 and chief["global_batch_size"] == 8

    # Only the chief's run, with its model, and the feature cache; the other worker's scratch folder is gone.
    run = only_the_chiefs_run(runs_dir, chief)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2 and list(summary["results"]) == list(STAGES)

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


def test_stopping_the_chief_stops_both_workers_after_the_same_batch(photos, tmp_path):
    runs_dir = tmp_path / "shared_runs"
    epochs = 200
    settings = options(
        strategy="feature_extraction", image_size=32, epochs=epochs, batch_size=2,
        distribution="multi_worker", json=True,
    )  # fmt: skip
    workers = start_two_workers(photos, runs_dir, settings)
    # Once the chief has recorded an epoch, both are training; the request reaches the chief's run only.
    deadline = time.monotonic() + 300
    while not list(runs_dir.glob("2*/metrics.jsonl")) and time.monotonic() < deadline:
        assert all(worker.poll() is None for worker in workers), [worker.communicate() for worker in workers]
        time.sleep(0.5)
    (run,) = store.list_runs(runs_dir)
    assert cli.tlcore("stop", str(run.path), "--runs-dir", str(runs_dir)).returncode == 0
    chief, other = finish(workers)
    assert chief["status"] == other["status"] == "stopped"
    assert 1 <= chief["results"]["feature_extraction"]["epochs"] < epochs
    assert other["results"]["feature_extraction"]["epochs"] == chief["results"]["feature_extraction"]["epochs"]
    assert only_the_chiefs_run(runs_dir, chief) == run.path
    assert run.status()["state"] == "stopped"


def head_trained_as(photos: Path, worker: distribute.WorkerTask | None) -> dict:
    """The feature-extraction head (Dropout 0.5) as one worker's `TrainingContext.fit` trains it for an
    epoch, in a process seeded as every worker's is; None: one process alone.

    Returns:
        Its weights before and after `fit`, and the dropout masks of the next two steps.
    """
    config = TrainConfig(data_dir=str(photos), batch_size=4, seed=7, dropout=0.5, dense_units=32)
    context = training_context.TrainingContext(config=config, dataset=folders.scan(photos), worker=worker)
    keras.utils.set_random_seed(config.seed)  # As each stage begins, on every worker.
    head = heads.build_head((2, 2, 8), context.dataset.num_classes, config)
    before = [np.array(weight) for weight in head.weights]
    context.compile(head, config.learning_rate)
    targets = context.targets("train")
    features = np.random.default_rng(0).normal(size=(len(targets), 2, 2, 8)).astype("float32")
    context.fit(head, "feature_extraction", features, 1, y=targets, batch_size=4, shuffle=False)
    dropout = head.get_layer("dropout")
    ones = np.ones((64, config.dense_units), dtype="float32")
    masks = [np.array(dropout(ones, training=True)) != 0 for _ in range(2)]
    return {"before": before, "after": [np.array(weight) for weight in head.weights], "masks": masks}


def test_each_worker_draws_its_own_dropout_masks_and_the_chief_those_of_one_process(photos):
    alone = head_trained_as(photos, None)
    chief = head_trained_as(photos, distribute.WorkerTask("worker", 0, workers=2, is_chief=True, rank=0))
    other = head_trained_as(photos, distribute.WorkerTask("worker", 1, workers=2, is_chief=False, rank=1))
    # Every worker starts from the same weights.
    for trained in (chief, other):
        for weight, alone_weight in zip(trained["before"], alone["before"]):
            np.testing.assert_array_equal(weight, alone_weight)
    # The chief trains exactly as one process alone: the same masks, so the same weights.
    for weight, alone_weight in zip(chief["after"], alone["after"]):
        np.testing.assert_array_equal(weight, alone_weight)
    for mask, alone_mask in zip(chief["masks"], alone["masks"]):
        np.testing.assert_array_equal(mask, alone_mask)
    # The other worker draws masks of its own: other weights after the same epoch, other masks next.
    assert any(not np.array_equal(weight, chief_weight) for weight, chief_weight in zip(other["after"], chief["after"]))
    for mask, chief_mask in zip(other["masks"], chief["masks"]):
        assert 0.3 < mask.mean() < 0.7  # Still dropout 0.5.
        assert 0.3 < (mask != chief_mask).mean() < 0.7  # As unrelated as two masks of one process.


def test_two_workers_train_the_same_weights_and_then_draw_masks_of_their_own(photos):
    # Under the real strategy: a shifted generator state stays this worker's (no all-reduce touches it).
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tests.training.test_multi_worker import head_trained_as\n"
        "from tlcore.config import TrainConfig\n"
        "from tlcore.training import distribute\n"
        "config = TrainConfig(data_dir=sys.argv[1], distribution='multi_worker')\n"
        "with distribute.strategy_for(config).scope():\n"
        "    trained = head_trained_as(Path(sys.argv[1]), distribute.shared_task(config))\n"
        "print(json.dumps({key: [value.tolist() for value in trained[key]] for key in ('after', 'masks')}))\n"
    )
    ports = two_free_ports()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(photos)],
            cwd=PROJECT_ROOT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config(ports, index)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    chief, other = finish(workers, timeout=300)
    # One model: the same weights on both workers after every all-reduced step.
    for weight, chief_weight in zip(other["after"], chief["after"]):
        np.testing.assert_allclose(weight, chief_weight, rtol=1e-6)
    # The chief draws one process's masks; the other worker masks of its own.
    alone = head_trained_as(photos, None)
    np.testing.assert_array_equal(np.array(chief["masks"]), np.array(alone["masks"]))
    assert 0.3 < (np.array(other["masks"]) != np.array(chief["masks"])).mean() < 0.7


def extracting_run(workers: list, runs_dir: Path) -> store.Run:
    """The newest run of `runs_dir` once it reports extracting features, which it does as it begins the
    first batch (that batch also compiles the forward pass)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert all(worker.poll() is None for worker in workers), [worker.communicate() for worker in workers]
        runs = store.list_runs(runs_dir)
        if runs and runs[0].progress().get("phase") == "extracting":
            return runs[0]
        time.sleep(0.1)
    raise AssertionError(f"no run of {runs_dir} began extracting within 120 s")


EXTRACTION_SETTINGS = options(strategy="feature_extraction", image_size=64, distribution="multi_worker", json=True)


def test_a_stop_during_feature_extraction_ends_both_workers(catsdogs_subset, tmp_path):
    photos = catsdogs_subset("multi_worker_extraction", train=48, validation=4)
    runs_dir = tmp_path / "shared_runs"
    workers = start_two_workers(photos, runs_dir, EXTRACTION_SETTINGS)
    run = extracting_run(workers, runs_dir)
    run.request_stop()  # As `tlcore stop` does: the chief's run only.
    # Before, the other worker went on extracting, then failed in training's first all-reduce.
    chief, other = finish(workers, timeout=120)
    assert chief["status"] == other["status"] == "stopped"
    assert chief["results"] == other["results"] == {}  # Stopped before the head trained.
    assert run.status()["state"] == "stopped"
    # Stopped inside the extraction of the training features, which are never cached partial.
    assert not list(runs_dir.glob(".cache/features/*/train.npy"))
    assert [path.name for path in runs_dir.iterdir() if not path.name.startswith(".")] == [run.path.name]
    assert not list(runs_dir.glob(distribute.SCRATCH_PREFIX + "*"))


def test_a_stop_while_only_the_other_worker_extracts_ends_both_before_training(catsdogs_subset, tmp_path):
    # The chief has the features from an earlier run on its runs folder; the other worker extracts them
    # again in its scratch folder, so only it runs the extraction loop.
    photos = catsdogs_subset("multi_worker_cached", train=48, validation=4)
    runs_dir = tmp_path / "shared_runs"
    settings = [*EXTRACTION_SETTINGS, "--epochs", "1", "--runs-dir", str(runs_dir)]
    alone = cli.tlcore("train", "--data", str(photos), *settings)
    assert alone.returncode == 0, alone.stderr[-3000:]
    workers = start_two_workers(photos, runs_dir, EXTRACTION_SETTINGS)
    extracting_run(workers, runs_dir / f"{distribute.SCRATCH_PREFIX}worker_1")
    (run, _) = store.list_runs(runs_dir)  # Newest first: the chief's, waiting for the other worker.
    run.request_stop()
    chief, other = finish(workers, timeout=120)
    assert chief["status"] == other["status"] == "stopped"
    assert chief["results"] == other["results"] == {}
    assert run.status()["state"] == "stopped"
    assert not list(runs_dir.glob(distribute.SCRATCH_PREFIX + "*"))


def test_tf_config_names_the_chief_and_refuses_what_it_cannot_read(tmp_path):
    two = {"cluster": {"worker": ["a:1", "b:2"]}}
    first = distribute.worker_task({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 0}})})
    second = distribute.worker_task({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 1}})})
    assert first.is_chief and not second.is_chief and first.workers == second.workers == 2
    assert (first.rank, second.rank) == (0, 1)
    with_chief = {"cluster": {"chief": ["c:3"], "worker": ["a:1"]}}
    chief = distribute.worker_task({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})})
    worker = distribute.worker_task({"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "worker", "index": 0}})})
    assert chief.is_chief and not worker.is_chief and chief.workers == 2
    assert (chief.rank, worker.rank) == (0, 1)  # Worker 0 comes after the chief.
    assert distribute.worker_task({}) is None
    assert distribute.scratch_directory(tmp_path, second) == tmp_path / ".workertemp_worker_1"
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        distribute.worker_task({"TF_CONFIG": "{not json"})
    with pytest.raises(ValueError, match="task type 'ps' cannot train"):
        distribute.worker_task(
            {
                "TF_CONFIG": json.dumps(
                    {**two, "cluster": {**two["cluster"], "ps": ["p:4"]}, "task": {"type": "ps", "index": 0}}
                )
            }
        )
    with pytest.raises(ValueError, match="lists 2 'worker' addresses"):
        distribute.worker_task({"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 2}})})


def test_workers_wait_longer_than_tensorflows_default_for_a_busy_peer(tmp_path):
    # In a fresh process (the coordination service is configured once, before TensorFlow starts):
    # a one-worker cluster is enough to see the configuration the strategy starts with.
    script = (
        "from tensorflow.python.eager import context\n"
        "from tlcore.config import TrainConfig\n"
        "from tlcore.training import distribute\n"
        "distribute.strategy_for(TrainConfig(data_dir='x', distribution='multi_worker'))\n"
        "print(context.context().config.experimental.coordination_config.heartbeat_timeout_in_ms)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config([free_port()], 0)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert int(completed.stdout.strip().splitlines()[-1]) == distribute.HEARTBEAT_TIMEOUT_SECONDS * 1000


def test_train_refuses_an_unreadable_tf_config_with_a_message(photos, tmp_path):
    process = cli.tlcore_started(
        "train", "--data", str(photos), "--distribution", "multi_worker", "--runs-dir", str(tmp_path / "runs"),
        environment={"TF_CONFIG": "{not json"},
    )  # fmt: skip
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2
    assert "TF_CONFIG must be JSON" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()
