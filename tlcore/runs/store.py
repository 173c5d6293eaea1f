"""A run is a folder: its config, metrics as they arrive, status, model, labels and summary.

Layout of `<runs_dir>/<run_id>/`:
    config.json     the TrainConfig
    status.json     {"state", "error", "pid", "stage", "updated", ...}, written by the run's creator,
                    then only by its worker (see Run.request_stop)
    metrics.jsonl   one JSON object per finished epoch (all stages, epochs counted on)
    progress.json   the latest batch-level progress (overwritten every few batches)
    labels.json     the class names, in label order
    model.keras     the trained model (also for stopped runs; saved after each stage before the last too)
    model.json      which stage model.keras holds, its accuracy, and the file's mtime and size
    summary.json    per stage: val_accuracy, val_loss, best_val_accuracy, epochs, seconds
    stop            present when a stop was requested
    log.txt         the worker process's output

Every file is written to a temporary name and renamed into place, so a reader (the dashboard,
another process) never sees half a file. Readers are also tolerant of missing or damaged files:
a run folder being written or deleted never breaks the runs table. What killed writers leave behind
is removed by `tlcore.runs.partials`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tlcore import files, home
from tlcore.config import TrainConfig
from tlcore.models.registry import BACKBONES

STATES = ("queued", "running", "stopping", "stopped", "failed", "done", "interrupted")
FINAL_STATES = ("stopped", "failed", "done", "interrupted")
# A worker may still write these runs (and a new model); the others have ended, one way or another.
ACTIVE_STATES = tuple(state for state in STATES if state not in FINAL_STATES)
# A worker trains these runs now (one at a time per runs folder): a queued run waits for them.
TRAINING_STATES = ("running", "stopping")
# Ended with the model the run ends with: done, or stopped by the person with what it had learned.
ENDED_STATES = ("done", "stopped")
# Ended early: the worker died, or a stage failed (a finished stage's model may be kept: `saved_model`).
CUT_SHORT_STATES = ("interrupted", "failed")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# The backbone column of a scratch run: it trains a small CNN of its own, no backbone.
SCRATCH_MODEL = "small CNN"
# A queued run's worker writes its pid into the status as its first act, before it imports anything
# heavy. A queued run without a pid this long after it was created has a worker that never started.
QUEUED_WITHOUT_PROCESS_SECONDS = 60


def default_runs_dir() -> Path:
    """`$TLCORE_RUNS_DIR`, else `runs/` of tlcore's home folder (see `tlcore.home`)."""
    return home.default_folder("runs")


# psutil gives a process's start as its seconds since boot plus the boot time, which Linux reports in whole
# seconds of the wall clock: two readings of one process's start differ by a second when the clock drifts across
# one (seen: a live worker judged dead), more when a virtual machine's clock sync steps it. A recycled pid belongs
# to a process started after the worker ended, in practice long after.
START_TIME_TOLERANCE_SECONDS = 5.0


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether the process that wrote a status still exists (and is not a recycled pid).

    Args:
        pid: the process id the status names (None or 0: no process).
        started: the process's start time as it recorded it (`psutil.Process.create_time`), or None to
            accept any process of that id.
    """
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) <= START_TIME_TOLERANCE_SECONDS
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class RunFolderGone(FileNotFoundError):
    """A run's folder was deleted while its worker trained it: the worker ends and writes nothing more."""

    def __init__(self, path: Path):
        super().__init__(f"The run folder {path} was deleted while it trained; training ended and wrote nothing more.")
        self.path = Path(path)


