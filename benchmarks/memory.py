"""Memory benchmark: feature extraction over 2,000 and 20,000 images in bounded memory.

    python -m benchmarks.memory [--sizes 2000,20000] [--backbone efficientnet_lite0] [--image-size 160]

Generates photo-like JPEGs (smooth colour gradients with shapes, 320 x 240; a few hundred distinct
images hard-linked under many names, so decoding costs what it would for distinct files), then runs
a scan + feature extraction for each size in a fresh process and prints one table: peak resident
memory (the child's own `ru_maxrss`), seconds and images per second. The targets: the peak for the
largest size within 1.2x of the smallest, and time growing linearly with the number of images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tlcore.config import TrainConfig
from tlcore.data import folders

DISTINCT_IMAGES = 400


def make_photo(rng: np.random.Generator, width: int = 320, height: int = 240):
    """A smooth, photo-like RGB image: a colour gradient, an ellipse and noise (JPEG-friendly)."""

    vertical = np.linspace(0, 1, height)[:, None, None]
    horizontal = np.linspace(0, 1, width)[None, :, None]
    start, end, side = rng.uniform(0, 255, size=(3, 3))
    pixels = start * (1 - vertical) + end * vertical + (side - 128) * horizontal * 0.5
    pixels = pixels + rng.normal(0, 6, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.integers(0, width - 40), rng.integers(0, height - 40)
        size = rng.integers(20, 120)
        draw.ellipse([x, y, x + size, y + size], fill=tuple(int(value) for value in rng.integers(0, 255, 3)))
    return image.filter(ImageFilter.GaussianBlur(1.5))


def generate(folder: Path, count: int, seed: int = 0) -> None:
    """Writes `count` images per class (2 classes) into train/ and validation/ (80/20)."""
    rng = np.random.default_rng(seed)
    sources = folder / ".sources"
    sources.mkdir(parents=True, exist_ok=True)
    distinct = []
    for index in range(DISTINCT_IMAGES):
        path = sources / f"source_{index:04d}.jpg"
        if not path.exists():
            make_photo(rng).save(path, quality=90)
        distinct.append(path)
    per_class = count // 2
    for name in ("a", "b"):
        for index in range(per_class):
            split = "validation" if index % 5 == 0 else "train"
            target = folder / split / name / f"{name}_{index:06d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(distinct[(index * 7 + (name == "b")) % DISTINCT_IMAGES], target)


def child(folder: str, backbone: str, image_size: int, runs_dir: str) -> None:
    """Scan + feature extraction in this process; prints seconds and this process's peak memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Heavy: imports TensorFlow.
    from tlcore.models import backbones, heads
    from tlcore.runs import worker
    from tlcore.training import extraction, training_context

    worker.limit_malloc_arenas()  # As a training process does (tlcore.runs.worker, the CLI).

    started = time.perf_counter()
    dataset = folders.scan(folder)
    scanned = time.perf_counter()
    config = TrainConfig(data_dir=folder, strategy="feature_extraction", backbone=backbone, image_size=image_size)
    context = training_context.TrainingContext(config=config, dataset=dataset, runs_dir=runs_dir)
    base = heads.build_frozen_base(config)
    feature_maps, extraction_seconds, _ = extraction.extract_features(
        context, base, backbones.preprocessing_layer(backbone)
    )
    print(
        json.dumps(
            {
                "images": sum(len(feature_maps[split]) for split in feature_maps),
                "scan_seconds": scanned - started,
                "extraction_seconds": extraction_seconds,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,20000", help="image counts to compare (default 2000,20000)")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone (default efficientnet_lite0)")
    parser.add_argument("--image-size", type=int, default=160, help="input size (default 160)")
    parser.add_argument("--work-dir", default=None, help="where to generate the images (default: a temp folder)")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "RUNS_DIR"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        child(arguments.child[0], arguments.backbone, arguments.image_size, arguments.child[1])
        return 0
    sizes = [int(size) for size in arguments.sizes.split(",")]
    work = Path(arguments.work_dir or tempfile.mkdtemp(prefix="tlcore-bench-memory-"))
    rows = []
    try:
        for size in sizes:
            folder = work / f"images_{size}"
            print(f"generating {size} images in {folder}", file=sys.stderr, flush=True)
            generate(folder, size)
            runs_dir = work / f"runs_{size}"
            shutil.rmtree(runs_dir, ignore_errors=True)
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.memory",
                    "--backbone",
                    arguments.backbone,
                    "--image-size",
                    str(arguments.image_size),
                    "--child",
                    str(folder),
                    str(runs_dir),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if completed.returncode != 0:
                print(completed.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
            shutil.rmtree(runs_dir, ignore_errors=True)
    finally:
        if arguments.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    smallest = rows[0]
    # Heavy: imports TensorFlow.
    import tensorflow as tf

    print(f"Command: python -m benchmarks.memory {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}")
    print(
        f"{'images':>8}  {'peak RSS (MiB)':>15}  {'x smallest':>10}  {'scan s':>8}  {'extract s':>10}  "
        f"{'images/s':>9}  {'time per image x smallest':>26}"
    )
    for row in rows:
        per_image = row["extraction_seconds"] / row["images"]
        print(
            f"{row['images']:>8}  {row['peak_rss_mib']:>15.0f}  "
            f"{row['peak_rss_mib'] / smallest['peak_rss_mib']:>10.2f}  "
            f"{row['scan_seconds']:>8.1f}  {row['extraction_seconds']:>10.1f}  "
            f"{row['images'] / row['extraction_seconds']:>9.1f}  "
            f"{per_image / (smallest['extraction_seconds'] / smallest['images']):>26.2f}"
        )
    largest = rows[-1]
    ratio = largest["peak_rss_mib"] / smallest["peak_rss_mib"]
    print(
        f"Peak memory of {largest['images']} vs {smallest['images']} images: {ratio:.2f}x "
        f"(target <= 1.2x): {'PASS' if ratio <= 1.2 else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
