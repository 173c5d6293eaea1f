"""What the app says about runs and does to them: headline accuracy, best stage, names, deletion.

The headline of a run is its saved model's validation accuracy: the weights in model.keras, which
Predict and the exports use. For 1 -> 2 -> 3 that is the last stage's, which can be below an
earlier stage's best; the best stage is named beside it, never in its place. No Streamlit here.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from tlcore import files, wording
from tlcore.augmentation_settings import AugmentationConfig
from tlcore.config import STRATEGIES, TrainConfig
from tlcore.runs import monitor, resumption, saved_model, store
from tlcore.settings import settings_of

# The file of a run's name, given by a person; the id stays what the CLI and the folder use.
LABEL_FILE = "label.json"
LABEL_MAX_CHARACTERS = 80
# A value that is not there (a queued run's accuracy, a running run's time), as every table shows it.
MISSING = "—"
# Settings the compare table has columns of its own for (or, the data set, names).
OWN_COLUMNS = ("data_dir", "strategy", "backbone", "image_size")


def percent(value: float | None) -> str:
    """'87.5%', the one accuracy format of the app's tables; MISSING for no value."""
    return MISSING if value is None else f"{value:.1%}"


def strategy_title(strategy: str | None) -> str:
    """A strategy as people read it ("1 · Feature extraction"); an unknown key as it is."""
    return STRATEGIES[strategy].title if strategy in STRATEGIES else str(strategy or MISSING)


def best_stage(summary: dict) -> tuple[str, float] | None:
    """(stage, its best validation accuracy) of the stage that peaked highest, from a run's summary.

    Returns:
        None for a run without stage results (queued, running, failed before its first stage ended).
    """
    results = summary.get("results")
    if not isinstance(results, dict):
        return None
    peaks = [
        (stage, float(result["best_val_accuracy"]))
        for stage, result in results.items()
        if isinstance(result, dict) and isinstance(result.get("best_val_accuracy"), (int, float))
    ]
    return max(peaks, key=lambda peak: peak[1]) if peaks else None


def describe(run: store.Run) -> dict:
    """store.describe's row plus the headline: "accuracy" (the saved model's), "best_stage" and its accuracy.

    The saved model's record (`saved_model.stage_record`), written with the file, gives its accuracy over
    the summary's (which can be older: a stopped run resumed, then cut short) and, for a run that did not end
    done, the stage it holds as "model_stage" (None otherwise). A run cut short finds its best stage among the
    stages it finished (it has no summary of its own).

    "best_stage" is named only when the run trained more than one stage: a single stage's best is
    its own epoch, already on its curves.
    """
    row = store.describe(run)
    row["label"] = label(run)
    row["changed"] = changed_settings(run.config())
    row["model_stage"] = None
    saved = saved_model.stage_record(run) if row["state"] not in store.ACTIVE_STATES else None
    if saved is not None:
        row["model_val_accuracy"] = saved["val_accuracy"]
        if row["state"] != "done":  # Stopped or cut short: the model may be of a stage before the strategy's last.
            row["model_stage"] = saved["stage"]
    finished = resumption.finished_stages(run) if row["state"] in store.CUT_SHORT_STATES else {}
    summary = {"results": finished} if finished else run.summary()
    peak = best_stage(summary)
    several = isinstance(summary.get("results"), dict) and len(summary["results"]) > 1
    row["accuracy"] = row["model_val_accuracy"]
    row["best_stage"] = peak[0] if peak and several else None
    row["best_stage_accuracy"] = peak[1] if peak and several else None
    return row


def changed_settings(config: dict) -> str:
    """'epochs 3, learning rate 0.002, augmented views 0, rotation degrees 25': the settings of a run's
    config that differ from TrainConfig's (the default preset's), so that runs alike in the other columns are
    told apart; '' when none differs. A setting its config lacks (written before it existed) is left out."""
    changes = _changes(TrainConfig, config, skip=OWN_COLUMNS)
    augmentation = config.get("augmentation")
    if isinstance(augmentation, dict):
        changes += _changes(AugmentationConfig, augmentation)
    return ", ".join(changes)


