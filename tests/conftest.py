"""Shared fixtures: the real photos in ../shared, small data sets made from them, and a small trained run.

The session-scoped data sets and run are shared by every test that asks for them: treat them as read-only
and copy them (`shutil.copytree`) before adding, removing or touching files.

Without ../shared the tests that need it are skipped, all with one reason, and the run ends with one line
that counts them (`pytest_terminal_summary`), so that a green run with half the suite skipped does not pass unseen.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.paths import SHARED_MISSING, shared_missing_reason, shared_path
from tests.helpers.runs import trained_run
from tlcore.runs import store

SMALL_TRAIN_PER_CLASS = 12
SMALL_VALIDATION_PER_CLASS = 6
FLAT_PER_CLASS = 10


@pytest.fixture(scope="session", autouse=True)
def tlcore_home(tmp_path_factory):
    """A tlcore home folder of the session's own: nothing a test runs (a command without --runs-dir, a page,
    a worker it starts) writes runs or feature caches into the real one (~/.local/share/tlcore), or into a
    runs or data folder the shell names. Tests that set these variables themselves still win (monkeypatch)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TLCORE_HOME", str(tmp_path_factory.mktemp("tlcore_home")))
    patch.delenv("TLCORE_RUNS_DIR", raising=False)
    patch.delenv("TLCORE_DATA_DIR", raising=False)
    yield Path(os.environ["TLCORE_HOME"])
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def temporary_folder(tmp_path_factory):
    """A temporary folder of the session's own ($TMPDIR and `tempfile`'s), inside pytest's base folder, which
    pytest prunes: what a process a test kills leaves behind does not pile up in /tmp. TensorFlow's autograph,
    for one, writes a module per converted function there and removes it only when the process exits normally."""
    folder = tmp_path_factory.mktemp("tmp")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(folder))
    patch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `../shared` folder beside the project root (or `$TLCORE_SHARED_DIR`)."""
    return shared_path()


@pytest.fixture(scope="session")
def catsdogs_dir(shared_dir: Path) -> Path:
    """The real cats-and-dogs set: train/{cats,dogs} (1000 + 999), validation/{cats,dogs} (250 + 250)."""
    return shared_dir / "data" / "catsdogs"


def _first_photos(folder: Path, start: int, count: int) -> list[Path]:
    photos = sorted(path for path in folder.iterdir() if path.suffix.lower() == ".jpg")
    chosen = photos[start : start + count]
    # A shared folder that is there but short of photos is broken, not missing: fail rather than skip.
    assert len(chosen) == count, f"{folder} has fewer than {start + count} photos"
    return chosen


@pytest.fixture(scope="session")
def catsdogs_subset(tmp_path_factory, catsdogs_dir: Path):
    """A factory of small train/validation data sets: symbolic links to the first real photos.

    `catsdogs_subset("name", train=8, validation=4)` gives 8 + 4 photos per class;
    counts may also be dicts per class (`train={"cats": 12, "dogs": 4}`) for imbalanced sets.
    """

    def make(name: str, train, validation) -> Path:
        root = tmp_path_factory.mktemp(name)
        for split, counts in (("train", train), ("validation", validation)):
            per_class = counts if isinstance(counts, dict) else {"cats": counts, "dogs": counts}
            for class_name, count in per_class.items():
                folder = root / split / class_name
                folder.mkdir(parents=True)
                for photo in _first_photos(catsdogs_dir / split / class_name, 0, count):
                    (folder / photo.name).symlink_to(photo)
        return root

    return make


@pytest.fixture(scope="session")
def small_catsdogs(tmp_path_factory, catsdogs_dir: Path) -> Path:
    """A copy of 12 train + 6 validation real photos per class: train/{cats,dogs}, validation/{cats,dogs}."""
    root = tmp_path_factory.mktemp("small_catsdogs")
    for split, count in (("train", SMALL_TRAIN_PER_CLASS), ("validation", SMALL_VALIDATION_PER_CLASS)):
        for name in ("cats", "dogs"):
            target = root / split / name
            target.mkdir(parents=True)
            for photo in _first_photos(catsdogs_dir / split / name, 0, count):
                shutil.copy2(photo, target / photo.name)
    return root


@pytest.fixture(scope="session")
def flat_small(tmp_path_factory, catsdogs_dir: Path) -> Path:
    """A flat layout of 3 classes of 10 photos: cats/, dogs/, and greys/ (other cats as grey RGB)."""
    root = tmp_path_factory.mktemp("flat_small")
    for name in ("cats", "dogs"):
        (root / name).mkdir()
        for photo in _first_photos(catsdogs_dir / "train" / name, 0, FLAT_PER_CLASS):
            shutil.copy2(photo, root / name / photo.name)
    (root / "greys").mkdir()
    for photo in _first_photos(catsdogs_dir / "train" / "cats", FLAT_PER_CLASS, FLAT_PER_CLASS):
        with Image.open(photo) as image:
            grey = image.convert("L").convert("RGB")
        grey.save(root / "greys" / f"grey.{photo.name}", "JPEG", quality=90)
    return root


@pytest.fixture
def seeded_bad_catsdogs(tmp_path: Path, small_catsdogs: Path) -> tuple[Path, dict[str, str]]:
    """A copy of `small_catsdogs` plus three unusable files.

    Returns:
        The folder, and the bad files' resolved paths -> a word their rejection reason must contain.
    """
    root = tmp_path / "seeded"
    shutil.copytree(small_catsdogs, root)
    empty = root / "train" / "cats" / "empty.jpg"
    empty.write_bytes(b"")
    text = root / "train" / "dogs" / "notes.jpg"
    text.write_text("These are my notes about the dogs, not a photo.\n")
    photo = next(iter(sorted((small_catsdogs / "validation" / "cats").iterdir())))
    data = photo.read_bytes()
    truncated = root / "validation" / "cats" / "cut.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    expected = {
        str(empty.resolve()): "empty",
        str(text.resolve()): "text",
        str(truncated.resolve()): "truncated",
    }
    return root, expected


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, catsdogs_subset) -> store.Run:
    """The cheapest finished run (VGG16 without pretrained weights, 32 px, one epoch) on 4 + 2 photos per class.

    Its runs folder (`run.path.parent`) holds this run only; add other runs to a folder of your own.
    """
    photos = catsdogs_subset("tiny_run_photos", train=4, validation=2)
    return trained_run(tmp_path_factory.mktemp("tiny_runs"), photos)


def _skipped_for_want_of_shared(report) -> bool:
    """Whether a skipped test report gives the missing-../shared reason."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return SHARED_MISSING in reason


