"""What each CLI command does (`tlcore.cli` builds the parser): the functions the dashboard calls, for headless use.

Each `command_*` takes the parsed arguments and returns the process exit status: 0 success, 1 a failure
the command reports (a run that failed, an image that could not be read), 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from tlcore import cli_flags, console, progress, temporaries, wording
from tlcore import config as config_module
from tlcore.data import folders
from tlcore.data.dataset import DatasetError
from tlcore.insight import stage_steps
from tlcore.runs import catalog, finder_jobs, resumption, store, worker
from tlcore.training import distribute, run_data


def print_json(value) -> None:
    print(json.dumps(value, indent=None, sort_keys=False))


def report_error(arguments: argparse.Namespace, error: Exception | str, status: int = 2) -> int:
    """Reports a refused input as {"error": ...} under --json, else on standard error; returns `status`."""
    if arguments.json:
        print_json({"error": str(error)})
    else:
        print(f"error: {error}", file=sys.stderr)
    return status


def command_scan(arguments: argparse.Namespace) -> int:

    try:
        dataset = folders.scan(
            arguments.folder, validation_fraction=arguments.validation_fraction, seed=arguments.split_seed
        )
    except (DatasetError, ValueError) as error:
        return report_error(arguments, error)
    if arguments.json:
        print_json(dataset.to_json())
        return 0
    counts = dataset.counts()
    print(f"Data set: {dataset.root} ({dataset.layout} layout)")
    print(f"Classes ({dataset.num_classes}): {', '.join(dataset.classes)}")
    width = max(len(name) for name in dataset.classes)
    for split, per_class in counts.items():
        total = sum(per_class.values())
        print(f"  {split}: {total} images")
        for name, count in per_class.items():
            print(f"    {name:<{width}}  {count}")
    if dataset.rejected:
        print(f"Rejected ({len(dataset.rejected)}):")
        for item in dataset.rejected:
            print(f"  {item.name}: {item.reason}")
    else:
        print("Rejected: none")
    return 0


def command_train(arguments: argparse.Namespace) -> int:
    if arguments.resume is not None:
        return _resume(arguments, arguments.runs_dir or store.default_runs_dir())
    try:
        if arguments.data_dir is None:
            raise ValueError("--data is required (or --resume RUN to continue a run).")
        config = config_module.from_preset(arguments.preset, **cli_flags.settings_from(arguments))
        # Before a run folder is made: a data set that cannot be used is one message, not a "failed" run.
        # Training scans again once the run's turn comes: a queued run may wait while photos are added or removed.
        dataset, _ = run_data.scan_for_run(config)
        # A multi-worker run's other workers train in a scratch folder: only the chief writes the run.
        runs_dir, scratch = distribute.task_runs_dir(config, arguments.runs_dir or store.default_runs_dir())
    except (DatasetError, ValueError) as error:
        return report_error(arguments, cli_flags.in_flag_words(str(error)))
    if dataset.rejected:
        print(
            f"{wording.count(len(dataset.rejected), 'file')} of {dataset.root} left out (not usable images); "
            f"`tlcore scan {dataset.root}` lists each with its reason.",
            file=sys.stderr,
        )
    if scratch is not None:
        temporaries.register(scratch)  # Removed even when Ctrl+C ends the process at once.
    try:
        _start_tensorflow(arguments)
        return _train(arguments, store.create(config, runs_dir), runs_dir, is_chief=scratch is None)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            temporaries.release(scratch)


def _resume(arguments: argparse.Namespace, runs_dir) -> int:
    """`train --resume RUN`: continues an interrupted or stopped run with its own settings."""
    given = sorted(cli_flags.settings_from(arguments))
    try:
        if given or arguments.preset != "default":
            raise ValueError(
                "--resume continues a run with the settings it was started with; received settings too "
                f"({', '.join(given or ['--preset'])}). Drop them, or start a new run."
            )
        run = store.resolve(arguments.resume, runs_dir)
        reason = resumption.why_not_resumable(run)
        if reason is not None:
            raise ValueError(reason)  # Before TensorFlow's seconds of start-up, as prepare_resume would.
        _start_tensorflow(arguments)
        point = worker.prepare_resume(run)
    except (DatasetError, ValueError) as error:
        return report_error(arguments, error)
    print(f"Resuming run {run.id}: {point.describe()}", file=sys.stderr, flush=True)
    return _train(arguments, run, runs_dir)


def _start_tensorflow(arguments: argparse.Namespace) -> None:
    """Imports TensorFlow (seconds) before a run is queued: Ctrl+C during the import then leaves no run
    queued without a process, which the runs table would show as interrupted and resume could not take."""
    worker.limit_malloc_arenas()  # Before TensorFlow starts its threads.
    console.import_tensorflow_quietly(arguments.verbose)


def _train(arguments: argparse.Namespace, run: store.Run, runs_dir, is_chief: bool = True) -> int:
    """Trains a queued run in this process (TensorFlow started: `_start_tensorflow`), with progress on standard
    error; prints its results."""
    print(
        f"Run: {run.path}" if is_chief else f"Worker run (scratch, removed at the end): {run.path}",
        file=sys.stderr,
        flush=True,
    )
    display = progress.for_stream(sys.stderr, plain=arguments.json)

    def report_at_once(status: dict) -> None:
        # From the second Ctrl+C's signal handler: straight to the descriptor (see execute_at_terminal).
        os.write(sys.stdout.fileno(), _train_report(arguments, run, status, is_chief).encode(errors="replace"))

    try:
        status, exit_code = worker.execute_at_terminal(
            run, runs_dir=runs_dir, stream=sys.stderr, display=display, report=report_at_once
        )
    finally:
        display.close()
    sys.stdout.write(_train_report(arguments, run, status, is_chief))
    return exit_code


def _train_report(arguments: argparse.Namespace, run: store.Run, status: dict, is_chief: bool) -> str:
    """What `train` prints at its end: the run's state and each stage's results, or that as JSON."""
    full_results = status.get("results") or {}
    results = {
        stage: {key: result.get(key) for key in ("val_accuracy", "val_loss", "best_val_accuracy", "epochs", "seconds")}
        for stage, result in full_results.items()
    }
    if arguments.json:
        summary = run.summary()
        report = {
            # The run folder; None for a multi-worker run's other workers, whose scratch folder is removed.
            "run": str(run.path) if is_chief else None,
            "chief": is_chief,
            "status": status["state"],
            "error": status.get("error"),
            "results": results,
            "stage_steps": [
                dataclasses.asdict(step)
                for step in stage_steps.stage_steps(full_results, stage_steps.validation_images(run))
            ],
            "replicas": summary.get("replicas"),
            "global_batch_size": summary.get("global_batch_size"),
        }
        return json.dumps(report) + "\n"
    name = f"Run {run.id}" if is_chief else "This worker (the chief keeps the run)"
    lines = [f"{name}: {status['state']}" + (f" ({status['error']})" if status.get("error") else "")]
    for stage, result in results.items():
        accuracy = result["val_accuracy"]
        loss = result["val_loss"]
        lines.append(
            f"  {stage}: val_accuracy={accuracy if accuracy is None else round(accuracy, 4)} "
            f"val_loss={loss if loss is None else round(loss, 4)} ({result['seconds']:.0f} s)"
        )
    if is_chief:
        lines += [f"  {line}" for line in stage_steps.for_run(run, full_results, status["state"])]
    return "".join(line + "\n" for line in lines)


def command_lr_find(arguments: argparse.Namespace) -> int:
    try:
        config = config_module.from_preset(arguments.preset, **cli_flags.settings_from(arguments))
        runs_dir = arguments.runs_dir or store.default_runs_dir()
        job = finder_jobs.create(config, runs_dir, start=arguments.start, end=arguments.end, steps=arguments.steps)
    except ValueError as error:
        return report_error(arguments, cli_flags.in_flag_words(str(error)))
    worker.limit_malloc_arenas()  # Before TensorFlow starts its threads.
    console.import_tensorflow_quietly(arguments.verbose)
    # This command is a process of its own, so the job runs here, as `train` runs its run (same lock, same folder).
    status = finder_jobs.execute(job, runs_dir)
    sweep = finder_jobs.sweep_of(job)
    if sweep is None:
        why = status.get("error") or f"the sweep ended {status['state']}"
        return report_error(arguments, why, 2 if status.get("bad_input") else 1)
    if arguments.json:
        print_json(sweep.to_json())
    else:
        for rate, loss in zip(
            sweep.learning_rates[:: max(1, len(sweep.learning_rates) // 20)],
            sweep.losses[:: max(1, len(sweep.losses) // 20)],
        ):
            print(f"  learning rate {rate:9.2e}  loss {loss:.4f}")
        print(f"Suggested learning rate for the head: {sweep.suggestion:.2e}")
    return 0


def command_worker(arguments: argparse.Namespace) -> int:

    if not (Path(arguments.run_folder) / "config.json").is_file():  # Started by hand on a wrong path.
        print(f"error: {arguments.run_folder}: not a run folder (no config.json).", file=sys.stderr)
        return 2
    run = store.Run(Path(arguments.run_folder))
    # A lower priority than the dashboard that launched it: pages stay responsive while it trains.
    worker.lower_priority()
    worker.limit_malloc_arenas()
    if arguments.job == "lr-find":
        status = finder_jobs.execute(run, arguments.runs_dir or run.path.parent.parent)
    else:
        status = worker.execute(run, runs_dir=arguments.runs_dir, stream=sys.stdout)
    return 0 if status["state"] in store.ENDED_STATES else 1


def command_runs(arguments: argparse.Namespace) -> int:

    rows = [catalog.describe(run) for run in store.list_runs(arguments.runs_dir)]
    if arguments.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"No runs in {arguments.runs_dir or store.default_runs_dir()}.")
        return 0

    def value(number: float | None) -> str:
        return "-" if number is None else f"{number:.4f}"

    def text(cell) -> str:
        return "-" if cell is None else str(cell)  # A half-written run folder has no strategy, backbone ...

    # Columns as wide as their longest cell: run ids differ in length with their strategy and backbone.
    widths = {key: max(len(text(row[key])) for row in rows) for key in ("run", "state", "strategy", "model")}
    for row in rows:
        # The model's own accuracy beside the best of any epoch: after 1 -> 2 -> 3 they can differ.
        columns = "  ".join(text(row[key]).ljust(width) for key, width in widths.items())
        print(
            f"{columns}  {text(row['image_size'])} px  epochs={row['epochs']}  "
            f"best_val_accuracy={value(row['best_val_accuracy'])}  "
            f"model_val_accuracy={value(row['model_val_accuracy'])}"
            + (f" (the model of {row['model_stage']})" if row["model_stage"] else "")
        )
    return 0


def command_stop(arguments: argparse.Namespace) -> int:

    try:
        run = store.resolve(arguments.run, arguments.runs_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = run.state
    if state in store.FINAL_STATES:
        print(f"Run {run.id} already ended ({state}).")
        return 0
    run.request_stop()
    print(f"Asked run {run.id} to stop; it ends after its current batch.")
    return 0
