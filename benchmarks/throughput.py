"""Benchmarks of what the product promises to make fast, measured side by side in one run.

    python -m benchmarks.throughput [--data DIR] [--backbone efficientnet_lite0] [--weights imagenet]
                           [--image-size 160] [--limit N] [--epochs E] [--views K] [--repeats R]
                           [--sections 1,2,3,4] [--markdown]

Sections (one table, one row per measurement: what, value(s), ratio, target, PASS/FAIL):
    1. Feature-extraction throughput of the backbone, in images/s:
       a. JPEG files through tlcore's own extraction function `extraction.extract_to_file` (the
          decoders filling batches ahead in parallel, the compiled forward pass, features streamed to disk
          batch by batch), b. the limit: the same forward pass on decoded in-memory batches, c. the seed
          notebook's loop: `ImageDataGenerator.flow_from_directory` batches of 20, one `predict` call per
          batch (from `tf_keras`, see requirements-bench.txt). d. The CPU time per image of each
          (all threads of the process, and its decoder processes on Linux) and the a/b it allows with every core
          busy. e. The a/b of each pass and their median (a and b run one after the other in each pass).
    2. The feature cache: the same feature-extraction run twice in one runs folder, cold then warm.
    3. frozen_augmented + fine_tuning with cached augmented views (K) vs end to end (0 views).
    4. The whole `all` schedule with the default preset.

Progress goes to standard error, the table to standard output. Speed targets are checked here,
never in timed tests. Every run folder is temporary and removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import psutil

from tlcore.config import WEIGHTS, TrainConfig, from_preset
from tlcore.data import decoder_processes, folders, pipeline
from tlcore.data.dataset import DatasetError
from tlcore.models.inference import inference_function
from tlcore.models.registry import BACKBONES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "catsdogs"
SECTIONS = (1, 2, 3, 4)
SEED_BATCH_SIZE = 20  # The seed notebook's generator batch size.
# Validation accuracy the published VGG16 notebook reaches per stage (docs: shared/guide/anchors.md).
PUBLISHED_ACCURACY = {"feature_extraction": 0.90, "frozen_augmented": 0.96, "fine_tuning": 0.97}


@dataclass(frozen=True)
class Row:
    """One line of the table; result is "PASS", "FAIL" or "info" (no target)."""

    section: str
    what: str
    value: str
    ratio: str = "-"
    target: str = "-"
    result: str = "info"


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


# --- The machine and the data ----------------------------------------------------------------


def machine_description() -> str:
    # Heavy: imports Keras.
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 1024**3
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{cpu}; {os.cpu_count()} logical / {psutil.cpu_count(logical=False)} physical cores; "
        f"{memory:.1f} GiB RAM; TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"Python {platform.python_version()}; load average {load}"
    )


def link_subset(dataset, destination: Path, limit: int | None) -> Path:
    """A train/validation/<class>/ folder of symlinks to the first `limit` usable images per class
    and split (all of them when None), so every method below reads exactly the same files."""
    for split in ("train", "validation"):
        for label, name in enumerate(dataset.classes):
            paths = [sample.path for sample in dataset.splits[split] if sample.label == label][:limit]
            folder = destination / split / name
            folder.mkdir(parents=True)
            for index, path in enumerate(paths):
                (folder / f"{index:05d}_{Path(path).name}").symlink_to(Path(path).resolve())
    return destination


# --- Section 1: feature-extraction throughput ------------------------------------------------


def seed_loop(extractor, root: Path, image_size: int, num_classes: int) -> int:
    """The seed notebook's extraction: a generator of batches of 20, one `predict` per batch."""
    # Optional, and heavy: tf_keras is the seed notebook's Keras 2 (called only where it is installed).
    from tf_keras.preprocessing.image import ImageDataGenerator

    done = 0
    for split in ("train", "validation"):
        with contextlib.redirect_stdout(sys.stderr):  # It prints "Found N images ...".
            generator = ImageDataGenerator().flow_from_directory(
                str(root / split),
                target_size=(image_size, image_size),
                batch_size=SEED_BATCH_SIZE,
                class_mode="binary" if num_classes == 2 else "categorical",
                shuffle=False,
            )
        count = generator.samples
        features = np.zeros((count, *extractor.output.shape[1:]), dtype="float32")
        labels = np.zeros(count if num_classes == 2 else (count, num_classes), dtype="float32")
        index = 0
        for inputs_batch, labels_batch in generator:
            features[index * SEED_BATCH_SIZE : (index + 1) * SEED_BATCH_SIZE] = extractor.predict(
                inputs_batch, verbose=0
            )
            labels[index * SEED_BATCH_SIZE : (index + 1) * SEED_BATCH_SIZE] = labels_batch
            index += 1
            if index * SEED_BATCH_SIZE >= count:
                break
        done += count
    return done