def pytest_terminal_summary(terminalreporter) -> None:
    """Ends the run with one line counting the tests skipped because ../shared is missing (none: no line)."""
    count = sum(_skipped_for_want_of_shared(report) for report in terminalreporter.stats.get("skipped", []))
    if count:
        terminalreporter.write_line(f"{count} tests skipped: {shared_missing_reason()}", yellow=True, bold=True)


# The files that take longest (`--durations`, two workers on 2 cores), longest first. pytest.ini hands files to
# the two workers in collection order (--no-loadscope-reorder): these go first, so that neither worker is left
# alone with one of them at the end while the other has nothing to do.
SLOWEST_FILES = (
    "tests/app/test_browser.py",
    "tests/training/test_learning.py",
    "tests/training/test_multi_worker.py",
    "tests/training/test_precision.py",
    "tests/training/test_trainer.py",
    "tests/benchmarks/test_precision.py",
    "tests/serving/test_export.py",
    "tests/training/test_distribute.py",
    "tests/runs/test_resume.py",
    "tests/test_progress.py",
    "tests/app/test_browser_builder.py",
)


def pytest_collection_modifyitems(items) -> None:
    """Moves the tests of SLOWEST_FILES to the front, in that order; the rest keep theirs (a stable sort)."""
    rank = {path: index for index, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOWEST_FILES)))
