"""Breaks training on purpose, one way at a time, and shows that tests/training/test_learning.py notices.

For each breakage: copy the repository to a temporary folder (with ../shared linked beside it, as
the tests expect), patch tlcore there by exact string replacements, and run
`python -m pytest tests/training/test_learning.py -q -x -n 0` in the copy. A breakage is caught (PASS)
when at least one test fails; the unbroken copy runs first as the control, where every test must
pass. Prints a table breakage -> failing tests -> PASS/FAIL and exits 1 if any breakage goes
unnoticed (or the control fails). Its time and output are in tests/README.md:

    python tests/break_training.py [--only "learning rate 0" ...] [--all-failures]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TEST_FILE = "tests/training/test_learning.py"
# Skipped at any depth, and at the top only (tlcore/runs is code, ./runs holds trained runs).
COPY_IGNORES = (".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache")
TOP_LEVEL_IGNORES = ("runs", "test-artifacts", "data")


@dataclass(frozen=True)
class Patch:
    """Replace `old` by `new` in one file; `count` is how many times `old` must occur there."""

    path: str
    old: str
    new: str
    count: int = 1


@dataclass(frozen=True)
class Breakage:
    name: str
    description: str
    patches: tuple[Patch, ...] = field(default_factory=tuple)


COMPILE_CALL = "    model.compile(\n        optimizer=build_optimizer(optimizer, learning_rate),"
BREAKAGES = (
    Breakage("none (control)", "the repository as it is: every test must pass"),
    Breakage(
        "learning rate 0",
        "every optimizer of heads.build_optimizer built with learning_rate=0",
        (Patch("tlcore/models/heads.py", "(learning_rate=learning_rate)", "(learning_rate=0.0)", count=2),),
    ),
    Breakage(
        "base not frozen",
        "heads.compile_model makes every layer trainable (base and BatchNorm included) before compiling",
        (
            Patch(
                "tlcore/models/heads.py",
                COMPILE_CALL,
                # Layer by layer: in Keras 3.15 `model.trainable = True` leaves a frozen nested base frozen.
                "    def unfreeze(layer):\n"
                "        layer.trainable = True\n"
                "        for inner in getattr(layer, 'layers', []):\n"
                "            unfreeze(inner)\n\n"
                "    unfreeze(model)\n" + COMPILE_CALL,
            ),
        ),
    ),
    Breakage(
        "trained weights not kept",
        "every model compiled by heads.compile_model gets its weights at compile time back after each fit",
        (
            Patch(
                "tlcore/models/heads.py",
                COMPILE_CALL,
                "    starting_weights = model.get_weights()\n"
                "    fit = model.fit\n\n"
                "    def fit_then_reset(*arguments, **keyword_arguments):\n"
                "        history = fit(*arguments, **keyword_arguments)\n"
                "        model.set_weights(starting_weights)\n"
                "        return history\n\n"
                "    model.fit = fit_then_reset\n" + COMPILE_CALL,
            ),
        ),
    ),
    Breakage(
        "labels swapped",
        "pipeline.encode_labels reverses the class indices (class i trains as class n-1-i)",
        (
            Patch(
                "tlcore/data/pipeline.py",
                "    labels = np.asarray(labels, dtype=np.int64)\n    if num_classes == 2:",
                "    labels = num_classes - 1 - np.asarray(labels, dtype=np.int64)\n    if num_classes == 2:",
            ),
        ),
    ),
)


def copy_repository(destination: Path) -> Path:
    """The working tree copied to destination/repo, with destination/shared linked to the real ../shared."""
    copy = destination / "repo"
    anywhere = shutil.ignore_patterns(*COPY_IGNORES)

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = set(TOP_LEVEL_IGNORES) & set(names) if Path(folder) == REPOSITORY else set()
        return set(anywhere(folder, names)) | top

    shutil.copytree(REPOSITORY, copy, ignore=ignore, symlinks=True)
    # As tests/helpers/paths.shared_dir (this script runs without the repository on its import path).
    shared = Path(os.environ.get("TLCORE_SHARED_DIR") or REPOSITORY.parent / "shared")
    if shared.is_dir():
        (destination / "shared").symlink_to(shared)
    return copy


def apply(patch: Patch, copy: Path) -> None:
    path = copy / patch.path
    text = path.read_text()
    found = text.count(patch.old)
    if found != patch.count:
        raise ValueError(f"{patch.path}: expected {patch.count} occurrence(s) of {patch.old!r}, found {found}.")
    path.write_text(text.replace(patch.old, patch.new))


def run_tests(copy: Path, stop_at_first: bool) -> tuple[int, list[str], str]:
    """(pytest's exit code, the failing or erroring test ids, pytest's last line)."""
    # In one process (`-n 0` over pytest.ini's two workers): one file needs no second worker, and the output
    # stays the plain pytest output parsed below.
    command = [sys.executable, "-m", "pytest", TEST_FILE, "-q", "-n", "0", "-p", "no:cacheprovider"]
    if stop_at_first:
        command.append("-x")
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(command, cwd=copy, capture_output=True, text=True, env=environment)
    lines = completed.stdout.splitlines()
    failing = [
        line.split()[1].split("::", 1)[-1] for line in lines if line.startswith(("FAILED ", "ERROR ")) and " " in line
    ]
    return completed.returncode, failing, lines[-1] if lines else completed.stderr[-300:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only these breakages (names as in the table)")
    parser.add_argument("--all-failures", action="store_true", help="run every test instead of stopping at the first")
    arguments = parser.parse_args()
    breakages = [breakage for breakage in BREAKAGES if not arguments.only or breakage.name in arguments.only]
    rows = []
    for breakage in breakages:
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="break-training-") as temporary:
            copy = copy_repository(Path(temporary))
            for patch in breakage.patches:
                apply(patch, copy)
            code, failing, last_line = run_tests(copy, stop_at_first=not arguments.all_failures)
        if not breakage.patches:
            caught = code == 0 and "skipped" not in last_line
        else:
            caught = code == 1 and bool(failing)  # 1: tests failed; 2-5: interrupted, usage, no tests.
        rows.append((breakage, failing, caught, time.time() - started))
        print(f"{breakage.name}: {last_line} ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    print("| breakage | what the patch does | failing tests | result | seconds |")
    print("|---|---|---|---|---|")
    for breakage, failing, caught, seconds in rows:
        listed = ", ".join(f"`{name}`" for name in failing) or "none"
        verdict = "PASS" if caught else "FAIL"
        print(f"| {breakage.name} | {breakage.description} | {listed} | {verdict} | {seconds:.0f} |")
    return 0 if all(caught for _, _, caught, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