def load_img_loop(extractor, paths: Sequence[str], image_size: int) -> int:
    """The seed's loop without tf_keras: `keras.utils.load_img` per file, `predict` per batch of 20."""
    # Heavy: imports Keras.
    import keras

    for start in range(0, len(paths), SEED_BATCH_SIZE):
        batch = np.stack(
            [
                keras.utils.img_to_array(keras.utils.load_img(path, target_size=(image_size, image_size)))
                for path in paths[start : start + SEED_BATCH_SIZE]
            ]
        )
        extractor.predict(batch, verbose=0)
    return len(paths)


def extract_from_files(config, dataset, forward, feature_shape) -> int:
    """The data set's train and validation photos through the product's extraction function,
    `extraction.extract_to_file` (decoders filling batches ahead of `forward`, rows streamed to a
    temporary .npy file); returns how many photos it extracted."""
    # Heavy: imports TensorFlow.
    from tlcore.training import extraction, feature_cache, training_context

    context = training_context.TrainingContext(config=config, dataset=dataset, runs_dir=None)
    try:
        for split in ("train", "validation"):
            paths = dataset.paths(split)
            writer = feature_cache.FeatureWriter(
                context.feature_directory() / f"{split}.npy", len(paths), feature_shape
            )
            extraction.extract_to_file(context, forward, paths, writer)
    finally:
        context.close()
    return sum(len(dataset.paths(split)) for split in ("train", "validation"))


def cpu_time() -> float:
    """CPU seconds used so far by this process's threads and by its decoder processes, if any."""

    return time.process_time() + decoder_processes.cpu_seconds()


