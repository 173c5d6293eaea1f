"""Data explorer benchmark: planted problems in the real cats/dogs photos, found or not, and how fast.

    python -m benchmarks.explore [--data ../shared/data/catsdogs] [--flips 10] [--leaks 10] [--top 40]

Copies the data set to a temporary folder and plants problems there: `--flips` dogs moved into
train/cats/ and as many cats into train/dogs/ (wrong labels), and `--leaks` training photos
re-encoded (JPEG quality 70, 90% of their size) into validation/ (the same photo in train and
validation). Then runs `tlcore.insight.explore.explore` twice on one runs folder, the feature cache
cold then warm, and prints one table. Targets: at least 80% of the flipped labels among the top
`--top` suspects, every leak found as a leak with at most 5 other pairs, under 60 s cold and 10 s warm.
Exits with status 1 when a row misses its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tlcore.data import folders
from tlcore.insight import explore

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "catsdogs"
LEAK_QUALITY = 70
LEAK_SCALE = 0.9


@dataclass(frozen=True)
class Planted:
    """The problems planted in a copy of a data set.

    Attributes:
        root: the copy.
        flipped: the moved files, at their new (wrongly labelled) place.
        leaks: (training photo, its re-encoded copy in validation) pairs.
    """

    root: Path
    flipped: tuple[Path, ...]
    leaks: tuple[tuple[Path, Path], ...]


def _photos(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


def reencode(source: Path, target: Path, quality: int = LEAK_QUALITY, scale: float = LEAK_SCALE) -> None:
    """Writes a photo again as a JPEG of another quality and size: a copy no byte comparison finds."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image.resize(size, Image.Resampling.LANCZOS).save(target, "JPEG", quality=quality)


def plant(
    source: Path,
    destination: Path,
    flips: int,
    leaks: int,
    seed: int = 1337,
    per_class: dict[str, int] | None = None,
) -> Planted:
    """Copies a train/{cats,dogs} + validation/{cats,dogs} data set and plants wrong labels and leaks.

    Args:
        source: the data set (left untouched).
        destination: a new folder for the copy.
        flips: photos moved from each class's training folder into the other's.
        leaks: training photos (never flipped ones) re-encoded into validation, alternating classes.
        seed: chooses the photos.
        per_class: split -> photos copied per class (the first ones by name); None: all of them.

    Returns:
        What was planted where.
    """
    rng = np.random.default_rng(seed)
    for split in ("train", "validation"):
        for class_folder in sorted(path for path in (source / split).iterdir() if path.is_dir()):
            target = destination / split / class_folder.name
            target.mkdir(parents=True)
            photos = _photos(class_folder)
            for photo in photos[: per_class[split]] if per_class else photos:
                shutil.copy2(photo, target / photo.name)
    classes = sorted(path.name for path in (destination / "train").iterdir())
    chosen = {name: list(rng.permutation(_photos(destination / "train" / name))) for name in classes}
    flipped = []
    for index, name in enumerate(classes):
        other = classes[(index + 1) % len(classes)]
        for photo in chosen[name][:flips]:
            moved = destination / "train" / other / photo.name
            photo.rename(moved)
            flipped.append(moved)
    leak_pairs = []
    for number in range(leaks):
        name = classes[number % len(classes)]
        photo = chosen[name][flips + number // len(classes)]
        copy = destination / "validation" / name / f"leak-{photo.stem}.jpg"
        reencode(photo, copy)
        leak_pairs.append((photo, copy))
    return Planted(destination, tuple(flipped), tuple(leak_pairs))


def score(exploration, planted: Planted, top: int) -> dict:
    """How much of what was planted the exploration found."""
    flipped = {str(path.resolve()) for path in planted.flipped}
    suspects = [suspect.path for suspect in exploration.suspects[:top]]
    planted_pairs = {frozenset((str(a.resolve()), str(b.resolve()))) for a, b in planted.leaks}
    found = {frozenset((pair.a, pair.b)): pair for pair in exploration.duplicates}
    leaks_found = sum(1 for pair in planted_pairs if pair in found and found[pair].leak)
    return {
        "flipped_in_top": sum(1 for path in suspects if path in flipped),
        "flipped": len(flipped),
        "suspects": len(exploration.suspects),
        "leaks_found": leaks_found,
        "leaks": len(planted_pairs),
        "other_pairs": [pair for key, pair in found.items() if key not in planted_pairs],
        "lowest_leak_similarity": min(
            (found[pair].similarity for pair in planted_pairs if pair in found), default=None
        ),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.explore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a train/ + validation/ cats/dogs data set")
    parser.add_argument("--flips", type=int, default=10, help="photos moved into the other class, per class (10)")
    parser.add_argument("--leaks", type=int, default=10, help="training photos re-encoded into validation (10)")
    parser.add_argument("--top", type=int, default=40, help="suspects looked at (40)")
    parser.add_argument("--max-other-pairs", type=int, default=5, help="pairs allowed besides the leaks (5)")
    arguments = parser.parse_args(argv)

    # Before the explorer imports TensorFlow (on its first extraction).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    work = Path(tempfile.mkdtemp(prefix="tlcore-explore-benchmark-"))
    try:
        planted = plant(arguments.data, work / "data", arguments.flips, arguments.leaks)
        started = time.time()
        dataset = folders.scan(planted.root)
        scan_seconds = time.time() - started
        cold = explore.explore(dataset, runs_dir=work / "runs")
        warm = explore.explore(dataset, runs_dir=work / "runs")
        found = score(warm, planted, arguments.top)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    images = len(cold.map)
    flipped_share = found["flipped_in_top"] / found["flipped"]
    leak_share = found["leaks_found"] / found["leaks"]
    other = len(found["other_pairs"])
    rows = [
        (
            f"flipped labels among the top {arguments.top} suspects",
            f"{found['flipped_in_top']} / {found['flipped']} ({found['suspects']} suspects in all)",
            f"{flipped_share:.0%}",
            ">= 80%",
            flipped_share >= 0.8,
        ),
        (
            "planted leaks found as leaks; other pairs",
            f"{found['leaks_found']} / {found['leaks']} (lowest similarity {found['lowest_leak_similarity']}); "
            f"{other} other pair(s)",
            f"{leak_share:.0%}; {other}",
            f"100%; <= {arguments.max_other_pairs}",
            leak_share == 1 and other <= arguments.max_other_pairs,
        ),
        (
            f"explore(), feature cache cold ({images} images)",
            f"{cold.seconds:.1f} s (from cache: {'yes' if cold.features_from_cache else 'no'})",
            "-",
            "< 60 s",
            cold.seconds < 60 and not cold.features_from_cache,
        ),
        (
            "explore(), feature cache warm",
            f"{warm.seconds:.1f} s (from cache: {'yes' if warm.features_from_cache else 'no'})",
            "-",
            "< 10 s",
            warm.seconds < 10 and warm.features_from_cache,
        ),
    ]
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}; "
        f"scan of the planted set {scan_seconds:.1f} s (not in the explorer's time); threshold "
        f"{explore.DEFAULT_THRESHOLD}, {explore.DEFAULT_BACKBONE} {explore.DEFAULT_IMAGE_SIZE} px"
    )
    print("| measure | measured | value | target | result |")
    print("|---|---|---|---|---|")
    for measure, measured, value, target, passed in rows:
        print(f"| {measure} | {measured} | {value} | {target} | {'PASS' if passed else 'FAIL'} |")
    for pair in found["other_pairs"][:20]:
        print(f"other pair: {pair.similarity:.4f} leak={pair.leak} {pair.a} <-> {pair.b}")
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
