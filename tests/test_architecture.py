"""The architecture rules of the repository, each a test that names what breaks it.

- tlcore has no import cycle;
- no module of tlcore/, views/ or pages/ is over MAX_MODULE_LINES lines;
- an import inside a function says why on its line or the line above (heavy, optional, ...);
- tlcore imports no framework internals (`keras.src`, `tensorflow.python`) but in one wrapper;
- tlcore never imports the app (Streamlit, pages, views); the app never imports TensorFlow or Keras;
- the modules the pages poll, the configuration and the CLI's light commands load without TensorFlow.

Imports are read with `ast`, so the rules hold for every file, imported by a test or not.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from tlcore import cli

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = "tlcore"
APP_FOLDERS = ("views", "pages")
APP_FILES = ("app.py",)

MAX_MODULE_LINES = 400
# Files allowed to break the size and function-level import rules, with the reason.
KNOWN_EXCEPTIONS: dict[str, str] = {}
# The one file allowed to import framework internals (see its docstring).
FRAMEWORK_PRIVATE_FILE = "tlcore/framework_private.py"
PRIVATE_FRAMEWORK_MODULES = ("keras.src", "tensorflow.python")
FRAMEWORKS = ("tensorflow", "keras", "tf_keras")
APP_MODULES = ("streamlit", "pages", "views")


def python_files(*folders: str) -> list[Path]:
    """Every .py file under the folders (recursively), and the named files, sorted."""
    files = []
    for folder in folders:
        path = REPOSITORY / folder
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [path for path in files if ".venv" not in path.parts]


def relative(path: Path) -> str:
    return path.relative_to(REPOSITORY).as_posix()


def module_name(path: Path) -> str:
    """tlcore/data/zips.py -> tlcore.data.zips; tlcore/data/__init__.py -> tlcore.data."""
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def import_statements(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(statement, whether it is inside a function) for every import, `if TYPE_CHECKING:` blocks left out."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                for other in child.orelse:
                    visit_statement(other, in_function)
                continue
            visit_statement(child, in_function)

    def visit_statement(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, in_function))
        visit(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def imported_names(statement: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names a statement may import: `from a.b import c` gives a.b and a.b.c (c may be a module)."""
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names]
    base = statement.module or ""
    if statement.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - statement.level + 1]
        base = ".".join(package + ([statement.module] if statement.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in statement.names]


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def names_imported_by(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import of a file, at any level."""
    module = module_name(path)
    return [
        (statement.lineno, name)
        for statement, _ in import_statements(parsed(path))
        for name in imported_names(statement, module, path.name == "__init__.py")
    ]


def import_graph(package: str = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports (module level or in a function)."""
    paths = {module_name(path): path for path in python_files(package)}
    graph = {}
    for module, path in paths.items():
        targets = set()
        for _, name in names_imported_by(path):
            while name and name not in paths:  # `from a.b import function` -> a.b
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (a depth-first search, in sorted order)."""
    finished, path = set(), []

    def search(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in finished:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = search(target)
            if cycle:
                return cycle
        path.pop()
        finished.add(node)
        return None

    for node in sorted(graph):
        cycle = search(node)
        if cycle:
            return cycle
    return None


def test_find_cycle_reports_the_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_tlcore_has_no_import_cycle():
    graph = import_graph()
    assert "tlcore.models.registry" in graph["tlcore.models.layers"], "the graph sees imports"
    cycle = find_cycle(graph)
    assert cycle is None, f"Import cycle in tlcore: {' -> '.join(cycle)}"


def test_no_module_is_over_the_size_limit():
    sizes = {
        relative(path): len(path.read_text(encoding="utf-8").splitlines())
        for path in python_files(PACKAGE, *APP_FOLDERS, *APP_FILES)
    }
    oversized = {
        name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES and name not in KNOWN_EXCEPTIONS
    }
    assert not oversized, f"Over {MAX_MODULE_LINES} lines (split by concept): {oversized}"


def uncommented_function_imports(path: Path) -> list[str]:
    """Imports inside functions with no comment on their line, nor on the line above them.

    Consecutive imports (blank lines between them too, as ruff groups them) are one block: a comment
    above the block's first line covers all of it.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    statements = [statement for statement, in_function in import_statements(parsed(path)) if in_function]
    start_of_statement_ending_on = {statement.end_lineno: statement.lineno for statement in statements}

    def commented(line_number: int) -> bool:
        return "#" in lines[line_number - 1]

    missing = []
    for statement in statements:
        block_start = statement.lineno
        while True:
            line_above = block_start - 1
            while line_above >= 1 and not lines[line_above - 1].strip():
                line_above -= 1
            if line_above not in start_of_statement_ending_on:
                break
            block_start = start_of_statement_ending_on[line_above]
        comment_above = block_start > 1 and lines[block_start - 2].strip().startswith("#")
        comment_on_it = any(commented(line) for line in range(statement.lineno, statement.end_lineno + 1))
        if not comment_above and not comment_on_it:
            missing.append(f"{relative(path)}:{statement.lineno}: {lines[statement.lineno - 1].strip()}")
    return missing


def test_imports_inside_functions_say_why():
    missing = [
        line
        for path in python_files(PACKAGE, "benchmarks", *APP_FOLDERS, *APP_FILES)
        if relative(path) not in KNOWN_EXCEPTIONS
        for line in uncommented_function_imports(path)
    ]
    assert not missing, (
        "Imports inside functions need a reason on their line or the line above (`# Heavy: imports TensorFlow.`, "
        "an optional dependency, ...); light ones belong at the top of the module:\n" + "\n".join(missing)
    )


def test_tlcore_imports_no_framework_internals_but_in_one_wrapper():
    found = [
        f"{relative(path)}:{line}: {name}"
        for path in python_files(PACKAGE)
        if relative(path) != FRAMEWORK_PRIVATE_FILE
        for line, name in names_imported_by(path)
        if name.startswith(tuple(f"{private}." for private in PRIVATE_FRAMEWORK_MODULES))
        or name in PRIVATE_FRAMEWORK_MODULES
    ]
    assert not found, f"Framework internals outside {FRAMEWORK_PRIVATE_FILE}: {found}"


def top_level_names(path: Path) -> set[tuple[int, str]]:
    return {(line, name.split(".")[0]) for line, name in names_imported_by(path)}


def test_tlcore_never_imports_the_app():
    files = python_files(PACKAGE)
    assert any(path.parent.parent.name == PACKAGE for path in files), "subfolders are searched"
    found = [
        f"{relative(path)}:{line}: {name}"
        for path in files
        for line, name in top_level_names(path)
        if name in APP_MODULES
    ]
    assert not found, f"tlcore must not import the app: {found}"


def test_the_app_never_imports_tensorflow_or_keras():
    found = [
        f"{relative(path)}:{line}: {name}"
        for path in python_files(*APP_FOLDERS, *APP_FILES)
        for line, name in top_level_names(path)
        if name in FRAMEWORKS
    ]
    assert not found, f"Pages and views reach TensorFlow through tlcore only: {found}"


def frameworks_loaded_by(code: str, tmp_path: Path) -> list[str]:
    """Runs code in a fresh interpreter; returns the frameworks in its sys.modules afterwards."""
    # The runs folder comes from $TLCORE_RUNS_DIR, so nothing is written into the repository.
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(set({FRAMEWORKS!r}) & set(sys.modules))))"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPOSITORY), TLCORE_RUNS_DIR=str(tmp_path / "runs")),
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


