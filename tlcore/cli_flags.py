"""The `train` and `lr-find` flags, generated from the settings' metadata (see `tlcore.settings`).

One flag per setting of TrainConfig, and per setting of a nested config (AugmentationConfig); a field
added to TrainConfig becomes a flag without a change here. Every flag defaults to None, "not given", so
that `config.from_preset` can tell a preset's value from an explicit one. Also the flags several commands
share: --runs-dir and the split of a scanned data set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Callable, Iterable

from tlcore import wording
from tlcore.config import PRESET_DESCRIPTIONS, PRESETS, TrainConfig
from tlcore.settings import setting_type, settings_of

# Titles of the flag groups a setting's metadata "group" names (a nested config's flags group under its field).
GROUP_TITLES = {
    "augmentation": "augmentation (frozen_augmented, fine_tuning, scratch)",
    "devices": "devices (tf.distribute; see README, Scaling up)",
    "speed": "speed on a GPU (see README, Speed)",
}


def flag_name(setting: dataclasses.Field) -> str:
    """The setting's flag: its metadata's "flag", else --field-name."""
    return setting.metadata.get("flag") or "--" + setting.name.replace("_", "-")


def default_text(setting: dataclasses.Field, presets: dict[str, dict[str, Any]]) -> str:
    """'default 32; seed preset: 64': the field's default, then each preset that changes it."""
    parts = [f"default {wording.setting_value(setting.default)}"]
    for preset, values in presets.items():
        if setting.name in values and values[setting.name] != setting.default:
            parts.append(f"{preset} preset: {wording.setting_value(values[setting.name])}")
    return "; ".join(parts)


def nested_configs(config_class: type) -> dict[str, type]:
    """Fields holding a config of their own (TrainConfig.augmentation): field name -> config class."""
    return {
        item.name: item.default_factory
        for item in dataclasses.fields(config_class)
        if item.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(item.default_factory)
    }


def add_setting(
    parser, setting: dataclasses.Field, dest: str, presets: dict[str, dict[str, Any]], optional: str | None = None
) -> None:
    """Adds the setting's flag to a parser or flag group: its type or switch, choices, help and default.

    A setting without a default is a required flag, unless `optional` says when it is needed (in its help).
    """
    options: dict[str, Any] = {"dest": dest, "default": None}
    help_text = setting.metadata["help"]
    if setting.default is dataclasses.MISSING and optional is not None:
        help_text += f" ({optional})"
    elif setting.default is dataclasses.MISSING:
        options["required"] = True
    else:
        help_text += f" ({default_text(setting, presets)})"
    options["help"] = help_text.replace("%", "%%")  # argparse formats help texts with %.
    if setting_type(setting) is bool:
        options["action"] = argparse.BooleanOptionalAction
    else:
        options["type"] = setting_type(setting)
    if "choices" in setting.metadata:
        options["choices"] = setting.metadata["choices"]
    if "metavar" in setting.metadata:
        options["metavar"] = setting.metadata["metavar"]
    elif "type" in options and "choices" not in options:
        # argparse would name the placeholder after `dest` (AUGMENTATION_ROTATION_DEGREES for --rotation).
        options["metavar"] = flag_name(setting).lstrip("-").replace("-", "_").upper()
    parser.add_argument(flag_name(setting), **options)


def add_setting_flags(
    parser: argparse.ArgumentParser,
    names: Iterable[str] | None = None,
    config_class: type = TrainConfig,
    presets: dict[str, dict[str, Any]] = PRESETS,
    optional: dict[str, str] | None = None,
) -> None:
    """Adds a flag for each setting of `config_class` and of its nested configs, in field order.

    Args:
        parser: the command's parser.
        names: only these fields (a nested config's name takes all its settings); None: every setting.
        config_class: the config the flags fill in.
        presets: the presets whose values the help texts show beside the defaults.
        optional: settings without a default whose flags are not required -> when they are needed (for the help).
    """
    wanted = None if names is None else set(names)
    groups = {}

    def group_for(name: str | None):
        if name is None:
            return parser
        if name not in groups:
            groups[name] = parser.add_argument_group(GROUP_TITLES.get(name, name))
        return groups[name]

    nested = nested_configs(config_class)
    for item in dataclasses.fields(config_class):
        if wanted is not None and item.name not in wanted:
            continue
        if item.name in nested:
            # A preset's values for a nested config are a dict under the field's name (PRESETS' "augmentation").
            inner_presets = {preset: values.get(item.name, {}) for preset, values in presets.items()}
            for inner in settings_of(nested[item.name]):
                add_setting(group_for(item.name), inner, f"{item.name}_{inner.name}", inner_presets)
        elif "help" in item.metadata:
            when = (optional or {}).get(item.name)
            add_setting(group_for(item.metadata.get("group")), item, item.name, presets, when)


