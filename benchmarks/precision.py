"""What `--precision` and `--xla` buy: throughput of the models training builds, per dtype policy.

    python -m benchmarks.precision [--backbones efficientnet_lite0:160,vgg16:150]
                                     [--precisions float32,mixed_bfloat16,mixed_float16]
                                     [--batch-size 32] [--large-batch 256] [--steps 10]
                                     [--data DIR] [--markdown]

Made for a GPU (it runs anywhere Keras does). For each backbone and dtype policy, in images/s on
random weights (the speed of a network does not depend on its weights) and random pixels:
    - forward: the frozen extractor (preprocessing + base), as feature extraction and the cached
      views run it, at the extraction batch size without and with XLA, and at a large batch with XLA;
    - train, staged fine-tuning: the unfrozen top block + head on cached boundary activations
      (the default path of `fine_tuning`), without and with XLA;
    - train, end to end: augmentation + base with its top block unfrozen + head on images (the
      `--end-to-end` path of `fine_tuning`), as the product compiles it (XLA only where every layer allows it).
With `--data` (a data set folder), two more: the image decoder's throughput on this machine's cores
(`pipeline.decoded_batches`, as feature extraction feeds a model), and per backbone and policy,
extraction from its JPEG files through `extraction.extract_to_file` with the XLA forward pass:
what feature extraction achieves, to read against the forward pass alone. Where this machine
decodes in processes (`data.decoder_processes`), both are measured with decoder threads too.

The models are built by the functions training uses (`backbones.build_base`, `heads.build_head`,
`heads.split_base`, `heads.assemble`, `augment.build_layers`) under the policy, and trained
with `heads.compile_model`. Under the TensorFlow backend the forward passes are
`inference.inference_function` and op determinism is on without XLA, exactly as in training; under
another Keras backend (JAX, PyTorch) they are Keras' `predict_on_batch` of the same models, and
"without XLA" means that backend's eager execution, which the product never uses: the table's header
names the backend. Progress goes to standard error, the table to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.throughput import extract_from_files, table
from tlcore.config import PRECISIONS, TrainConfig
from tlcore.data import decoders, folders, pipeline
from tlcore.data.dataset import DatasetError
from tlcore.models.inference import inference_function
from tlcore.models.registry import BACKBONES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_BACKBONES = "efficientnet_lite0:160,vgg16:150"
DEFAULT_PRECISIONS = "float32,mixed_bfloat16,mixed_float16"
COLUMNS = ("backbone", "precision", "what", "images/s", "vs float32")
WARMUP_STEPS = 2  # The first call traces and compiles; the second settles the autotuners.


@dataclass(frozen=True)
class Measurement:
    """One row: a rate in images/s, or a reason why there is none."""

    backbone: str
    precision: str
    what: str
    images_per_second: float | None
    note: str = ""


def say(message: str) -> None:
    """A progress line on standard error (the table alone goes to standard output)."""
    print(f"[bench_precision] {message}", file=sys.stderr, flush=True)


def parse_backbones(text: str) -> list[tuple[str, int]]:
    """'name:size,name:size' -> [(name, size)], each checked against the registry."""

    chosen = []
    for part in (piece.strip() for piece in text.split(",")):
        name, _, size = part.partition(":")
        if name not in BACKBONES or not size.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected backbone:size pairs like efficientnet_lite0:160 with a backbone among "
                f"{sorted(BACKBONES)}, received {part!r}"
            )
        if int(size) < BACKBONES[name].min_size:
            raise argparse.ArgumentTypeError(
                f"{name} needs an image size of at least {BACKBONES[name].min_size}, received {size}"
            )
        chosen.append((name, int(size)))
    return chosen


def parse_precisions(text: str) -> list[str]:
    """'float32,mixed_bfloat16' -> ['float32', 'mixed_bfloat16'], each one of config.PRECISIONS."""

    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or any(precision not in PRECISIONS for precision in chosen):
        raise argparse.ArgumentTypeError(f"precisions must be among {list(PRECISIONS)}, received {text!r}")
    return chosen


def device_description() -> str:
    """The Keras backend, its version and the devices it computes on."""
    # Heavy: imports Keras.
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        # Heavy: imports TensorFlow.
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"TensorFlow {tf.__version__}; devices: {', '.join(names) or 'CPU only'}"
    if backend == "jax":
        # Optional: only under the JAX backend.
        import jax

        return f"JAX {jax.__version__}; devices: {', '.join(device.device_kind for device in jax.devices())}"
    if backend == "torch":
        # Optional: only under the PyTorch backend.
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
        return f"PyTorch {torch.__version__}; devices: {device}"
    return backend


def images_per_second(step: Callable[[], object], batch_size: int, steps: int) -> float:
    """Runs `step` WARMUP_STEPS times untimed, then `steps` times timed; each call must return host
    values (numpy or Python numbers), so the device has finished when it returns."""
    for _ in range(WARMUP_STEPS):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - started)


def forward_function(model, xla: bool) -> Callable[[object], object]:
    """The forward pass feature extraction runs (pixel batch -> numpy features): the product's own
    under TensorFlow, Keras' `predict_on_batch` under another backend."""
    # Heavy: imports Keras.
    import keras

    if keras.backend.backend() == "tensorflow":
        return inference_function(model, jit_compile=xla)
    model.compile(jit_compile=xla)  # Only sets how predict_on_batch runs (no loss needed).
    return lambda batch: model.predict_on_batch(batch.astype("float32"))