def section_throughput(dataset, root: Path, arguments) -> list[Row]:
    # Heavy: imports Keras.
    import keras

    from tlcore.models import backbones
    from tlcore.training.training_context import EXTRACTION_BATCH_SIZE

    size, splits = arguments.image_size, ("train", "validation")
    say(f"section 1: building {arguments.backbone} at {size} px and decoding the images into memory")
    base = backbones.build_base(arguments.backbone, size, arguments.weights)
    base.trainable = False
    inputs = keras.Input(shape=(size, size, 3), name="image")
    # The same extractor as extraction.extract_features builds.
    extractor = keras.Model(
        inputs, base(backbones.preprocessing_layer(arguments.backbone)(inputs), training=False), name="extractor"
    )
    decoded = {split: pipeline.load_images(dataset.paths(split), size).astype("float32") for split in splits}
    total = sum(len(images) for images in decoded.values())

    config = TrainConfig(
        data_dir=str(root),
        strategy="feature_extraction",
        backbone=arguments.backbone,
        weights=arguments.weights,
        image_size=size,
    )

    def from_files() -> int:
        # The forward pass compiled once, as extract_features does: steady-state throughput, as for b and c.
        return extract_from_files(config, dataset, forward, extractor.output.shape[1:])

    # One compiled forward pass for a (from the files) and b (on batches already decoded).
    forward = inference_function(extractor)

    def in_memory() -> int:
        for split in splits:
            for start in range(0, len(decoded[split]), EXTRACTION_BATCH_SIZE):
                forward(decoded[split][start : start + EXTRACTION_BATCH_SIZE])
        return total

    try:
        # Optional, and heavy: tf_keras is the seed notebook's Keras 2.
        import tf_keras  # noqa: F401

        seed_name = "seed loop: tf_keras ImageDataGenerator.flow_from_directory, predict per batch of 20"

        def seed() -> int:
            return seed_loop(extractor, root, size, dataset.num_classes)
    except ImportError:
        seed_name = (
            "seed loop (tf_keras not installed: keras.utils.load_img + img_to_array per file), predict per batch of 20"
        )
        all_paths = [path for split in splits for path in dataset.paths(split)]

        def seed() -> int:
            return load_img_loop(extractor, all_paths, size)

    # Warm-up: trace the forward pass (one trace serves a and b) and the seed's predict for batches of 20.
    forward(np.zeros((EXTRACTION_BATCH_SIZE, size, size, 3), "float32"))
    extractor.predict(np.zeros((SEED_BATCH_SIZE, size, size, 3), "float32"), verbose=0)

    methods = {"a": from_files, "b": in_memory, "c": seed}
    best = {key: float("inf") for key in methods}
    best_cpu = {}  # CPU seconds (all threads of this process and its decoder processes) of each best pass.
    counts = {}
    pass_ratios = []  # a/b of each repeat: a and b side by side, minutes apart at most.
    for repeat in range(arguments.repeats):  # Interleaved, so a busy spell hits every method alike.
        this_pass = {}
        for key, method in methods.items():
            started, started_cpu = time.perf_counter(), cpu_time()
            counts[key] = method()
            seconds, cpu_seconds = time.perf_counter() - started, cpu_time() - started_cpu
            if seconds < best[key]:
                best[key], best_cpu[key] = seconds, cpu_seconds
            say(
                f"section 1, repeat {repeat + 1}/{arguments.repeats}: {key} {counts[key] / seconds:.1f} images/s, "
                f"{cpu_seconds / seconds:.2f} cores busy"
            )
            this_pass[key] = seconds
        pass_ratios.append(this_pass["b"] / this_pass["a"])  # Same images: the rate ratio is the time ratio.
    rate = {key: counts[key] / best[key] for key in methods}
    cpu_per_image = {key: best_cpu[key] / counts[key] for key in methods}
    detail = f"best of {arguments.repeats}"
    cores = os.cpu_count() or 1
    # With every core busy, a cannot beat cores / (its CPU time per image): decoding adds CPU time
    # that the in-memory limit never spends, so this is the ratio a could reach at best.
    ceiling = min(1.0, cores / cpu_per_image["a"] / rate["b"])
    extractor = base = None  # Freed before the next section (the closures above are done with them).
    keras.backend.clear_session()
    gc.collect()
    return [
        Row(
            "1a",
            "extraction from JPEG files: extraction.extract_to_file (parallel decoding, streamed to disk)",
            f"{rate['a']:.1f} img/s ({counts['a']} images, {detail})",
            f"a/b {rate['a'] / rate['b']:.2f}",
            ">= 0.9",
            verdict(rate["a"] / rate["b"] >= 0.9),
        ),
        Row(
            "1b",
            "limit: the same forward pass on decoded in-memory batches",
            f"{rate['b']:.1f} img/s ({counts['b']} images, {detail})",
        ),
        Row(
            "1c",
            seed_name,
            f"{rate['c']:.1f} img/s ({counts['c']} images, {detail})",
            f"a/c {rate['a'] / rate['c']:.2f}",
            ">= 1.5",
            verdict(rate["a"] / rate["c"] >= 1.5),
        ),
        Row(
            "1d",
            f"CPU time per image, all threads and decoder processes (cores busy of {cores}), in the passes above",
            "; ".join(f"{key} {cpu_per_image[key] * 1000:.1f} ms ({best_cpu[key] / best[key]:.2f})" for key in methods),
            f"a/b at most {ceiling:.2f}",
        ),
        # On a shared machine the speed of the cores drifts from minute to minute; the ratio of each
        # pass (a, then b right after it) and their median show how much the best-of ratio owes to it.
        Row(
            "1e",
            "a/b of each pass (a and b one after the other), in order",
            " ".join(f"{ratio:.2f}" for ratio in pass_ratios),
            f"median {statistics.median(pass_ratios):.2f}",
        ),
    ]


# --- Sections 2-4: training runs --------------------------------------------------------------


def train_config(root: Path, arguments, strategy: str, **overrides):

    values = dict(
        data_dir=str(root),
        strategy=strategy,
        backbone=arguments.backbone,
        weights=arguments.weights,
        image_size=arguments.image_size,
        epochs=arguments.epochs,
        fine_tuning_epochs=arguments.epochs,
        augmented_views=arguments.views,
    )
    return from_preset("default", **{**values, **overrides})


def timed_train(config, runs_dir: Path, label: str) -> tuple[dict, float]:
    """Trains one config (nothing saved but the feature cache); returns (summary, wall seconds)."""
    # Heavy: imports Keras.
    import keras

    from tlcore.training import trainer

    say(f"{label}: training ...")
    started = time.perf_counter()
    summary = trainer.train(config, runs_dir=runs_dir)
    seconds = time.perf_counter() - started
    say(f"{label}: {seconds:.1f} s")
    keras.backend.clear_session()
    gc.collect()
    return summary, seconds


