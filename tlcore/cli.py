"""The command-line interface: the same functions the dashboard calls, for headless use.

python -m tlcore scan DIR [--json]
python -m tlcore train --data DIR [--strategy ...] [--backbone ...] [...] [--json]
python -m tlcore train --resume RUN [--json]
python -m tlcore lr-find --data DIR [--backbone ...] [...] [--json]
python -m tlcore predict --run RUN IMAGE_OR_FOLDER_OR_ZIP... [--top N] [--csv OUT.csv] [--json]
python -m tlcore evaluate --run RUN [--split validation|test] [--json]
python -m tlcore export --run RUN --format {keras,savedmodel,tflite,tflite-int8} [--output PATH] [--json]
python -m tlcore runs [--json]
python -m tlcore stop RUN
python -m tlcore explore --data DIR [--backbone ...] [--image-size N] [--threshold T] [--json]
python -m tlcore suggest --data DIR [--backbone ...] [--image-size N] [--per-class N] [--seed N] [--json]
python -m tlcore --version

This module builds the parser; the `train` and `lr-find` settings flags come from TrainConfig's field
metadata (`tlcore.cli_flags`), and what each command does is in `tlcore.cli_commands` (`tlcore.cli_serving`
for predict, evaluate and export; `tlcore.cli_insight` builds and runs explore and suggest).
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from typing import Callable, Sequence

import tlcore
from tlcore import cli_commands, cli_flags, cli_insight, cli_serving, console
from tlcore.serving.export import FORMATS
from tlcore.serving.export import rule_in_words as export_rule_in_words

# The settings `lr-find` needs: what builds the frozen base and the head, and what the sweep trains with.
LR_FIND_SETTINGS = (
    "data_dir",
    "backbone",
    "weights",
    "alpha",
    "image_size",
    "batch_size",
    "head",
    "dense_units",
    "dropout",
    "optimizer",
    "validation_fraction",
    "split_seed",
    "seed",
)


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run id (folder name in the runs folder) or its path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tlcore",
        description="Transfer Learning Studio from the command line: scan a data set, train with the "
        "three transfer-learning strategies, predict, and manage runs.",
    )
    parser.add_argument("--version", action="version", version=f"tlcore {tlcore.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        help="report the classes, images per split and class, and rejected files of a data set",
        description="Scan a data set folder: either train/<class>/ + validation/<class>/ (+ test/), "
        "or one folder of <class>/ subfolders that is split per class with a seed. Every image is "
        "decoded once; files that cannot be used are listed with their reason.",
    )
    scan.add_argument("folder", help="the data set folder")
    cli_flags.add_split(scan)
    scan.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with classes, splits (split -> class -> count) and rejected",
    )
    scan.set_defaults(handler=cli_commands.command_scan)

    train = commands.add_parser(
        "train",
        help="train a model with one of the strategies (or all three in sequence)",
        description="Train on a data set folder and record everything in a new run folder (or continue an "
        "interrupted or stopped run with --resume RUN). Flags not "
        "given take the preset's value: 'default' (EfficientNet-Lite0, 160 px, pooled head, CPU friendly), "
        "'quality' (EfficientNet-Lite1 at 240 px, left-right flips its only augmentation: slower, more accurate) "
        "or 'seed' (the classic notebook: VGG16, 150 px, Flatten + Dense 256, RMSprop 2e-5 / 1e-5, 30 + 30 "
        "epochs). Progress goes to standard error; at the end each stage's result, and what each stage added to "
        "the one before it, go to standard output.",
    )
    cli_flags.add_preset_flag(train)
    # --data is not needed with --resume, which takes the run's own: command_train checks it.
    cli_flags.add_setting_flags(train, optional={"data_dir": "required unless --resume is given"})
    train.add_argument(
        "--end-to-end",
        dest="augmented_views",
        action="store_const",
        const=0,
        help="train frozen_augmented and fine_tuning end to end, augmenting every epoch anew "
        "(exact but much slower; same as --augmented-views 0)",
    )
    train.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted or stopped run (id or folder) from the last finished epoch of the stage "
        "it was in, with its own settings; finished stages are not trained again",
    )
    cli_flags.add_runs_dir(train)
    train.add_argument(
        "--json",
        action="store_true",
        help="end with one JSON line: run, chief, status, error, results (stage -> val_accuracy, val_loss, "
        "best_val_accuracy, epochs, seconds), stage_steps (what each stage added to the one before it), "
        "replicas and global_batch_size",
    )
    train.set_defaults(handler=cli_commands.command_train)

    predict = commands.add_parser(
        "predict",
        help="top-N labels of images with a trained run's model",
        description="Predict images with a run's model. A file that cannot be read gets its reason; the "
        "others are still predicted (exit status 1 when any failed, or a folder or zip held no file). Images of "
        "a folder or zip argument that lie in folders named after the model's classes (a held-out set sorted by "
        "class; the folder given counts) are scored against them: a last line gives how many were predicted as "
        "their folder's class, in all and per class (not with --json).",
    )
    _add_run(predict)
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_FOLDER_OR_ZIP",
        help="image files; folders (searched recursively) and .zip archives expand to their images",
    )
    predict.add_argument("--top", type=cli_flags.whole_number(1), default=3, help="labels per image (default 3)")
    predict.add_argument(
        "--csv",
        metavar="OUT.csv",
        default=None,
        help="also write a CSV: file, top_label, probability, top_k (label:prob;...), error",
    )
    cli_flags.add_runs_dir(predict)
    predict.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list of {image, top: [{label, probability}]} or {image, error}",
    )
    predict.set_defaults(handler=cli_serving.command_predict)

    finder = commands.add_parser(
        "lr-find",
        help="sweep the head's learning rate and suggest one",
        description="Train the head on cached features for one short sweep while the learning rate grows "
        "from --start to --end; print loss against learning rate and the rate of steepest descent.",
    )
    cli_flags.add_preset_flag(finder)
    cli_flags.add_setting_flags(finder, LR_FIND_SETTINGS)
    finder.add_argument("--start", type=float, default=1e-6, help="first learning rate (default %(default)g)")
    finder.add_argument("--end", type=float, default=1.0, help="last learning rate (default %(default)g)")
    finder.add_argument("--steps", type=int, default=100, help="training steps of the sweep (default %(default)s)")
    cli_flags.add_runs_dir(finder)
    finder.add_argument("--json", action="store_true", help="print learning_rates, losses and suggestion as JSON")
    finder.set_defaults(handler=cli_commands.command_lr_find)

    evaluation = commands.add_parser(
        "evaluate",
        help="confusion matrix, per-class precision/recall/F1 and the worst mistakes of a run",
        description="Evaluate a run's model on the validation split training used (the split the run recorded "
        "in its dataset.json while the files are unchanged, else the data set scanned again with the run's "
        "validation fraction and split seed), or on the data set's test/ split. The result "
        "is cached in the run folder as evaluation-<split>.json until the model changes.",
    )
    _add_run(evaluation)
    evaluation.add_argument(
        "--split",
        choices=("validation", "test"),
        default="validation",
        help="validation (default) or test (needs a test/ folder in the data set)",
    )
    evaluation.add_argument(
        "--mistakes", type=cli_flags.whole_number(0), default=10, help="mistakes to list (default 10)"
    )
    cli_flags.add_runs_dir(evaluation)
    evaluation.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: classes, confusion, normalised, per_class, accuracy, mistakes",
    )
    evaluation.set_defaults(handler=cli_serving.command_evaluate)

    exporting = commands.add_parser(
        "export",
        help="export a run's model (keras, savedmodel, tflite, tflite-int8), checked against the original",
        description="Export a run's model, load the export back and check it against the Keras model on the "
        f"run's validation images ({export_rule_in_words()}), else delete it. Written "
        "under <run>/exports/ unless --output is given. SavedModel and TFLite exports leave out the "
        "augmentation layers (inactive at inference).",
    )
    _add_run(exporting)
    exporting.add_argument("--format", required=True, choices=FORMATS, help="the export format")
    exporting.add_argument(
        "--output", default=None, metavar="PATH", help="where to write it (a new path; default <run>/exports/)"
    )
    cli_flags.add_runs_dir(exporting)
    exporting.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: path, format, labels_path, images, agreement, max_difference, "
        "required_agreement, keras_accuracy, accuracy, allowed_accuracy_drop, runtime",
    )
    exporting.set_defaults(handler=cli_serving.command_export)

    listing = commands.add_parser(
        "runs",
        description="List the runs, newest first.",
        help="list the runs with their status, the best validation accuracy of any epoch and that of the saved model",
    )
    cli_flags.add_runs_dir(listing)
    listing.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list of rows ('backbone' is a registry key, null for a scratch run; "
        "'model' names what was trained)",
    )
    listing.set_defaults(handler=cli_commands.command_runs)

    stop = commands.add_parser(
        "stop",
        help="ask a running run to stop",
        description="Ask a run to stop; it ends after its current batch, as "
        "'stopped', keeping its metrics and a usable model.",
    )
    stop.add_argument("run", help="run id or path")
    cli_flags.add_runs_dir(stop)
    stop.set_defaults(handler=cli_commands.command_stop)

    cli_insight.add_explore_parser(commands)
    cli_insight.add_suggest_parser(commands)
    for command in commands.choices.values():
        command.add_argument(
            "--verbose", action="store_true", help="also show TensorFlow's start-up and log lines on standard error"
        )
    return parser


def build_worker_parser() -> argparse.ArgumentParser:
    """The internal `worker` command the app launches; kept out of the public help."""
    worker = argparse.ArgumentParser(
        prog="python -m tlcore worker",
        description="Internal: train an existing run folder, or run a learning-rate find (used by the app).",
    )
    worker.add_argument("run_folder")
    cli_flags.add_runs_dir(worker)
    worker.add_argument(
        "--job", choices=("train", "lr-find"), default="train", help="train the run, or sweep a learning-rate find"
    )
    worker.set_defaults(handler=cli_commands.command_worker)
    return worker


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The process exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = console.format_warning
    # A file name that is not UTF-8 reaches Python with surrogates in place of its bytes (PEP 383); printed,
    # it failed the whole command under a UTF-8 locale's strict stdout. Written back as the bytes it was
    # (standard error already escapes what it cannot encode).
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    if argv[:1] == ["worker"]:
        arguments = build_worker_parser().parse_args(argv[1:])
    else:
        arguments = build_parser().parse_args(argv)
    return run_interruptibly(arguments.handler, arguments)


def run_interruptibly(handler: Callable[[argparse.Namespace], int], arguments: argparse.Namespace) -> int:
    """Runs a command; Ctrl+C ends it at once with a line and INTERRUPTED_EXIT_CODE, not a traceback.

    The command's temporaries are removed and what it finished stays (`tlcore.console.end_at_once`).
    `train` handles Ctrl+C itself while it trains: the first press stops the run after its batch
    (`tlcore.runs.worker.execute_at_terminal`).

    Args:
        handler: the command's function.
        arguments: its parsed arguments.

    Returns:
        The command's exit status (after Ctrl+C the process has ended).
    """

    def interrupt(signal_number, frame) -> None:
        console.end_at_once("Interrupted by Ctrl+C.")

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        return handler(arguments)
    finally:
        signal.signal(signal.SIGINT, previous)