def extraction_rate(forward, dataset, config) -> tuple[float, int]:
    """Images/s of the product's extraction from the data set's JPEG files (`bench.extract_from_files`);
    the second of two passes, so that every batch shape has been compiled before the timed one."""
    feature_shape = forward(np.zeros((1, config.image_size, config.image_size, 3), "uint8")).shape[1:]
    extract_from_files(config, dataset, forward, feature_shape)
    started = time.perf_counter()
    count = extract_from_files(config, dataset, forward, feature_shape)
    return count / (time.perf_counter() - started), count


def train_step(model, inputs, targets, xla: bool) -> tuple[Callable[[], object], bool]:
    """A training step as training compiles it; returns (step, whether Keras compiled it with XLA)."""
    # Heavy: imports TensorFlow.
    from tlcore.models import heads

    heads.compile_model(model, 2, "rmsprop", 1e-5, jit_compile=xla)
    return (lambda: model.train_on_batch(inputs, targets)), bool(model.jit_compile)


def set_determinism(xla: bool) -> None:
    """As training does under TensorFlow: deterministic ops without XLA, not with it."""
    # Heavy: imports Keras.
    import keras

    if keras.backend.backend() == "tensorflow":
        # Heavy: imports TensorFlow.
        from tlcore.training.trainer import set_determinism as set_tensorflow_determinism

        set_tensorflow_determinism(not xla)


