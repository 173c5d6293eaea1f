"""Settings: dataclass fields whose metadata describes them once, for validation, the CLI and the pages.

`setting` declares one (default, help text, choices, bounds ...); `check_settings` validates a config
instance against its fields' metadata; `settings_of` and `setting_type` let the CLI flags
(`tlcore.cli_flags`) and the Train page's widgets (`views.train_options`) be generated from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any

# What a setting's `metadata` may hold. Every field of AugmentationConfig and TrainConfig that people set is
# described once, in its metadata, and validation, the CLI flags (tlcore.cli_flags) and the Train page's widgets
# (views.train_options) all read it:
#   help: one sentence saying what the setting does (help texts add the default themselves);
#   label: the short name a page shows;
#   choices: the values it accepts;
#   min, max: the inclusive bounds __post_init__ enforces, and the range of a page's number input;
#   step: how far one click of a page's number input moves;
#   group: the CLI flag group ("augmentation", "devices" or "speed"; no group: the main flags);
#   page: where the Train page draws it ("model", "hyperparameters" or "options"; no page: not on the Train page);
#   flag, metavar: the CLI flag and its placeholder when they are not --field-name and argparse's.
SETTING_KEYS = frozenset({"help", "label", "choices", "min", "max", "step", "group", "page", "flag", "metavar"})
PLAIN_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def setting(default: Any, help_text: str, **metadata: Any) -> Any:
    """A dataclass field holding a setting: its default, help text and other metadata (see SETTING_KEYS).

    Raises:
        ValueError: for a metadata key that is not one of SETTING_KEYS (a misspelt bound would go unchecked).
    """
    unknown = sorted(set(metadata) - SETTING_KEYS)
    if unknown:
        raise ValueError(f"Unknown setting metadata {unknown}. Expected some of {sorted(SETTING_KEYS)}.")
    return field(default=default, metadata={"help": help_text, **metadata})


def settings_of(config_class: type) -> tuple[dataclasses.Field, ...]:
    """The fields of a config class that are settings: those whose metadata has a help text."""
    return tuple(item for item in dataclasses.fields(config_class) if "help" in item.metadata)


def setting_type(setting: dataclasses.Field) -> type:
    """The plain type (bool, int, float or str) a setting holds, from its annotation."""
    annotation = setting.type if isinstance(setting.type, str) else setting.type.__name__
    if annotation not in PLAIN_TYPES:
        raise ValueError(f"Setting {setting.name!r} must be one of {list(PLAIN_TYPES)}, received {annotation!r}.")
    return PLAIN_TYPES[annotation]


def check_setting(setting: dataclasses.Field, value: Any) -> None:
    """Checks a value against its setting's type, choices and bounds.

    Raises:
        ValueError: naming the setting, what it accepts and the value received.
    """
    name, metadata, kind = setting.name, setting.metadata, setting_type(setting)
    if "choices" in metadata:
        if value not in metadata["choices"]:
            raise ValueError(f"{name} must be one of {list(metadata['choices'])}, received {value!r}.")
        return
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, received {value!r}.")
        return
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, received {value!r}.")
        return
    # bool is an int in Python; a number setting still refuses True and False.
    accepted = (int,) if kind is int else (int, float)
    low, high = metadata.get("min"), metadata.get("max")
    if (
        not isinstance(value, accepted)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        what = "an integer" if kind is int else "a number"
        if low is not None and high is not None:
            what += f" in [{low}, {high}]"
        elif low is not None:
            what += f" >= {low}"
        elif high is not None:
            what += f" <= {high}"
        raise ValueError(f"{name} must be {what}, received {value!r}.")


def check_settings(config: Any) -> None:
    """Checks every setting of a config instance (see `check_setting`)."""
    for setting in settings_of(type(config)):
        check_setting(setting, getattr(config, setting.name))