# What the pages and the configuration do on every rerun, each of which must not start TensorFlow.
LIGHT_USES = {
    "config": "from tlcore.config import TrainConfig, from_preset\n"
    "TrainConfig(data_dir='photos', backbone='mobilenet_v2')\nfrom_preset('seed', data_dir='photos')",
    "registry": "from tlcore.models import registry\n"
    "registry.get_backbone('vgg16')\nregistry.weights_file_name('mobilenet', 160, 0.5)",
    "store and monitor": "from tlcore.config import TrainConfig\nfrom tlcore.runs import monitor, store\n"
    "run = store.create(TrainConfig(data_dir='photos'))\n"
    "run.append_metrics({'stage': 'feature_extraction', 'epoch': 0, 'accuracy': 0.5})\n"
    "[store.describe(each) for each in store.list_runs()]\nrun.train_config()\n"
    "monitor.estimate(run.config(), run.status(), run.progress(), run.metrics())",
    "stage steps": "from tlcore.insight import stage_steps\n"
    "stage_steps.lines({'feature_extraction': {'val_accuracy': 0.9}, 'frozen_augmented': {'val_accuracy': 0.8}}, "
    "'frozen_augmented')",
    "learning-rate finds": "from tlcore.config import TrainConfig\nfrom tlcore.runs import finder_jobs, store\n"
    "job = finder_jobs.create(TrainConfig(data_dir='photos'), store.default_runs_dir())\n"
    "finder_jobs.resolve(job.id, store.default_runs_dir()).status()\nfinder_jobs.sweep_of(job)",
}


