"""The command-line interface: the same functions the dashboard calls, for headless use.

python -m tlcore scan DIR [--json]
python -m tlcore train --data DIR [--strategy ...] [--backbone ...] [...] [--json]
python -m tlcore predict --run RUN IMAGE_OR_FOLDER_OR_ZIP... [--top N] [--csv OUT.csv] [--json]
python -m tlcore evaluate --run RUN [--split validation|test] [--json]
python -m tlcore export --run RUN --format {keras,savedmodel,tflite,tflite-int8} [--output PATH] [--json]
python -m tlcore runs [--json]
python -m tlcore stop RUN
python -m tlcore explore --data DIR [--backbone ...] [--image-size N] [--threshold T] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from tlcore import console, progress


def _print_json(value) -> None:
    print(json.dumps(value, indent=None, sort_keys=False))


def command_scan(arguments: argparse.Namespace) -> int:
    from tlcore.data import folders
    from tlcore.data.dataset import DatasetError

    try:
        dataset = folders.scan(arguments.folder, validation_fraction=arguments.validation_fraction, seed=arguments.seed)
    except (DatasetError, ValueError) as error:
        if arguments.json:
            _print_json({"error": str(error)})
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.json:
        _print_json(dataset.to_json())
        return 0
    counts = dataset.counts()
    print(f"Data set: {dataset.root} ({dataset.layout} layout)")
    print(f"Classes ({dataset.num_classes}): {', '.join(dataset.classes)}")
    width = max(len(name) for name in dataset.classes)
    for split, per_class in counts.items():
        total = sum(per_class.values())
        print(f"  {split}: {total} images")
        for name, count in per_class.items():
            print(f"    {name:<{width}}  {count}")
    if dataset.rejected:
        print(f"Rejected ({len(dataset.rejected)}):")
        for item in dataset.rejected:
            print(f"  {item.name}: {item.reason}")
    else:
        print("Rejected: none")
    return 0


def _training_overrides(arguments: argparse.Namespace) -> dict:
    """TrainConfig fields from the flags that were given (None = not given, the preset decides)."""
    from tlcore.config import AugmentationConfig

    augmentation = None
    augmentation_flags = {
        "rotation_degrees": arguments.rotation,
        "width_shift": arguments.width_shift,
        "height_shift": arguments.height_shift,
        "zoom": arguments.zoom,
        "horizontal_flip": arguments.horizontal_flip,
        "vertical_flip": arguments.vertical_flip,
        "brightness": arguments.brightness,
        "contrast": arguments.contrast,
    }
    given = {key: value for key, value in augmentation_flags.items() if value is not None}
    if given:
        augmentation = AugmentationConfig(**given)
    return {
        "data_dir": str(arguments.data),
        "strategy": arguments.strategy,
        "backbone": arguments.backbone,
        "weights": arguments.weights,
        "alpha": arguments.alpha,
        "image_size": arguments.image_size,
        "epochs": arguments.epochs,
        "fine_tuning_epochs": arguments.fine_tuning_epochs,
        "batch_size": arguments.batch_size,
        "learning_rate": arguments.learning_rate,
        "fine_tuning_learning_rate": arguments.fine_tuning_learning_rate,
        "optimizer": arguments.optimizer,
        "head": arguments.head,
        "dense_units": arguments.dense_units,
        "dropout": arguments.dropout,
        "validation_fraction": arguments.validation_fraction,
        "seed": arguments.seed,
        "augmentation": augmentation,
        "augmented_views": 0
        if getattr(arguments, "end_to_end", False)
        else getattr(arguments, "augmented_views", None),
        "early_stopping_patience": getattr(arguments, "early_stopping", None),
        "class_weight": getattr(arguments, "class_weight", None),
        "distribution": getattr(arguments, "distribution", None),
        "cpu_replicas": getattr(arguments, "cpu_replicas", None),
        "replica_scaling": getattr(arguments, "replica_scaling", None),
        "precision": getattr(arguments, "precision", None),
        "jit_compile": getattr(arguments, "xla", None),
    }


def command_train(arguments: argparse.Namespace) -> int:
    from tlcore import config as config_module
    from tlcore.runs import store, worker

    try:
        config = config_module.from_preset(arguments.preset, **_training_overrides(arguments))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runs_dir = arguments.runs_dir or store.default_runs_dir()
    run = store.create(config, runs_dir)
    worker.limit_malloc_arenas()  # Before TensorFlow starts its threads.
    console.import_tensorflow_quietly(arguments.verbose)
    print(f"Run: {run.path}", file=sys.stderr, flush=True)
    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        status, exit_code = worker.execute_at_terminal(run, runs_dir=runs_dir, stream=sys.stderr, display=display)
    finally:
        display.close()
    results = {
        stage: {key: result.get(key) for key in ("val_accuracy", "val_loss", "best_val_accuracy", "epochs", "seconds")}
        for stage, result in (status.get("results") or {}).items()
    }
    if arguments.json:
        summary = run.summary()
        _print_json(
            {
                "run": str(run.path),
                "status": status["state"],
                "error": status.get("error"),
                "results": results,
                "replicas": summary.get("replicas"),
                "global_batch_size": summary.get("global_batch_size"),
            }
        )
    else:
        print(f"Run {run.id}: {status['state']}" + (f" ({status['error']})" if status.get("error") else ""))
        for stage, result in results.items():
            accuracy = result["val_accuracy"]
            print(
                f"  {stage}: val_accuracy={accuracy if accuracy is None else round(accuracy, 4)} "
                f"val_loss={result['val_loss'] if result['val_loss'] is None else round(result['val_loss'], 4)} "
                f"({result['seconds']:.0f} s)"
            )
    return exit_code


def command_lr_find(arguments: argparse.Namespace) -> int:
    console.import_tensorflow_quietly(arguments.verbose)
    from tlcore import config as config_module
    from tlcore.data.dataset import DatasetError
    from tlcore.runs import store
    from tlcore.training import lr_finder

    try:
        config = config_module.from_preset(
            arguments.preset,
            data_dir=str(arguments.data),
            backbone=arguments.backbone,
            weights=arguments.weights,
            image_size=arguments.image_size,
            batch_size=arguments.batch_size,
            head=arguments.head,
            optimizer=arguments.optimizer,
            seed=arguments.seed,
        )
        sweep = lr_finder.find_learning_rate(
            config,
            runs_dir=arguments.runs_dir or store.default_runs_dir(),
            start=arguments.start,
            end=arguments.end,
            steps=arguments.steps,
        )
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.json:
        _print_json(sweep.to_json())
    else:
        for rate, loss in zip(
            sweep.learning_rates[:: max(1, len(sweep.learning_rates) // 20)],
            sweep.losses[:: max(1, len(sweep.losses) // 20)],
        ):
            print(f"  learning rate {rate:9.2e}  loss {loss:.4f}")
        print(f"Suggested learning rate for the head: {sweep.suggestion:.2e}")
    return 0


def command_worker(arguments: argparse.Namespace) -> int:
    from tlcore.runs import store, worker

    run = store.Run(Path(arguments.run_folder))
    # A lower priority than the dashboard that launched it: pages stay responsive while it trains.
    worker.lower_priority()
    worker.limit_malloc_arenas()
    status = worker.execute(run, runs_dir=arguments.runs_dir, stream=sys.stdout)
    return 0 if status["state"] in ("done", "stopped") else 1


def command_predict(arguments: argparse.Namespace) -> int:
    console.import_tensorflow_quietly(arguments.verbose)
    from tlcore.runs import store
    from tlcore.serving import predict

    try:
        predictor = predict.load(arguments.run, arguments.runs_dir)
    except (ValueError, predict.ModelLoadError) as error:
        if arguments.json:
            _print_json({"error": str(error)})
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        results = _predict_arguments(predictor, arguments.images, arguments.top, display)
    except ValueError as error:  # Includes zips.UnsafeArchiveError's message via _predict_arguments.
        if arguments.json:
            _print_json({"error": str(error)})
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        display.close()
    if arguments.csv:
        from tlcore.serving import batch

        store.write_atomic(Path(arguments.csv), batch.to_csv([batch.row_from_result(item) for item in results]))
        print(f"Wrote {len(results)} rows to {arguments.csv}", file=sys.stderr)
    if arguments.json:
        _print_json(results)
    else:
        for result in results:
            if "error" in result:
                print(f"{result['image']}: error: {result['error']}")
            else:
                ranking = ", ".join(f"{item['label']} {item['probability']:.3f}" for item in result["top"])
                print(f"{result['image']}: {ranking}")
    return 1 if any("error" in result for result in results) else 0


def _predict_arguments(predictor, arguments: Sequence[str], top: int, display=None) -> list[dict]:
    """predict_sources results for image files, folders (recursively) and zip archives, in argument order."""
    from tlcore.data import zips
    from tlcore.serving import batch, predict

    results = []
    for argument in arguments:
        if Path(argument).is_dir() or batch.is_zip(argument):
            try:
                rows = batch.predict_folder(predictor, argument, top=top, display=display)
            except zips.UnsafeArchiveError as error:
                raise ValueError(str(error)) from None
            for row in rows:
                name = f"{argument.rstrip('/')}/{row['file']}"
                results.append(
                    {"image": name, "error": row["error"]} if row["error"] else {"image": name, "top": row["top_k"]}
                )
        else:
            results += predict.predict_sources(predictor, [Path(argument)], names=[argument], top=top)
    return results


def command_evaluate(arguments: argparse.Namespace) -> int:
    console.import_tensorflow_quietly(arguments.verbose)
    from tlcore.data.dataset import DatasetError
    from tlcore.insight import evaluate
    from tlcore.serving import predict

    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        result = evaluate.evaluate(arguments.run, arguments.split, arguments.runs_dir, display=display)
    except (ValueError, DatasetError, predict.ModelLoadError) as error:
        if arguments.json:
            _print_json({"error": str(error)})
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        display.close()
    if arguments.json:
        _print_json(result.to_dict())
        return 0
    print(f"{result.split}: {result.images} images, accuracy {result.accuracy:.4f}")
    width = max(len(name) for name in result.classes)
    print(f"Confusion matrix (rows: true class, columns: predicted class in the order {', '.join(result.classes)}):")
    for name, row in zip(result.classes, result.confusion):
        print(f"  {name:<{width}}  " + " ".join(f"{count:>5}" for count in row))
    print(f"  {'class':<{width}}  precision  recall     f1  support")
    for row in result.per_class():
        print(
            f"  {row['class']:<{width}}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['f1']:>5.4f}  "
            f"{row['support']:>7}"
        )
    print(f"Mistakes ({len(result.mistakes)}), most confident first:")
    for mistake in result.mistakes[: arguments.mistakes]:
        print(
            f"  {mistake.path}: {mistake.true_label} predicted as {mistake.predicted_label} "
            f"({mistake.probability:.3f}, loss {mistake.loss:.3f})"
        )
    if len(result.mistakes) > arguments.mistakes:
        print(f"  ... and {len(result.mistakes) - arguments.mistakes} more (--json lists them all)")
    return 0


def command_export(arguments: argparse.Namespace) -> int:
    console.import_tensorflow_quietly(arguments.verbose)
    from tlcore.serving import export, predict

    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        result = export.export(arguments.run, arguments.format, arguments.output, arguments.runs_dir, display=display)
    except (ValueError, predict.ModelLoadError, export.ExportError) as error:
        if arguments.json:
            _print_json({"error": str(error)})
        else:
            print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, export.ExportError) else 2
    finally:
        display.close()
    if arguments.json:
        _print_json(result.to_dict())
        return 0
    print(f"Exported {result.format}: {result.path}")
    print("Labels: labels.json inside the zip" if result.format == "keras" else f"Labels: {result.labels_path}")
    print(
        f"Checked on {result.images} validation images: same top-1 class for {result.agreement:.2%} "
        f"(required {export.REQUIRED_AGREEMENT[result.format]:.0%}), largest probability difference "
        f"{result.max_difference:.6f}"
    )
    return 0


def command_runs(arguments: argparse.Namespace) -> int:
    from tlcore.runs import store

    rows = [store.describe(run) for run in store.list_runs(arguments.runs_dir)]
    if arguments.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"No runs in {arguments.runs_dir or store.default_runs_dir()}.")
        return 0

    def value(number: float | None) -> str:
        return "-" if number is None else f"{number:.4f}"

    def text(cell) -> str:
        return "-" if cell is None else str(cell)  # A half-written run folder has no strategy, backbone ...

    # Columns as wide as their longest cell: run ids differ in length with their strategy and backbone.
    widths = {key: max(len(text(row[key])) for row in rows) for key in ("run", "state", "strategy", "model")}
    for row in rows:
        # The model's own accuracy beside the best of any epoch: after 1 -> 2 -> 3 they can differ.
        columns = "  ".join(text(row[key]).ljust(width) for key, width in widths.items())
        print(
            f"{columns}  {text(row['image_size'])} px  epochs={row['epochs']}  "
            f"best_val_accuracy={value(row['best_val_accuracy'])}  "
            f"model_val_accuracy={value(row['model_val_accuracy'])}"
        )
    return 0


def command_stop(arguments: argparse.Namespace) -> int:
    from tlcore.runs import store

    try:
        run = store.resolve(arguments.run, arguments.runs_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = run.state
    if state in store.FINAL_STATES:
        print(f"Run {run.id} already ended ({state}).")
        return 0
    run.request_stop()
    print(f"Asked run {run.id} to stop; it ends after its current batch.")
    return 0


def command_explore(arguments: argparse.Namespace) -> int:
    from tlcore.data import folders
    from tlcore.data.dataset import DatasetError
    from tlcore.insight import explore
    from tlcore.runs import store

    try:
        settings = explore.ExploreSettings(
            backbone=arguments.backbone, image_size=arguments.image_size, threshold=arguments.threshold
        )
        dataset = folders.scan(arguments.data, validation_fraction=arguments.validation_fraction, seed=arguments.seed)
    except (DatasetError, ValueError) as error:
        if arguments.json:
            _print_json({"error": str(error)})
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    runs_dir = arguments.runs_dir or store.default_runs_dir()
    exploration = explore.explore(dataset, settings, runs_dir=runs_dir, stream=sys.stderr)
    if arguments.json:
        _print_json(exploration.to_json())
    else:
        print(explore.summary(exploration, top=arguments.top))
    return 0


def add_explore_parser(commands) -> None:
    """Registers `explore` (kept in one function, apart from the other commands)."""
    from tlcore.insight import explore
    from tlcore.models.registry import BACKBONES

    exploring = commands.add_parser(
        "explore",
        help="map a data set, find near-duplicates and leaks between splits or classes, and likely wrong labels",
        description="Explore a data set from a pretrained backbone's pooled features (kept in the runs folder's "
        "feature cache): a 2-D map of every image (principal components), the pairs of images at least "
        "--threshold alike (a leak when they join train to validation/test, or two classes), and the likely "
        "wrong labels (confident learning on out-of-fold probabilities) with a suggested class.",
    )
    exploring.add_argument("--data", required=True, help="the data set folder")
    exploring.add_argument(
        "--backbone", choices=sorted(BACKBONES), default=explore.DEFAULT_BACKBONE, help="the pretrained base"
    )
    exploring.add_argument(
        "--image-size", type=int, default=explore.DEFAULT_IMAGE_SIZE, help="input side in pixels (default 160)"
    )
    exploring.add_argument(
        "--threshold",
        type=float,
        default=explore.DEFAULT_THRESHOLD,
        help=f"cosine similarity from which two images are near-duplicates (default {explore.DEFAULT_THRESHOLD})",
    )
    exploring.add_argument(
        "--validation-fraction", type=float, default=0.2, help="held-out share per class, flat layout (0.2)"
    )
    exploring.add_argument("--seed", type=int, default=1337, help="seed of that split (default 1337)")
    exploring.add_argument("--top", type=int, default=10, help="pairs and suspects listed in the summary (10)")
    _add_runs_dir(exploring)
    exploring.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"map": [{path, label, split, x, y}], "duplicates": [{a, b, similarity, '
        'leak}], "suspects": [{path, label, suggested, score}]}',
    )
    exploring.set_defaults(handler=command_explore)


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run id (folder name in the runs folder) or its path")


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=None, help="the runs folder (default: $TLCORE_RUNS_DIR, else ./runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tlcore",
        description="Transfer Learning Studio from the command line: scan a data set, train with the "
        "three transfer-learning strategies, predict, and manage runs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        help="report the classes, images per split and class, and rejected files of a data set",
        description="Scan a data set folder: either train/<class>/ + validation/<class>/ (+ test/), "
        "or one folder of <class>/ subfolders that is split per class with a seed. Every image is "
        "decoded once; files that cannot be used are listed with their reason.",
    )
    scan.add_argument("folder", help="the data set folder")
    scan.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation in the flat layout (default 0.2)",
    )
    scan.add_argument("--seed", type=int, default=1337, help="seed of the train/validation split (default 1337)")
    scan.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with classes, splits (split -> class -> count) and rejected",
    )
    scan.set_defaults(handler=command_scan)

    from tlcore.config import (
        CLASS_WEIGHTS,
        DISTRIBUTIONS,
        HEADS,
        OPTIMIZERS,
        PRECISIONS,
        PRESETS,
        REPLICA_SCALING,
        STRATEGY_CHOICES,
        WEIGHTS,
    )
    from tlcore.models.registry import BACKBONES

    train = commands.add_parser(
        "train",
        help="train a model with one of the strategies (or all three in sequence)",
        description="Train on a data set folder and record everything in a new run folder. Flags not "
        "given take the preset's value: 'default' (EfficientNet-Lite0, 160 px, pooled head, CPU friendly) "
        "or 'seed' (the classic notebook: VGG16, 150 px, Flatten + Dense 256, RMSprop 2e-5 / 1e-5, 30 + 30 "
        "epochs). Progress goes to standard error.",
    )
    train.add_argument("--data", required=True, help="the data set folder")
    train.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default=None,
        help="feature_extraction, frozen_augmented, fine_tuning (after frozen_augmented), "
        "scratch (baseline CNN) or all (1, 2 and 3 in sequence; default)",
    )
    train.add_argument("--backbone", choices=sorted(BACKBONES), default=None, help="the pretrained base")
    train.add_argument("--preset", choices=sorted(PRESETS), default="default", help="starting settings")
    train.add_argument("--weights", choices=WEIGHTS, default=None, help="imagenet (default) or none (random)")
    train.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="MobileNet/MobileNetV2 width multiplier; ImageNet weights exist for 0.25, 0.5, 0.75, 1 "
        "(MobileNet) and 0.35, 0.5, 0.75, 1, 1.3, 1.4 (MobileNetV2)",
    )
    train.add_argument("--image-size", type=int, default=None, help="side of the square input, in pixels")
    train.add_argument("--epochs", type=int, default=None, help="epochs of each strategy (fine-tuning: see below)")
    train.add_argument("--fine-tuning-epochs", type=int, default=None, help="epochs of the fine-tuning stage")
    train.add_argument("--batch-size", type=int, default=None, help="images per training step")
    train.add_argument("--learning-rate", type=float, default=None, help="learning rate of the head")
    train.add_argument(
        "--fine-tuning-learning-rate", type=float, default=None, help="learning rate once the top block is unfrozen"
    )
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="rmsprop or adam")
    train.add_argument(
        "--head", choices=HEADS, default=None, help="flatten (the seed's) or global_average (pooling) before Dense"
    )
    train.add_argument("--dense-units", type=int, default=None, help="units of the head's Dense layer")
    train.add_argument("--dropout", type=float, default=None, help="dropout rate of the head")
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="share held out per class when the data set has no validation folder",
    )
    train.add_argument("--seed", type=int, default=None, help="random seed (split, augmentation, weights)")
    train.add_argument(
        "--augmented-views",
        type=int,
        default=None,
        help="augmented views of each training image cached through the frozen base for "
        "frozen_augmented and fine_tuning (default 10; a run of fewer epochs caches one per epoch); "
        "epochs then only run the top block and head",
    )
    train.add_argument(
        "--end-to-end",
        action="store_true",
        help="train frozen_augmented and fine_tuning end to end, augmenting every epoch anew "
        "(exact but much slower; same as --augmented-views 0)",
    )
    train.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop a stage after PATIENCE epochs without a better validation loss and restore "
        "the best weights (default 0: off)",
    )
    train.add_argument(
        "--class-weight",
        choices=CLASS_WEIGHTS,
        default=None,
        help="weight the loss by inverse class frequency: auto (when the largest class has 1.5x "
        "the smallest; default), balanced (always) or none",
    )
    augmentation = train.add_argument_group("augmentation (frozen_augmented, fine_tuning, scratch)")
    augmentation.add_argument("--rotation", type=float, default=None, help="maximum rotation in degrees (40)")
    augmentation.add_argument("--width-shift", type=float, default=None, help="maximum horizontal shift (0.1)")
    augmentation.add_argument("--height-shift", type=float, default=None, help="maximum vertical shift (0.1)")
    augmentation.add_argument("--zoom", type=float, default=None, help="maximum zoom in or out (0.2)")
    augmentation.add_argument(
        "--horizontal-flip", action=argparse.BooleanOptionalAction, default=None, help="random left-right flips (on)"
    )
    augmentation.add_argument(
        "--vertical-flip", action=argparse.BooleanOptionalAction, default=None, help="random upside-down flips (on)"
    )
    augmentation.add_argument("--brightness", type=float, default=None, help="maximum brightness change (0 = off)")
    augmentation.add_argument("--contrast", type=float, default=None, help="maximum contrast change (0 = off)")
    devices = train.add_argument_group("devices (tf.distribute; see README, Scaling up)")
    devices.add_argument(
        "--distribution",
        choices=DISTRIBUTIONS,
        default=None,
        help="default (one device), mirrored (all local GPUs, or the logical CPUs of "
        "--cpu-replicas) or multi_worker (machines described by $TF_CONFIG)",
    )
    devices.add_argument(
        "--cpu-replicas",
        type=int,
        default=None,
        metavar="N",
        help="split the CPU into N logical devices, e.g. to run mirrored with 2 replicas on a CPU",
    )
    devices.add_argument(
        "--replica-scaling",
        choices=REPLICA_SCALING,
        default=None,
        help="linear (default): global batch = batch size x replicas and learning rates x "
        "replicas; none: global batch = batch size, learning rates unchanged",
    )
    speed = train.add_argument_group("speed on a GPU (see README, Speed)")
    speed.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="float32 (default); mixed_float16 (NVIDIA GPUs with tensor cores, loss scaled) or "
        "mixed_bfloat16 (TPUs, recent GPUs and CPUs): 16-bit computation, float32 weights and output",
    )
    speed.add_argument(
        "--xla",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile training steps and forward passes with XLA where every layer allows it "
        "(off; runs with it are not bit-for-bit reproducible)",
    )
    _add_runs_dir(train)
    train.add_argument(
        "--json",
        action="store_true",
        help="end with one JSON line: run, status and results (strategy -> val_accuracy, val_loss, seconds)",
    )
    train.set_defaults(handler=command_train)

    predict = commands.add_parser(
        "predict",
        help="top-N labels of images with a trained run's model",
        description="Predict images with a run's model. A file that cannot be read gets its reason; the "
        "others are still predicted (exit status 1 when any failed).",
    )
    _add_run(predict)
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_FOLDER_OR_ZIP",
        help="image files; folders (searched recursively) and .zip archives expand to their images",
    )
    predict.add_argument("--top", type=int, default=3, help="labels per image (default 3)")
    predict.add_argument(
        "--csv",
        metavar="OUT.csv",
        default=None,
        help="also write a CSV: file, top_label, probability, top_k (label:prob;...), error",
    )
    _add_runs_dir(predict)
    predict.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list of {image, top: [{label, probability}]} or {image, error}",
    )
    predict.set_defaults(handler=command_predict)

    finder = commands.add_parser(
        "lr-find",
        help="sweep the head's learning rate and suggest one",
        description="Train the head on cached features for one short sweep while the learning rate grows "
        "from --start to --end; print loss against learning rate and the rate of steepest descent.",
    )
    finder.add_argument("--data", required=True, help="the data set folder")
    finder.add_argument("--preset", choices=sorted(PRESETS), default="default", help="starting settings")
    finder.add_argument("--backbone", choices=sorted(BACKBONES), default=None, help="the pretrained base")
    finder.add_argument("--weights", choices=WEIGHTS, default=None, help="imagenet (default) or none")
    finder.add_argument("--image-size", type=int, default=None, help="side of the square input, in pixels")
    finder.add_argument("--batch-size", type=int, default=None, help="images per step")
    finder.add_argument("--head", choices=HEADS, default=None, help="flatten or global_average")
    finder.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="rmsprop or adam")
    finder.add_argument("--seed", type=int, default=None, help="random seed")
    finder.add_argument("--start", type=float, default=1e-6, help="first learning rate (1e-6)")
    finder.add_argument("--end", type=float, default=1.0, help="last learning rate (1.0)")
    finder.add_argument("--steps", type=int, default=100, help="training steps of the sweep (100)")
    _add_runs_dir(finder)
    finder.add_argument("--json", action="store_true", help="print learning_rates, losses and suggestion as JSON")
    finder.set_defaults(handler=command_lr_find)

    evaluation = commands.add_parser(
        "evaluate",
        help="confusion matrix, per-class precision/recall/F1 and the worst mistakes of a run",
        description="Evaluate a run's model on the validation split training used (the data set is scanned "
        "again with the run's seed and validation fraction), or on the data set's test/ split. The result "
        "is cached in the run folder as evaluation-<split>.json until the model changes.",
    )
    _add_run(evaluation)
    evaluation.add_argument(
        "--split",
        choices=("validation", "test"),
        default="validation",
        help="validation (default) or test (needs a test/ folder in the data set)",
    )
    evaluation.add_argument("--mistakes", type=int, default=10, help="mistakes to list (default 10)")
    _add_runs_dir(evaluation)
    evaluation.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: classes, confusion, normalised, per_class, accuracy, mistakes",
    )
    evaluation.set_defaults(handler=command_evaluate)

    from tlcore.serving.export import FORMATS

    exporting = commands.add_parser(
        "export",
        help="export a run's model (keras, savedmodel, tflite, tflite-int8), checked against the original",
        description="Export a run's model, load the export back and check it against the Keras model on the "
        "run's validation images (same top-1 class for all; 99% for tflite-int8), else delete it. Written "
        "under <run>/exports/ unless --output is given. SavedModel and TFLite exports leave out the "
        "augmentation layers (inactive at inference).",
    )
    _add_run(exporting)
    exporting.add_argument("--format", required=True, choices=FORMATS, help="the export format")
    exporting.add_argument(
        "--output", default=None, metavar="PATH", help="where to write it (a new path; default <run>/exports/)"
    )
    _add_runs_dir(exporting)
    exporting.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: path, format, labels_path, images, agreement, max_difference",
    )
    exporting.set_defaults(handler=command_export)

    listing = commands.add_parser(
        "runs",
        description="List the runs, newest first.",
        help="list the runs with their status, the best validation accuracy of any epoch and that of the saved model",
    )
    _add_runs_dir(listing)
    listing.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list of rows ('backbone' is a registry key, null for a scratch run; "
        "'model' names what was trained)",
    )
    listing.set_defaults(handler=command_runs)

    stop = commands.add_parser(
        "stop",
        help="ask a running run to stop",
        description="Ask a run to stop; it ends after its current batch, as "
        "'stopped', keeping its metrics and a usable model.",
    )
    stop.add_argument("run", help="run id or path")
    _add_runs_dir(stop)
    stop.set_defaults(handler=command_stop)

    add_explore_parser(commands)
    for command in commands.choices.values():
        command.add_argument(
            "--verbose", action="store_true", help="also show TensorFlow's start-up and log lines on standard error"
        )
    return parser


def build_worker_parser() -> argparse.ArgumentParser:
    """The internal `worker` command the app launches; kept out of the public help."""
    worker = argparse.ArgumentParser(
        prog="python -m tlcore worker", description="Internal: train an existing run folder (used by the app)."
    )
    worker.add_argument("run_folder")
    _add_runs_dir(worker)
    worker.set_defaults(handler=command_worker)
    return worker


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The process exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        arguments = build_worker_parser().parse_args(argv[1:])
    else:
        arguments = build_parser().parse_args(argv)
    return arguments.handler(arguments)
