"""The commands that read a data set through a pretrained base: `explore` and `suggest`, parsers and actions.

python -m tlcore explore --data DIR [--backbone ...] [--image-size N] [--threshold T] [--json]
python -m tlcore suggest --data DIR [--backbone ...] [--image-size N] [--per-class N] [--seed N]
    [--validation-fraction F] [--split-seed N] [--runs-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import sys

from tlcore import cli_commands, cli_flags, console
from tlcore.data import folders
from tlcore.data.dataset import DatasetError
from tlcore.data.images import InvalidImageError
from tlcore.insight import explore, feature_levels, orientation
from tlcore.models.registry import BACKBONES
from tlcore.runs import store


def _add_data_and_backbone(parser: argparse.ArgumentParser) -> None:
    """--data, --backbone and --image-size of the commands that read a data set through a pretrained base."""
    parser.add_argument("--data", required=True, help="the data set folder")
    parser.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default=explore.DEFAULT_BACKBONE,
        help=f"the pretrained base (default {explore.DEFAULT_BACKBONE})",
    )
    parser.add_argument(
        "--image-size",
        type=cli_flags.whole_number(*cli_flags.IMAGE_SIZE_BOUNDS),
        default=explore.DEFAULT_IMAGE_SIZE,
        help=f"input side in pixels (default {explore.DEFAULT_IMAGE_SIZE})",
    )


def add_explore_parser(commands) -> None:
    """Registers `explore` (kept in one function, apart from the other commands)."""

    exploring = commands.add_parser(
        "explore",
        help="map a data set, find near-duplicates and leaks between splits or classes, and likely wrong labels",
        description="Explore a data set from a pretrained backbone's pooled features (kept in the runs folder's "
        "feature cache): a 2-D map of every image (principal components), the pairs of images at least "
        "--threshold alike (a leak when they join train to validation/test, or two classes), and the likely "
        "wrong labels (confident learning on out-of-fold probabilities) with a suggested class.",
    )
    _add_data_and_backbone(exploring)
    exploring.add_argument(
        "--threshold",
        type=float,
        default=explore.DEFAULT_THRESHOLD,
        help=f"cosine similarity from which two images are near-duplicates (default {explore.DEFAULT_THRESHOLD})",
    )
    cli_flags.add_split(exploring)
    exploring.add_argument(
        "--top", type=cli_flags.whole_number(0), default=10, help="pairs and suspects listed in the summary (10)"
    )
    cli_flags.add_runs_dir(exploring)
    exploring.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"map": [{path, label, split, x, y}], "duplicates": [{a, b, similarity, '
        'leak}], "suspects": [{path, label, suggested, score}]}',
    )
    exploring.set_defaults(handler=command_explore)


def add_suggest_parser(commands) -> None:
    """Registers `suggest`: the settings that depend on the data, measured on a data set's photos."""
    suggesting = commands.add_parser(
        "suggest",
        help="measure which flips and feature levels suit a data set's photos, and print the train flags that follow",
        description="Flips: for each flip, train a logistic regression on a pretrained backbone's features to tell "
        "flipped copies of a sample of the training photos from the originals, scored out of fold. A flip "
        f"is suggested when that accuracy stays under {orientation.TELLING_APART_LIMIT:.0%} (50% is chance): "
        "flipped copies then look like more photos of the set. Feature levels (backbones with stages to stack, "
        "the EfficientNets): classify every training photo out of fold from the base's output alone and from "
        "its last stages stacked (logistic regressions, the same folds); the stack is suggested when it is "
        "right on more photos than chance explains (McNemar's exact test, one-sided, 5%). The features are kept "
        "in the runs folder's feature cache: a run with the suggested levels and the same split reuses them "
        "(at float32 precision, without --cleaned).",
    )
    _add_data_and_backbone(suggesting)
    suggesting.add_argument(
        "--per-class",
        type=int,
        default=orientation.DEFAULT_PER_CLASS,
        help=f"training photos sampled per class for the flips (default {orientation.DEFAULT_PER_CLASS}); the "
        "feature levels are measured on every training photo",
    )
    suggesting.add_argument("--seed", type=int, default=1337, help="seed of the sample and the folds (default 1337)")
    # The split the run will train on: the check scores its training photos only, and a run reuses its features.
    cli_flags.add_split(suggesting, seed_alias=False)
    cli_flags.add_runs_dir(suggesting)
    suggesting.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"flips": [{setting, suggested, accuracy, images, reason}], "feature_levels": '
        "{levels, stacked_levels, single_accuracy, stacked_accuracy, only_stacked, only_single, images, reason} "
        '(null for a backbone without stages to stack), "flags": [...]}',
    )
    suggesting.set_defaults(handler=command_suggest)


def command_explore(arguments: argparse.Namespace) -> int:

    try:
        settings = explore.ExploreSettings(
            backbone=arguments.backbone, image_size=arguments.image_size, threshold=arguments.threshold
        )
        dataset = folders.scan(
            arguments.data, validation_fraction=arguments.validation_fraction, seed=arguments.split_seed
        )
    except (DatasetError, ValueError) as error:
        return cli_commands.report_error(arguments, error)
    runs_dir = arguments.runs_dir or store.default_runs_dir()
    console.import_tensorflow_quietly(arguments.verbose)
    exploration = explore.explore(dataset, settings, runs_dir=runs_dir, stream=sys.stderr)
    if arguments.json:
        cli_commands.print_json(exploration.to_json())
    else:
        print(explore.summary(exploration, top=arguments.top))
    return 0


def command_suggest(arguments: argparse.Namespace) -> int:
    console.import_tensorflow_quietly(arguments.verbose)
    runs_dir = arguments.runs_dir or store.default_runs_dir()
    try:
        dataset = folders.scan(
            arguments.data, validation_fraction=arguments.validation_fraction, seed=arguments.split_seed
        )
        suggestions = orientation.suggest_flips(
            dataset, arguments.backbone, arguments.image_size, arguments.per_class, arguments.seed
        )
        levels = None
        if BACKBONES[arguments.backbone].max_feature_levels > 1:
            levels = feature_levels.suggest_feature_levels(
                dataset, arguments.backbone, arguments.image_size, arguments.seed, runs_dir, sys.stderr
            )
    except (DatasetError, ValueError, InvalidImageError) as error:  # A photo changed since the scan: named.
        return cli_commands.report_error(arguments, error)
    flags = [orientation.train_flag(suggestion) for suggestion in suggestions]
    if levels is not None and levels.levels > 1:  # 1 is the default: no flag needed.
        flags.append(levels.train_flag())
    if arguments.json:
        cli_commands.print_json(
            {
                "flips": [vars(suggestion) for suggestion in suggestions],
                "feature_levels": None if levels is None else vars(levels),
                "flags": flags,
            }
        )
        return 0
    for suggestion in suggestions:
        print(f"{suggestion.setting.replace('_', ' ')}: {suggestion.reason}")
    if levels is None:
        print(f"feature levels: 1 ({BACKBONES[arguments.backbone].display_name} registers no stages to stack).")
    else:
        print(f"feature levels: {levels.reason}")
    print("Train with: " + " ".join(flags))
    return 0