@dataclass(frozen=True)
class Run:
    """A handle on one run folder. Cheap: every property reads the folder afresh."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    def config(self) -> dict:
        return files.read_json_object(self.path / "config.json")

    def train_config(self):
        return TrainConfig.from_dict(self.config())

    def labels(self) -> list[str]:
        labels = files.read_json(self.path / "labels.json", [])
        return labels if isinstance(labels, list) else []  # Valid JSON of another type is as damaged.

    def summary(self) -> dict:
        return files.read_json_object(self.path / "summary.json")

    def progress(self) -> dict:
        return files.read_json_object(self.path / "progress.json")

    def raw_status(self) -> dict:
        return files.read_json_object(self.path / "status.json")

    def status(self, now: float | None = None) -> dict:
        """The status as readers should see it.

        A dead worker's run is "interrupted", a queued run whose worker never wrote its pid within
        QUEUED_WITHOUT_PROCESS_SECONDS is "interrupted", and a running run with a stop request is
        "stopping" (the request is a file of its own: only the worker writes status.json).

        Args:
            now: the time to judge the grace period by (default: the current time).
        """
        status = dict(self.raw_status())
        state = status.get("state")
        alive = process_alive(status.get("pid"), status.get("started"))
        if state in TRAINING_STATES and not alive:
            status["state"] = "interrupted"
            status.setdefault("error", None)
            status["error"] = status["error"] or "The training process ended without finishing (killed or crashed)."
        elif state == "queued" and status.get("pid") and not alive:
            status["state"] = "interrupted"
            status["error"] = "The queued training process is gone."
        elif state == "queued" and not status.get("pid") and self._waited_too_long(status, now):
            status["state"] = "interrupted"
            status["error"] = (
                f"The training process did not start within {QUEUED_WITHOUT_PROCESS_SECONDS} s of the run's creation."
            )
        elif state == "running" and self.stop_requested():
            status["state"] = "stopping"
        return status

    @staticmethod
    def _waited_too_long(status: dict, now: float | None) -> bool:
        created = status.get("created")
        if not isinstance(created, (int, float)) or isinstance(created, bool):
            return False  # A run folder from before "created" was recorded: nothing to judge by.
        return (time.time() if now is None else now) - created > QUEUED_WITHOUT_PROCESS_SECONDS

    @property
    def state(self) -> str:
        return self.status().get("state", "unknown")

    def metrics(self) -> list[dict]:
        """The per-epoch records written so far (damaged lines skipped)."""
        records = []
        try:
            # Bytes that are not UTF-8 (a disk fault, an editor) damage their line only: every reader of the
            # runs folder reads metrics, and a UnicodeDecodeError broke the runs table for all runs.
            lines = (self.path / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return records
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):  # A line of valid JSON that is not a record is as damaged.
                records.append(record)
        return records

    # Writers, used by the worker process.

    def check_present(self) -> None:
        """Raises RunFolderGone when the run's folder no longer exists (a person deleted it while it trained)."""
        if not self.path.is_dir():
            raise RunFolderGone(self.path)

    def write_file(self, name: str, text: str) -> None:
        """Writes one of the run's files whole; never re-creates a run folder that was deleted.

        Raises:
            RunFolderGone: the run's folder no longer exists.
        """
        try:
            files.write_atomic(self.path / name, text, make_folders=False)
        except FileNotFoundError:
            self.check_present()
            raise

    def set_status(self, state: str, **extra: Any) -> None:
        if state not in STATES:
            raise ValueError(f"Unknown run state {state!r}. Expected one of {STATES}.")
        status = self.raw_status()
        status.update(extra)
        status["state"] = state
        status["updated"] = time.time()
        self.write_file("status.json", files.json_text(status))

    def append_metrics(self, record: dict) -> None:
        self.rewrite_metrics([*self.metrics(), record])

    def rewrite_metrics(self, records: list[dict]) -> None:
        # Rewritten whole and renamed (a few hundred lines at most), so readers never see a
        # partial line.
        lines = [files.json_text(item, indent=None) for item in records]
        self.write_file("metrics.jsonl", "".join(line + "\n" for line in lines))

    def set_progress(self, record: dict) -> None:
        self.write_file("progress.json", files.json_text(record))

    def request_stop(self) -> None:
        """Asks the worker to stop after its current batch.

        Writes the stop file only: status.json has one writer, the worker. A read-modify-write of the
        status here could land just after the worker wrote "done" and turn it back into "stopping"
        (then "interrupted", once the worker has exited). Readers see "stopping" through `status`.
        """
        self.write_file("stop", str(time.time()))

    def stop_requested(self) -> bool:
        return (self.path / "stop").exists()


def new_run_id(strategy: str, backbone: str) -> str:
    """'<time>-<strategy>-<backbone>-<4 hex digits>'; the scratch CNN uses no backbone, so its ids name none."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model = "" if strategy == "scratch" else f"{backbone}-"
    return f"{stamp}-{strategy}-{model}{secrets.token_hex(2)}"


def create(config, runs_dir: str | os.PathLike | None = None) -> Run:
    """Creates a queued run folder for a TrainConfig.

    Args:
        config: the run's TrainConfig.
        runs_dir: where runs live (default `default_runs_dir()`).

    Returns:
        The new Run.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / new_run_id(config.strategy, config.backbone)
    path.mkdir()
    files.write_json(path / "config.json", config.to_dict())
    run = Run(path)
    run.set_status("queued", created=time.time(), error=None)
    return run


