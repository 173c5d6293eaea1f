"""Training a run: the stages of a strategy in order, the run folder kept up to date, the model saved."""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import tensorflow as tf

from tlcore import framework_private, temporaries
from tlcore.config import TrainConfig, stages_for
from tlcore.data import cleaning
from tlcore.files import write_json
from tlcore.models import heads
from tlcore.runs import resumption, saved_model
from tlcore.training import augmented, distribute, extraction, resume, run_data, training_context

STAGES = {
    "feature_extraction": extraction.run_feature_extraction,
    "frozen_augmented": augmented.run_frozen_augmented,
    "fine_tuning": augmented.run_fine_tuning,
    "scratch": augmented.run_scratch,
}


def train(config: TrainConfig, run=None, stream=None, runs_dir=None, dataset=None, display=None) -> dict:
    """Trains every stage of a config's strategy; saves the final model into the run folder.

    Args:
        config: what to train.
        run: the `tlcore.runs.store.Run` receiving metrics, labels, summary and model (None: nothing saved).
        stream: a text stream for progress lines (the CLI), or None.
        runs_dir: the runs folder, whose `.cache` holds reusable features.
        dataset: an already scanned data set (scanned from `config.data_dir` when None, then cleaned by its
            saved decisions when `config.cleaned`, which the run records in `cleaning.json`).
        display: a `tlcore.progress.Display` for messages and bars (default: plain lines on `stream`).

    Returns:
        The summary: per stage its results, plus totals.
    """
    # First: splitting the CPU into logical devices must happen before TensorFlow starts up.
    strategy = distribute.strategy_for(config)
    set_determinism(not config.jit_compile)
    # A resumed run's time counts its earlier processes' too, in all and in the stage it continues.
    earlier, earlier_stages = resumption.earlier_seconds(run) if run is not None else (0.0, {})
    started = time.time() - earlier
    applied = None  # What a run on the cleaned view records of the decisions it applied.
    if dataset is None:
        dataset, applied = run_data.scan_for_run(config)
    context = training_context.TrainingContext(
        config=config,
        dataset=dataset,
        run=run,
        stream=stream,
        runs_dir=str(runs_dir) if runs_dir is not None else None,
        display=display,
        worker=distribute.shared_task(config),
    )
    if run is not None:
        run_data.check_classes(dataset, run.labels())  # Its labels are set when the run is resumed.
        write_json(run.path / "labels.json", list(dataset.classes))
        write_json(run.path / "dataset.json", dataset.to_json())
        if applied is not None:
            write_json(run.path / cleaning.RUN_FILE, applied)
    if applied is not None:
        context.say(cleaning.describe_applied(applied))
    context.say(
        f"Data: {dataset.root}: {dataset.num_classes} classes, "
        f"{len(dataset.paths('train'))} train / {len(dataset.paths('validation'))} validation images"
    )
    weights = context.class_weights()
    if weights is not None:
        context.say(
            "Classes are imbalanced: weighting the loss by class "
            + ", ".join(f"{dataset.classes[index]}={weight:.2f}" for index, weight in weights.items())
        )
    context.replicas = strategy.num_replicas_in_sync
    if context.replicas > 1:
        context.say(
            f"Training on {context.replicas} replicas ({type(strategy).__name__}): global batch "
            f"{context.batch_size}, learning rates x{distribute.scaled(config, context.replicas)[1]:g}"
        )
    if config.precision != "float32" or config.jit_compile:
        context.say(f"Precision {config.precision}, XLA {'on' if config.jit_compile else 'off'}")
    policy = keras.config.dtype_policy()
    try:
        # Layers take the policy when they are built: set it for this run only.
        keras.config.set_dtype_policy(config.precision)
        # Every model is built, compiled and trained inside the scope, so its variables are mirrored.
        with strategy.scope():
            stopped = _run_stages(context, earlier_stages)
        return _finish(context, run, started, stopped, earlier_stages)
    finally:
        keras.config.set_dtype_policy(policy)
        context.close()


def set_determinism(enabled: bool) -> None:
    """Same seed, same result on the CPU; off with XLA, whose GPU kernels are not all deterministic
    (TensorFlow refuses them under determinism) and which is asked for speed, not reproducibility."""
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        framework_private.disable_op_determinism()