def _changes(config_class: type, values: dict, skip: tuple[str, ...] = ()) -> list[str]:
    changes = []
    for field in settings_of(config_class):
        if field.name in skip or field.name not in values or field.default is dataclasses.MISSING:
            continue
        value = values[field.name]
        if value != field.default:
            changes.append(f"{field.name.replace('_', ' ')} {wording.setting_value(value)}")
    return changes


def best_stage_text(row: dict) -> str:
    """'91.2% in 1 · Feature extraction' for a run of several stages (a `describe` row); else MISSING."""
    if row.get("best_stage") is None:
        return MISSING
    return f"{percent(row['best_stage_accuracy'])} in {strategy_title(row['best_stage'])}"


def best_finished(rows: list[dict]) -> str | None:
    """The run to predict with by default: the done run whose saved model is most accurate.

    A stopped run (a model cut short) or one without a measured accuracy comes after every done run
    with one; among equals, the first of `rows` (list_runs gives the newest first).

    Args:
        rows: `describe` rows of the runs that have a model.

    Returns:
        The run id, or None when `rows` is empty.
    """
    if not rows:
        return None

    def rank(row: dict) -> tuple[bool, float]:
        accuracy = row.get("accuracy")
        return row.get("state") == "done" and accuracy is not None, -1.0 if accuracy is None else accuracy

    return max(rows, key=rank)["run"]


def compare_row(row: dict, data_name: str | None = None) -> dict:
    """A `describe` row as the compare table shows it: accuracy and time first, then what the run was.

    `data_name` names its data set (the app passes the library's name); default the folder's name.

    Every cell is text in the app's one format (percent to 0.1%, MISSING for no value), so a narrow
    screen sees the headline without scrolling and a queued run reads "—", not "None".
    """
    seconds = row.get("seconds")
    data_dir = row.get("data_dir")
    return {
        "val. accuracy": percent(row.get("accuracy")),
        "best stage": best_stage_text(row),
        "time": MISSING if not isinstance(seconds, (int, float)) else monitor.format_seconds(seconds),
        # What tells runs apart comes next: the name given, then strategy, model and data set.
        "name": row.get("label") or "",
        "strategy": strategy_title(row.get("strategy")),
        "model": row.get("model") or MISSING,
        "data set": data_name or (Path(data_dir).name if isinstance(data_dir, str) and data_dir else MISSING),
        "state": row.get("state") or MISSING,
        "size (px)": MISSING if row.get("image_size") is None else str(row["image_size"]),
        "epochs": str(row.get("epochs") or 0),
        "settings changed": row.get("changed") or "",
        "run": row["run"],
    }


def label(run: store.Run) -> str | None:
    """The name a person gave the run (`rename`), or None."""
    value = files.read_json(run.path / LABEL_FILE, {})
    text = value.get("label") if isinstance(value, dict) else None
    return text if isinstance(text, str) and text else None


def rename(run: store.Run, text: str) -> str | None:
    """Names a run (stored in its folder beside the id, which stays); an empty name removes the name.

    Args:
        run: the run.
        text: the name; surrounding spaces and line breaks go, and it is cut to LABEL_MAX_CHARACTERS.

    Returns:
        The name stored, or None when it was removed.

    Raises:
        ValueError: the run was deleted meanwhile (its folder is not made again for the name).
    """
    if not (run.path / "config.json").is_file():
        raise ValueError(f"Run {run.id} no longer exists: it was deleted.")
    name = " ".join(str(text).split())[:LABEL_MAX_CHARACTERS]
    if not name:
        (run.path / LABEL_FILE).unlink(missing_ok=True)
        return None
    try:
        files.write_atomic(run.path / LABEL_FILE, files.json_text({"label": name}), make_folders=False)
    except FileNotFoundError:  # Deleted between the check and the write.
        raise ValueError(f"Run {run.id} no longer exists: it was deleted.") from None
    return name