def section_cache(root: Path, arguments, scratch: Path) -> list[Row]:
    config = train_config(root, arguments, "feature_extraction")
    runs_dir = Path(tempfile.mkdtemp(prefix="runs-cache-", dir=scratch))
    cold, cold_seconds = timed_train(config, runs_dir, "section 2 cold cache")
    warm, warm_seconds = timed_train(config, runs_dir, "section 2 warm cache")
    cold_result, warm_result = cold["results"]["feature_extraction"], warm["results"]["feature_extraction"]
    ratio = warm_result["extraction_seconds"] / cold_result["extraction_seconds"]
    reused = warm_result["features_from_cache"] and not cold_result["features_from_cache"]
    return [
        Row(
            "2",
            "feature cache: extraction seconds, cold vs warm (same runs folder)",
            f"cold {cold_result['extraction_seconds']:.2f} s, warm {warm_result['extraction_seconds']:.3f} s "
            f"(warm from cache: {'yes' if warm_result['features_from_cache'] else 'NO'})",
            f"warm/cold {ratio:.3f}",
            "<= 0.05",
            verdict(ratio <= 0.05 and reused),
        ),
        Row(
            "2",
            f"feature cache: whole run seconds, cold vs warm ({config.epochs} epochs)",
            f"cold {cold_seconds:.1f} s, warm {warm_seconds:.1f} s",
            f"warm/cold {warm_seconds / cold_seconds:.2f}",
        ),
    ]


def _accuracy(result: dict) -> float:
    return float("nan") if result.get("val_accuracy") is None else result["val_accuracy"]


def section_views(root: Path, arguments, scratch: Path) -> list[Row]:
    runs = {}
    for label, views in (("cached", arguments.views), ("naive", 0)):
        config = train_config(root, arguments, "fine_tuning", augmented_views=views)
        runs_dir = Path(tempfile.mkdtemp(prefix=f"runs-{label}-", dir=scratch))
        runs[label] = timed_train(config, runs_dir, f"section 3 {label} (augmented_views={views})")
    rows = []
    for stage in ("frozen_augmented", "fine_tuning"):
        cached, naive = runs["cached"][0]["results"][stage], runs["naive"][0]["results"][stage]
        speedup = naive["seconds"] / cached["seconds"]
        difference = (_accuracy(cached) - _accuracy(naive)) * 100
        caching = (
            f" (caching the views: {cached['extraction_seconds']:.1f} s)"
            if cached.get("extraction_seconds") is not None
            else ""
        )
        rows += [
            Row(
                "3",
                f"{stage}: seconds, cached views (K={arguments.views}) vs naive, {arguments.epochs} epochs",
                f"cached {cached['seconds']:.1f} s{caching}, naive {naive['seconds']:.1f} s",
                f"speed-up {speedup:.2f}x",
                ">= 3x",
                verdict(speedup >= 3),
            ),
            Row(
                "3",
                f"{stage}: validation accuracy, cached vs naive",
                f"cached {_accuracy(cached):.3f}, naive {_accuracy(naive):.3f}",
                f"diff {difference:+.1f} pt",
                "within 1 pt",
                verdict(abs(difference) <= 1.0 + 1e-9),
            ),
        ]
    speedup = runs["naive"][1] / runs["cached"][1]
    rows.append(
        Row(
            "3",
            "both stages, whole run: seconds, cached vs naive",
            f"cached {runs['cached'][1]:.1f} s, naive {runs['naive'][1]:.1f} s",
            f"speed-up {speedup:.2f}x",
            ">= 3x",
            verdict(speedup >= 3),
        )
    )
    return rows


# The target for the whole seed schedule (30 + 30 + 30 epochs) on a 2-core machine: ten minutes.
SCHEDULE_TARGET_SECONDS = 600


def section_schedule(root: Path, arguments, scratch: Path) -> list[Row]:
    config = train_config(root, arguments, "all")
    runs_dir = Path(tempfile.mkdtemp(prefix="runs-all-", dir=scratch))
    summary, seconds = timed_train(config, runs_dir, "section 4 'all' schedule")
    results = [summary["results"][stage] for stage in PUBLISHED_ACCURACY]
    # Per stage: its seconds, and of them the seconds spent extracting (features, views, activations).
    stage_seconds = (
        " / ".join(f"{result.get('seconds') or 0:.0f}" for result in results)
        + " s, of which "
        + "extraction "
        + " / ".join(f"{result.get('extraction_seconds') or 0:.0f}" for result in results)
    )
    rows = [
        Row(
            "4",
            f"'all' schedule, default preset ({config.backbone}, {config.image_size} px, views "
            f"{config.augmented_views}): wall time",
            f"{seconds:.1f} s ({config.epochs} + {config.epochs} + {config.fine_tuning_epochs} epochs; "
            f"stages {stage_seconds} s)",
            "-",
            f"<= {SCHEDULE_TARGET_SECONDS} s",
            verdict(seconds <= SCHEDULE_TARGET_SECONDS),
        )
    ]
    for stage, published in PUBLISHED_ACCURACY.items():
        accuracy = _accuracy(summary["results"][stage])
        rows.append(
            Row(
                "4",
                f"'all' schedule: {stage} validation accuracy",
                f"{accuracy:.3f}",
                "-",
                f">= {published:.2f} (published VGG16)",
                verdict(accuracy >= published),
            )
        )
    return rows