def _run_stages(context: training_context.TrainingContext, earlier_stages: dict[str, float]) -> bool:
    """Trains the stages in order, each from its backup when the run is resumed; returns whether it was stopped.

    A stage that finished before the run was resumed is not trained again: its results are kept, and its
    final weights loaded when a later stage continues its model (fine-tuning, and frozen + augmentation
    with `continue_head`) or the final model is its. A stage an earlier process was cut short in counts that
    process's time on it too (`earlier_stages`, stage -> seconds).
    """
    run = context.run
    stages = stages_for(context.config.strategy)
    finished = resumption.finished_stages(run) if run is not None else {}
    for index, stage in enumerate(stages):
        if stage in finished:
            context.results[stage] = finished[stage]
            if stage == "frozen_augmented":
                context.frozen_epochs = finished[stage]["epochs"]
            following = stages[index + 1] if index + 1 < len(stages) else None
            if following in finished or following not in _continuing(context.config):
                continue  # Its model is not needed again.
            context.restoring = stage
        if context.any_worker_stops():
            return True
        if run is not None:
            run.set_status(run.raw_status().get("state", "running"), stage=stage)
        context.say(f"[{stage}] " + _starting(run, stage, context.restoring == stage))
        try:
            result = STAGES[stage](context)
        except training_context.StageStopped:
            return True
        if context.restoring == stage:
            context.restoring = None
            continue
        if stage in earlier_stages and isinstance(result.get("seconds"), (int, float)):
            result["seconds"] += earlier_stages[stage]
        context.results[stage] = result
        if stage == "frozen_augmented":
            context.frozen_epochs = result["epochs"]
        if result["stopped"]:
            return True
        if run is not None:
            resume.finish_stage(run, stage, context.fitted, result)
            if index + 1 < len(stages) and context.model is not None:
                _save_stage_model(context, run, stage, result)
    return False


def _save_stage_model(context: training_context.TrainingContext, run, stage: str, result: dict) -> None:
    """Saves the model of a stage before the last (the end saves the final one), so that a run cut short later
    keeps it (`tlcore.runs.saved_model`). Failing to write it costs only that: the run trains on and says why."""
    try:
        save_model(context.model, run.model_path)
        saved_model.record(run, stage, result.get("val_accuracy"))
    except OSError as error:
        context.say(f"[{stage}] its model was not saved for a run cut short later ({error}); training goes on")


def _continuing(config) -> tuple:
    """The stages that start from the model of the stage before them (None: the final model is its)."""
    return (None, "fine_tuning", "frozen_augmented") if config.continue_head else (None, "fine_tuning")


def _starting(run, stage: str, restoring: bool) -> str:
    """What the progress says as a stage begins: starting, resuming from an epoch, or restoring it."""
    if restoring:
        return "finished before the run was resumed: restoring its weights"
    epochs = resumption.backed_up_epochs(run, stage) if run is not None else 0
    return f"resuming after epoch {epochs}" if epochs else "starting"


def _finish(
    context: training_context.TrainingContext, run, started: float, stopped: bool, earlier_stages: dict[str, float]
) -> dict:
    """Writes the summary and the final model (also of a stopped run) into the run folder.

    `earlier_stages` (stage -> seconds of earlier processes) of a stage this process stopped before it had a
    result go into the summary too, for the next resume to count (`resumption.earlier_seconds`)."""
    summary = {
        "results": context.results,
        "seed": context.config.seed,
        "class_weight": context.class_weights(),
        "seconds": time.time() - started,
        "stopped": stopped,
        "classes": list(context.dataset.classes),
        "final_stage": next(reversed(context.results), None),
        "replicas": context.replicas,
        "global_batch_size": context.batch_size,
        "precision": context.config.precision,
        "jit_compile": context.config.jit_compile,
        "earlier_stage_seconds": {
            stage: seconds for stage, seconds in earlier_stages.items() if stage not in context.results
        },
    }
    if run is not None:
        if context.model is not None:
            save_model(context.model, run.model_path)
            final = summary["final_stage"]
            if final is not None:
                result = context.results[final]
                saved_model.record(run, final, result.get("val_accuracy"), finished=not result.get("stopped"))
            summary["parameters"] = heads.count_parameters(context.model)
        write_json(run.path / "summary.json", summary)
    return summary


def save_model(model: keras.Model, path) -> None:
    """Saves a `.keras` file atomically (Keras needs the suffix, so the temporary name keeps it)."""

    path = Path(path)
    temporary = path.with_name(f".partial-{os.getpid()}-{path.name}")
    with temporaries.being_written(temporary):
        model.save(temporary)
        os.replace(temporary, path)