@pytest.mark.parametrize("use", sorted(LIGHT_USES))
def test_what_the_pages_poll_loads_without_tensorflow(use, tmp_path):
    assert frameworks_loaded_by(LIGHT_USES[use], tmp_path) == []


def test_the_cli_lists_and_stops_runs_without_tensorflow(tmp_path):
    code = (
        "from tlcore.cli import main\nfrom tlcore.config import TrainConfig\nfrom tlcore.runs import store\n"
        f"run = store.create(TrainConfig(data_dir='photos'), {str(tmp_path)!r})\n"
        f"assert main(['runs', '--json', '--runs-dir', {str(tmp_path)!r}]) == 0\n"
        f"assert main(['stop', run.id, '--runs-dir', {str(tmp_path)!r}]) == 0"
    )
    assert frameworks_loaded_by(code, tmp_path) == []


# A measurement in prose: a rate, a duration per unit, a speed-up or a share faster. Those go stale as the code
# and the machines change, so they belong in the README and benchmarks/RESULTS.md, where they are dated.
MEASUREMENT = re.compile(
    r"\d[\d,.]*\s*(?:photos/s|images/s|img/s|photos per second|images per second|ms\b)"
    r"|\b\d+(?:\.\d+)?x (?:faster|slower|for|as fast|the speed)"
    r"|\b\d+(?:\.\d+)?\s*(?:s|seconds) (?:a|per|on|with|in)\b"
    r"|\b\d+(?:\.\d+)?% (?:faster|slower|of the)"
)


def measurements_in(text: str) -> list[str]:
    return [match.group(0) for match in MEASUREMENT.finditer(text)]


def test_the_measurement_pattern_finds_rates_and_speed_ups_but_not_sizes():
    assert measurements_in("8 threads decoded 3,646 photos/s at 160 px") == ["3,646 photos/s"]
    assert measurements_in("1.25x for 20,000 images, 0.3 s per collection") == ["1.25x for", "0.3 s per"]
    assert measurements_in("a 20000 x 20000 bomb, 64 MiB blocks, at most 8 threads") == []
    assert measurements_in("weighted when the largest class has 1.5x the images of the smallest") == []


def test_comments_and_help_texts_hold_no_measured_numbers():
    found = []
    for path in python_files(PACKAGE, "views", "pages", "app.py"):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING) and measurements_in(token.string):
                found.append(f"{relative(path)}:{token.start[0]}: {measurements_in(token.string)}")
    parser = cli.build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    helps = [parser.format_help()] + [command.format_help() for command in commands.choices.values()]
    found += [f"--help: {measurements_in(text)}" for text in helps if measurements_in(text)]
    assert not found, "Measured numbers belong in README.md and benchmarks/RESULTS.md, not in:\n" + "\n".join(found)
