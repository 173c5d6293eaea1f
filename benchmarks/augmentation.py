"""The augmentation's cost: one resampling (what training uses) against Keras' three geometric layers.

python -m benchmarks.augmentation [--batches 30] [--image-size 160] [--repeats 2]

Frozen + augmentation caches each augmented view by one pass of the augmentation and one of the frozen base
(`tlcore.models.inference.augmented_inference_function`), so the augmentation's speed sets part of that stage's
time. Timed on batches of 32 random images in a `tf.function`, after one warm-up batch, with the default
preset's augmentation (left-right flips, rotation 10, shifts 0.1, zoom 0.1):
- "three Keras layers": RandomFlip, RandomRotation, RandomTranslation and RandomZoom, each resampling the image
  (what `tlcore.data.augment.build_layers` built before `RandomAffine`);
- "one resampling": `build_layers` as it is (RandomFlip, then `tlcore.models.layers.RandomAffine`);
- "the base's forward pass": EfficientNet-Lite0 with ImageNet weights at the same size, for scale.

Prints one table (images per second, each repeat) and what caching one view costs with each augmentation;
exits 1 when the one resampling is not faster than the three layers. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from tlcore.config import AugmentationConfig

BATCH_SIZE = 32


def three_keras_layers(settings, seed: int):
    """The augmentation as it was built before RandomAffine: one Keras layer per geometric change."""
    # Heavy: imports TensorFlow (after --help).
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(settings.rotation_degrees / 360.0, fill_mode=settings.fill_mode, seed=seed + 1),
            keras.layers.RandomTranslation(
                settings.height_shift, settings.width_shift, fill_mode=settings.fill_mode, seed=seed + 2
            ),
            keras.layers.RandomZoom(settings.zoom, fill_mode=settings.fill_mode, seed=seed + 3),
        ]
    )


def images_per_second(function, batch, batches: int) -> float:
    function(batch).numpy()  # Warm-up: traces the graph.
    started = time.perf_counter()
    for _ in range(batches):
        function(batch).numpy()
    return batches * len(batch) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches of 32 per measurement (default 30)")
    parser.add_argument("--image-size", type=int, default=160, help="image side in pixels (default 160)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each row (default 2)")
    arguments = parser.parse_args(argv)

    # Heavy: imports TensorFlow (after --help).
    import tensorflow as tf

    from tlcore.data import augment
    from tlcore.models import efficientnet_lite

    settings = AugmentationConfig()
    size = arguments.image_size
    batch = tf.constant(np.random.default_rng(0).uniform(0, 255, (BATCH_SIZE, size, size, 3)).astype("float32"))
    three, one = three_keras_layers(settings, seed=1), augment.build_layers(settings, seed=1)
    base = efficientnet_lite.EfficientNetLite0(input_shape=(size, size, 3), include_top=False, weights="imagenet")
    rows = {
        "three Keras layers (flip, rotation, shift, zoom)": tf.function(lambda images: three(images, training=True)),
        "one resampling (flip, RandomAffine): training's": tf.function(lambda images: one(images, training=True)),
        "the base's forward pass (EfficientNet-Lite0)": tf.function(lambda images: base(images, training=False)),
    }
    measured = {name: [] for name in rows}
    for _ in range(arguments.repeats):
        for name, function in rows.items():
            measured[name].append(images_per_second(function, batch, arguments.batches))

    print(f"augmentation {settings.to_dict()}, {size} px, batches of {BATCH_SIZE}, {arguments.batches} batches")
    print(f"{'':<52} {'img/s (median)':>14}  each repeat")
    for name, values in measured.items():
        print(f"{name:<52} {statistics.median(values):>14,.0f}  {' '.join(f'{value:,.0f}' for value in values)}")
    base_rate = statistics.median(measured["the base's forward pass (EfficientNet-Lite0)"])
    costs = {}
    for name in list(rows)[:2]:
        costs[name] = 1 / base_rate + 1 / statistics.median(measured[name])
        print(f"one cached view with {name.split(' (')[0]}: {1000 * costs[name]:.2f} ms per image")
    old, new = costs.values()
    print(f"caching a view costs {1 - new / old:.0%} less with one resampling")
    if new >= old:
        print("MISS: the one resampling is not faster than the three layers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