def add_preset_flag(parser: argparse.ArgumentParser, presets: dict[str, dict[str, Any]] = PRESETS) -> None:
    described = "; ".join(f"{name}: {PRESET_DESCRIPTIONS[name]}" for name in presets)
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default="default",
        help=f"starting settings: a flag not given takes the preset's value (default: default). {described}",
    )


def settings_from(arguments: argparse.Namespace, config_class: type = TrainConfig) -> dict[str, Any]:
    """The config fields of the flags given; a flag not given is left out, for the preset or the default.

    A nested config's flags come as a dict of the settings given (`{"augmentation": {"vertical_flip": True}}`):
    `config.from_preset` lays them over the preset's, so one flag changes one setting.
    """
    values = {
        item.name: getattr(arguments, item.name)
        for item in settings_of(config_class)
        if getattr(arguments, item.name, None) is not None
    }
    for name, nested_class in nested_configs(config_class).items():
        given = {
            inner.name: getattr(arguments, f"{name}_{inner.name}")
            for inner in settings_of(nested_class)
            if getattr(arguments, f"{name}_{inner.name}", None) is not None
        }
        if given:
            values[name] = given
    return values


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `low` (to `high`), refused with what was received otherwise.

    Args:
        low: the least value accepted.
        high: the greatest, or None for no bound.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            expected = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"expected a whole number {expected}, received {text!r}")
        return value

    return parse


# The image sizes a run may train at (TrainConfig's own bounds): explore and suggest read images the same way.
_IMAGE_SIZE_FIELD = next(field for field in dataclasses.fields(TrainConfig) if field.name == "image_size")
IMAGE_SIZE_BOUNDS = (_IMAGE_SIZE_FIELD.metadata["min"], _IMAGE_SIZE_FIELD.metadata["max"])


def folder_path(text: str) -> str:
    """An argparse type for a folder to read or make (--runs-dir): refused when something else is at that path."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: not a folder")
    return text


def in_flag_words(message: str, config_class: type = TrainConfig) -> str:
    """A settings error as the command line reads it: "rotation_degrees must be ..." -> "--rotation must be ...".

    The configs' checks name their fields, which a person typing flags never saw.
    """
    classes = [config_class, *nested_configs(config_class).values()]
    for setting in (item for each in classes for item in settings_of(each)):
        if message.startswith(setting.name + " "):
            return flag_name(setting) + message[len(setting.name) :]
    return message


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    """--runs-dir, of every command that reads or writes the runs folder."""
    parser.add_argument(
        "--runs-dir",
        type=folder_path,
        default=None,
        help="the runs folder (default: $TLCORE_RUNS_DIR, else runs/ in the tlcore home folder: $TLCORE_HOME, "
        "else $XDG_DATA_HOME/tlcore, else ~/.local/share/tlcore)",
    )


def add_split(parser: argparse.ArgumentParser, seed_alias: bool = True) -> None:
    """--validation-fraction and --split-seed of the commands that scan a data set (as train's flags).

    Args:
        parser: the command's parser.
        seed_alias: also accept --seed for --split-seed (its first name), for a command with no --seed of its own.
    """
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation in the flat layout (default 0.2)",
    )
    # --split-seed as in train (where --seed seeds the training); --seed, its first name, still works.
    parser.add_argument(
        "--split-seed",
        *(["--seed"] if seed_alias else []),
        dest="split_seed",
        type=int,
        default=1337,
        help="seed of the train/validation split, as train's --split-seed (default 1337)",
    )