def resolve(run: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Run:
    """Finds a run by id or path, refusing anything outside the runs folder.

    Args:
        run: a run id (folder name) or a path to a run folder inside `runs_dir`.
        runs_dir: the runs folder (default `default_runs_dir()`).

    Returns:
        The Run.

    Raises:
        ValueError: the id is malformed, outside the runs folder, or no such run exists.
    """
    runs_dir = (Path(runs_dir) if runs_dir is not None else default_runs_dir()).resolve()
    text = str(run)
    candidate = Path(text)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        path = candidate.resolve()
    else:
        name = candidate.name  # "ID/" and "./ID", as a shell's completion writes them, name the run ID.
        if not RUN_ID_PATTERN.match(name) or name in (".", ".."):
            raise ValueError(f"Invalid run id {text!r}: expected a folder name of letters, digits, '-', '_' and '.'.")
        path = (runs_dir / name).resolve()
    if path.parent != runs_dir:
        raise ValueError(f"Run {text!r} is not inside the runs folder {runs_dir}.")
    if not (path / "config.json").is_file():
        raise ValueError(f"No run {path.name!r} in {runs_dir}.")
    return Run(path)


def training_run(runs_dir: str | os.PathLike | None = None, exclude: str | None = None) -> Run | None:
    """The run that trains now in a runs folder (state "running" or "stopping", its worker alive), if any.

    Args:
        runs_dir: the runs folder (default `default_runs_dir()`).
        exclude: a run id never to return (the run asking what it waits for).
    """
    for run in list_runs(runs_dir):
        if run.id != exclude and run.state in TRAINING_STATES:  # A dead worker's run is "interrupted".
            return run
    return None


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[Run]:
    """The runs in a folder, newest first.

    Skipped: hidden entries, folders without a config, and symbolic links. A link can lead outside
    the runs folder (where `resolve` refuses to go, so the app would list a run it cannot open, and
    deleting it would reach elsewhere), or to another run, which would then be listed twice.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not runs_dir.is_dir():
        return []
    found = []
    for path in runs_dir.iterdir():
        if path.name.startswith(".") or path.is_symlink():
            continue
        if path.is_dir() and (path / "config.json").is_file():
            found.append(Run(path))
    # Ids start with the second they were made in, then a random suffix: runs made within one second (the
    # CLI's queue, two clicks) are ordered by the status's "created" time, which only they need read.
    by_second: dict[str, list[Run]] = {}
    for run in sorted(found, key=lambda item: item.id, reverse=True):
        by_second.setdefault(run.id[: len("YYYYMMDD-HHMMSS")], []).append(run)
    return [
        run
        for runs in by_second.values()
        for run in (sorted(runs, key=_created_then_id, reverse=True) if len(runs) > 1 else runs)
    ]


def _created_then_id(run: Run) -> tuple[float, str]:
    """The status's "created" time (queued again when resumed), 0 for a folder from before it was recorded."""
    created = run.raw_status().get("created")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        created = 0.0
    return float(created), run.id


def _model_val_accuracy(summary: dict) -> float | None:
    """The validation accuracy of the weights in model.keras: its last stage's final epoch (with early
    stopping, the restored one), which for 1 -> 2 -> 3 can be below an earlier stage's best."""
    results, stage = summary.get("results"), summary.get("final_stage")
    final = results.get(stage) if isinstance(results, dict) and isinstance(stage, str) else None
    value = final.get("val_accuracy") if isinstance(final, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def model_name(config: dict) -> str | None:
    """What a run trains on, for people: its backbone's display name ("EfficientNet-Lite0", an unknown key
    as it is), or SCRATCH_MODEL for the scratch CNN (whose config still holds the unused default backbone)."""
    if config.get("strategy") == "scratch":
        return SCRATCH_MODEL
    backbone = config.get("backbone")
    return BACKBONES[backbone].display_name if backbone in BACKBONES else backbone


def describe(run: Run) -> dict:
    """One row of the runs table: never raises, whatever state the folder is in.

    "model" is for people (the backbone, or SCRATCH_MODEL); "backbone" is for programs (`runs --json`):
    a key of the backbone registry, None for a scratch run, which has no backbone. "model_val_accuracy" is
    the summary's last stage's (`tlcore.runs.catalog.describe` corrects it from the model's own record).
    """
    config = run.config()
    status = run.status()
    summary = run.summary()
    metrics = [record for record in run.metrics() if not record.get("partial")]  # A stop's cut-short epoch.
    validation = [record["val_accuracy"] for record in metrics if record.get("val_accuracy") is not None]
    return {
        "run": run.id,
        "state": status.get("state", "unknown"),
        "strategy": config.get("strategy"),
        "model": model_name(config),
        "backbone": None if config.get("strategy") == "scratch" else config.get("backbone"),
        "image_size": config.get("image_size"),
        "data_dir": config.get("data_dir"),
        "epochs": len(metrics),
        "best_val_accuracy": max(validation) if validation else None,
        "final_val_accuracy": validation[-1] if validation else None,
        "model_val_accuracy": _model_val_accuracy(summary),
        "seconds": summary.get("seconds"),
        "error": status.get("error"),
    }