def measure_backbone(name: str, size: int, precision: str, arguments, dataset=None) -> list[Measurement]:
    """Every model row of one backbone under one dtype policy (and extraction from its files, with a data set)."""
    # Heavy: imports Keras.
    import keras

    from tlcore.data import augment, decoders
    from tlcore.models import backbones, heads

    config = TrainConfig(
        data_dir=str(dataset.root) if dataset else "-",
        backbone=name,
        weights="none",
        image_size=size,
        precision=precision,
        batch_size=arguments.batch_size,
    )
    generator = np.random.default_rng(0)
    rows = []

    def record(what: str, rate: float | None, note: str = "") -> None:
        # Named with its size: the same backbone at two sizes makes two sets of rows.
        rows.append(Measurement(f"{name} {size} px", precision, what, rate, note))
        say(
            f"{name} {size} px, {precision}: {what}: "
            + (f"{rate:.1f} images/s" if rate is not None else "-")
            + (f" ({note})" if note else "")
        )

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        base = heads.build_frozen_base(config)
        preprocess = backbones.preprocessing_layer(name)
        inputs = keras.Input(shape=(size, size, 3), name="image")
        extractor = keras.Model(inputs, base(preprocess(inputs), training=False), name="extractor")
        passes = [(arguments.batch_size, False), (arguments.batch_size, True)]
        if arguments.large_batch != arguments.batch_size:
            passes.append((arguments.large_batch, True))
        for batch_size, xla in passes:
            set_determinism(xla)
            pixels = generator.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
            forward = forward_function(extractor, xla)
            rate = images_per_second(lambda: forward(pixels), batch_size, arguments.steps)
            record(f"forward, batch {batch_size}, XLA {'on' if xla else 'off'}", rate)
            if dataset is not None and batch_size == arguments.batch_size and xla:
                for setting in decoder_settings():
                    with decoding_with(setting):
                        rate, count = extraction_rate(forward, dataset, config)
                        record(
                            f"extraction from JPEG files (extraction.extract_to_file), batch {batch_size}, "
                            f"XLA on, {decoders.decoder_description()}",
                            rate,
                            f"{count} photos",
                        )

        bottom, top = heads.split_base(base, name)
        heads.unfreeze_top_block(base, name)
        head = heads.build_head(base.output.shape[1:], 2, config)
        boundary = keras.Input(shape=bottom.output.shape[1:], name="boundary")
        staged = keras.Model(boundary, head(top(boundary, training=False)), name="staged_classifier")
        activations = generator.standard_normal((arguments.batch_size, *bottom.output.shape[1:])).astype("float32")
        targets = generator.integers(0, 2, (arguments.batch_size, 1)).astype("float32")
        for xla in (False, True):
            set_determinism(xla)
            step, compiled = train_step(staged, activations, targets, xla)
            record(
                f"train, staged fine-tuning (top block + head on cached activations), XLA {'on' if xla else 'off'}",
                images_per_second(step, arguments.batch_size, arguments.steps),
                "" if compiled == xla else "XLA not allowed by every layer",
            )

        augmentation = augment.build_layers(config.augmentation, seed=config.seed)
        end_to_end = heads.assemble(size, base, head, preprocess, augmentation)
        pixels = generator.uniform(0, 255, (arguments.batch_size, size, size, 3)).astype("float32")
        for xla in (False, True):
            set_determinism(xla)
            step, compiled = train_step(end_to_end, pixels, targets, xla)
            if xla and not compiled:
                record(
                    "train, end to end (augmentation + top block unfrozen + head), XLA on",
                    None,
                    "not allowed: Keras' random zoom and translation layers do not compile with XLA",
                )
                continue
            record(
                f"train, end to end (augmentation + top block unfrozen + head), XLA {'on' if xla else 'off'}",
                images_per_second(step, arguments.batch_size, arguments.steps),
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
        set_determinism(False)
        keras.backend.clear_session()
        gc.collect()
    return rows


def decoder_settings() -> list[str]:
    """The decoders to measure: this machine's default, and threads beside it where that is processes."""

    return ["default", "threads"] if decoders.decoder_processes() else ["default"]


@contextlib.contextmanager
def decoding_with(setting: str):
    """Within: `pipeline.decoded_batches` decodes as this machine does by default, or in threads ("threads")."""
    previous = os.environ.get("TLCORE_DECODER_PROCESSES")
    if setting == "threads":
        os.environ["TLCORE_DECODER_PROCESSES"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TLCORE_DECODER_PROCESSES", None)
        else:
            os.environ["TLCORE_DECODER_PROCESSES"] = previous


def measure_decoding(dataset, sizes: Sequence[int], arguments) -> list[Measurement]:
    """The decoder's rate on this machine's cores, as feature extraction feeds a model: in this machine's
    default decoders, and in threads too where the default is processes."""

    paths = [path for split in ("train", "validation") for path in dataset.paths(split)]
    rows = []
    for size in sizes:
        for setting in decoder_settings():
            with decoding_with(setting):
                for batch in pipeline.decoded_batches(paths[: arguments.batch_size], size, arguments.batch_size):
                    pass  # Warm-up: the decoders start and the first files reach the page cache.
                started = time.perf_counter()
                count = sum(len(batch) for batch in pipeline.decoded_batches(paths, size, arguments.batch_size))
                rate = count / (time.perf_counter() - started)
                what = (
                    f"JPEG decoding at {size} px, pipeline.decoded_batches, {decoders.decoder_description()} on "
                    f"{os.cpu_count()} cores ({count} files)"
                )
            say(f"{what}: {rate:.1f} images/s")
            rows.append(Measurement("-", "-", what, rate))
    return rows


def relative_rates(rows: list[Measurement]) -> list[tuple[str, ...]]:
    """Table cells; each rate also as a multiple of the same row under float32."""
    float32 = {(row.backbone, row.what): row.images_per_second for row in rows if row.precision == "float32"}
    cells = []
    for row in rows:
        reference = float32.get((row.backbone, row.what))
        rate = "-" if row.images_per_second is None else f"{row.images_per_second:.1f}"
        if row.note:
            rate = f"{rate} ({row.note})"
        ratio = (
            f"{row.images_per_second / reference:.2f}x"
            if row.images_per_second is not None and reference and row.precision != "-"
            else "-"
        )
        cells.append((row.backbone, row.precision, row.what, rate, ratio))
    return cells


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.precision",
        description="Measure the throughput of the models training builds under each dtype policy, without and "
        "with XLA (forward passes and training steps, images/s), and print one table. Made for a GPU.",
    )
    parser.add_argument(
        "--backbones",
        type=parse_backbones,
        default=parse_backbones(DEFAULT_BACKBONES),
        help=f"backbone:image_size pairs, comma separated (default {DEFAULT_BACKBONES})",
    )
    parser.add_argument(
        "--precisions",
        type=parse_precisions,
        default=parse_precisions(DEFAULT_PRECISIONS),
        help=f"dtype policies, comma separated (default {DEFAULT_PRECISIONS})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="the batch of the forward passes and training steps (default 32, as training's)",
    )
    parser.add_argument(
        "--large-batch",
        type=int,
        default=256,
        help="the batch of the last forward row, to show what a larger batch buys (default 256)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed calls per row, after 2 untimed (default 10)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a data set folder: also measure the image decoder and extraction from its photos",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = build_parser().parse_args(argv)
    for name in ("batch_size", "large_batch", "steps"):
        value = getattr(arguments, name)
        if value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, received {value}.", file=sys.stderr)
            return 2
    if arguments.data is not None and not arguments.data.is_dir():
        print(f"error: --data {arguments.data} is not a folder.", file=sys.stderr)
        return 2
    # Heavy: imports Keras.
    import keras

    header = [
        f"Command: python -m benchmarks.precision {shlex.join(argv)}".rstrip(),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Keras {keras.__version__} on "
        f"{device_description()}; Python {platform.python_version()}",
        "Random weights and pixels; rates in images/s after 2 untimed calls",
    ]
    dataset = None
    if arguments.data is not None:
        try:
            dataset = folders.scan(arguments.data)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        header.append(
            f"Data: {dataset.root}: {len(dataset.paths('train'))} train / "
            f"{len(dataset.paths('validation'))} validation photos"
        )
    rows = []
    if dataset is not None:  # First: decoding is quick, and it tells how fast any extraction can be.
        rows += measure_decoding(dataset, sorted({size for _, size in arguments.backbones}), arguments)
    for name, size in arguments.backbones:
        for precision in arguments.precisions:
            rows += measure_backbone(name, size, precision, arguments, dataset)
    print(table(COLUMNS, relative_rates(rows), header, arguments.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
