"""Where the app and the CLI keep what they make: one home folder, whatever folder they were started from.

The data folder (uploads, demo sets, the data set library, cleaning decisions) and the runs folder
(runs, feature caches) used to be `data/` and `runs/` of the current folder, so starting the server
from another folder lost them. Both now live beside each other under one home:

    $TLCORE_HOME, else $XDG_DATA_HOME/tlcore, else ~/.local/share/tlcore
        data/     unless $TLCORE_DATA_DIR names another folder
        runs/     unless $TLCORE_RUNS_DIR names another folder
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

HOME_VARIABLE = "TLCORE_HOME"
DATA_DIR_VARIABLE = "TLCORE_DATA_DIR"
RUNS_DIR_VARIABLE = "TLCORE_RUNS_DIR"


def default_folder(kind: str, environment: Mapping[str, str] | None = None) -> Path:
    """The data or runs folder: its own variable, else that name under the home folder.

    Args:
        kind: "data" or "runs".
        environment: where to read the variables (default `os.environ`).

    Returns:
        The folder, `~` expanded (it may not exist yet).

    Raises:
        ValueError: `kind` is neither "data" nor "runs".
    """
    variables = {"data": DATA_DIR_VARIABLE, "runs": RUNS_DIR_VARIABLE}
    if kind not in variables:
        raise ValueError(f"kind must be one of {sorted(variables)}, received {kind!r}.")
    environment = os.environ if environment is None else environment
    own = environment.get(variables[kind], "").strip()
    if own:
        return Path(own).expanduser()
    home = environment.get(HOME_VARIABLE, "").strip()
    if not home:
        shared = environment.get("XDG_DATA_HOME", "").strip() or "~/.local/share"
        home = str(Path(shared) / "tlcore")
    return Path(home).expanduser() / kind