# --- The table --------------------------------------------------------------------------------

COLUMNS = ("section", "what", "value(s)", "ratio", "target", "result")


def render(rows: list[Row], header: list[str], markdown: bool) -> str:
    cells = [(row.section, row.what, row.value, row.ratio, row.target, row.result) for row in rows]
    return table(COLUMNS, cells, header, markdown)


def table(columns: Sequence[str], cells: list[tuple[str, ...]], header: list[str], markdown: bool) -> str:
    """The header lines, then the cells under their column names: Markdown, or plain text in columns."""
    if markdown:
        lines = [f"{line}  " for line in header] + [""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "|".join("---" for _ in columns) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in cells]
        return "\n".join(lines)
    widths = [max(len(text) for text in column) for column in zip(columns, *cells)]
    lines = header + [""]
    lines.append("  ".join(name.ljust(width) for name, width in zip(columns, widths)).rstrip())
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)


def parse_sections(text: str) -> tuple[int, ...]:
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected section numbers like 1,2,3,4, received {text!r}") from None
    if not chosen or any(section not in SECTIONS for section in chosen):
        raise argparse.ArgumentTypeError(f"sections must be among {list(SECTIONS)}, received {text!r}")
    return tuple(chosen)


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="Measure feature-extraction throughput, the feature cache, cached augmented views and the "
        "whole schedule side by side, and print one table with ratios, targets and PASS/FAIL.",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"the data set folder (default {DEFAULT_DATA})")
    parser.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default="efficientnet_lite0",
        help="the backbone (default efficientnet_lite0)",
    )
    parser.add_argument("--weights", choices=WEIGHTS, default="imagenet", help="imagenet (default) or none (random)")
    parser.add_argument("--image-size", type=int, default=160, help="side of the square input (default 160)")
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N images per class per split (default: all)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of every stage in sections 2-4 (default: the preset's, 30)"
    )
    parser.add_argument(
        "--views", type=int, default=None, help="cached augmented views K in sections 3-4 (default: the preset's)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed passes per method in section 1; the best is reported (default 5)"
    )
    parser.add_argument("--sections", type=parse_sections, default=SECTIONS, help="which sections (default 1,2,3,4)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = build_parser().parse_args(argv)

    defaults = TrainConfig(data_dir="-")
    arguments.epochs = arguments.epochs if arguments.epochs is not None else defaults.epochs
    arguments.views = arguments.views if arguments.views is not None else defaults.augmented_views
    for name in ("limit", "repeats", "epochs"):
        value = getattr(arguments, name)
        if value is not None and value < 1:
            print(f"error: --{name} must be at least 1, received {value}.", file=sys.stderr)
            return 2
    if 3 in arguments.sections and arguments.views < 1:
        print(
            f"error: section 3 compares K cached views with none; --views must be at least 1, "
            f"received {arguments.views}.",
            file=sys.stderr,
        )
        return 2
    try:
        # Validates backbone, size, epochs and views the way training will.
        train_config(Path(arguments.data), arguments, "all")
        say(f"scanning {arguments.data}")
        dataset = folders.scan(arguments.data)
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="tlcore-bench-") as scratch:
        scratch = Path(scratch)
        root = link_subset(dataset, scratch / "data", arguments.limit)
        subset = folders.scan(root)
        counts = {split: len(subset.paths(split)) for split in ("train", "validation")}
        header = [
            f"Command: python -m benchmarks.throughput {shlex.join(argv)}".rstrip(),
            f"Machine: {machine_description()}",
            f"Data: {dataset.root} ({', '.join(subset.classes)}): {counts['train']} train / {counts['validation']} "
            f"validation images" + (f" (first {arguments.limit} per class and split)" if arguments.limit else ""),
        ]
        rows = []
        if 1 in arguments.sections:
            rows += section_throughput(subset, root, arguments)
        if 2 in arguments.sections:
            rows += section_cache(root, arguments, scratch)
        if 3 in arguments.sections:
            rows += section_views(root, arguments, scratch)
        if 4 in arguments.sections:
            rows += section_schedule(root, arguments, scratch)
    print(render(rows, header, arguments.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