def delete(run: store.Run) -> None:
    """Removes a run's folder (model, metrics, logs). The runs folder's shared caches stay for other runs.

    Raises:
        ValueError: the run is queued, running or stopping: its worker still writes the folder.
    """
    state = run.state
    if state in store.ACTIVE_STATES:  # Its worker may still write the folder: stopped before it is deleted.
        raise ValueError(f"Run {run.id} is {state}: stop it and wait for it to end before deleting it.")
    shutil.rmtree(run.path)


def same_folder(first, second) -> bool:
    """Whether two paths name one folder (a run's data_dir and a data set's root, say).

    Anything but a non-empty path (None, a damaged config.json's number) names no folder: False.
    """
    if not isinstance(first, (str, os.PathLike)) or not isinstance(second, (str, os.PathLike)):
        return False
    if not first or not second:
        return False
    try:
        return Path(first).resolve() == Path(second).resolve()
    except OSError:
        return first == second


def _parameter_count(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else MISSING


def transfer_rows(runs: list[store.Run], data_dir: str) -> tuple[list[dict], bool]:
    """What transfer bought on one data set: its finished runs beside the scratch baseline.

    One row per done run trained on `data_dir`, the most accurate saved model first: strategy,
    model, the saved model's validation accuracy, its difference to the best scratch run's (in
    percentage points), the parameters it trained and kept frozen, and its time.

    Args:
        runs: the runs to look through (`store.list_runs`).
        data_dir: the data set's folder; runs of other folders are left out.

    Returns:
        (rows, whether a scratch baseline is among them: without one the difference column is MISSING).
    """
    described = []
    for run in runs:
        if same_folder(run.config().get("data_dir"), data_dir) and run.state == "done":
            row = describe(run)
            if row["accuracy"] is not None:
                described.append((row, run.summary().get("parameters") or {}))
    scratch = [row["accuracy"] for row, _ in described if row["strategy"] == "scratch"]
    baseline = max(scratch) if scratch else None
    described.sort(key=lambda item: -item[0]["accuracy"])
    rows = []
    for row, parameters in described:
        seconds = row.get("seconds")
        rows.append(
            {
                "strategy": strategy_title(row["strategy"]),
                "model": row["model"] or MISSING,
                "val. accuracy": percent(row["accuracy"]),
                "vs scratch": MISSING if baseline is None else f"{(row['accuracy'] - baseline) * 100:+.1f} points",
                "trained parameters": _parameter_count(parameters.get("trainable")),
                "frozen parameters": _parameter_count(parameters.get("frozen")),
                "time": MISSING if not isinstance(seconds, (int, float)) else monitor.format_seconds(seconds),
                "run": row["run"],
            }
        )
    return rows, baseline is not None


def missing_baseline_note(runs: list[store.Run], data_dir: str) -> str | None:
    """Why a data set has no scratch baseline to compare with, or None when a finished one is there.

    A baseline that was stopped, failed or is still training is named with its state: "no baseline yet" would send
    the person to train a second one.

    Args:
        runs: the runs to look through (`store.list_runs`, newest first).
        data_dir: the data set's folder.
    """
    unfinished, training = [], []
    for run in runs:
        config = run.config()
        if config.get("strategy") != "scratch" or not same_folder(config.get("data_dir"), data_dir):
            continue
        state = run.state
        if state == "done" and describe(run)["accuracy"] is not None:  # What transfer_rows compares with.
            return None
        if state in ("queued", "running"):
            training.append(f"{run.id} is {state}")
        else:  # Stopped or stopping, failed, interrupted, or done without a recorded accuracy.
            unfinished.append(f"{run.id} is {state}" if state != "done" else f"{run.id} recorded no accuracy")
    if training:
        return f"The scratch baseline is not finished yet ({training[0]}): it is compared here once it is done."
    if not unfinished:
        return "No scratch baseline on this data set yet: train one to compare."
    advice = "resume or retrain it to compare" if len(unfinished) == 1 else "resume or retrain one to compare"
    return f"No finished scratch baseline on this data set ({', '.join(unfinished[:3])}): {advice}."
