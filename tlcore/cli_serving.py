"""The CLI commands that use a finished run's model: predict, evaluate, export (`tlcore.cli` builds the parser).

Each `command_*` takes the parsed arguments and returns the process exit status, as `tlcore.cli_commands`'s do:
0 success, 1 a failure the command reports (an image that could not be read), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tlcore import cli_commands, console, files, progress
from tlcore.data import zips
from tlcore.data.dataset import DatasetError
from tlcore.insight import evaluate
from tlcore.serving import batch, export, predict


def command_predict(arguments: argparse.Namespace) -> int:
    console.import_tensorflow_quietly(arguments.verbose)

    try:
        if arguments.csv:
            _check_output_file(Path(arguments.csv))  # Before the predictions, not after them.
        predictor = predict.load(arguments.run, arguments.runs_dir)
    except (ValueError, predict.ModelLoadError) as error:
        return cli_commands.report_error(arguments, error)
    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        results, sorted_rows = _predict_arguments(predictor, arguments.images, arguments.top, display)
    finally:
        display.close()
    written = True
    if arguments.csv:
        try:
            files.write_atomic(Path(arguments.csv), batch.to_csv([batch.row_from_result(item) for item in results]))
        except (OSError, UnicodeError) as error:  # The results are still printed below.
            written = False
            print(f"error: {arguments.csv}: the CSV could not be written: {error}", file=sys.stderr)
        else:
            print(f"Wrote {len(results)} rows to {arguments.csv}", file=sys.stderr)
    if arguments.json:
        cli_commands.print_json(results)
    else:
        for result in results:
            if "error" in result:
                print(f"{result['image']}: error: {result['error']}")
            else:
                ranking = ", ".join(f"{item['label']} {item['probability']:.3f}" for item in result["top"])
                print(f"{result['image']}: {ranking}")
        # Photos sorted into folders named after the classes (a held-out set): how many went to their folder's.
        score = batch.score_by_folder(sorted_rows, predictor.labels)
        if score is not None:
            print(score.describe())
    return 1 if not written or any("error" in result for result in results) else 0


def _check_output_file(path: Path) -> None:
    """Raises ValueError when a file cannot be made at `path`: a folder is there, or a file stands where one of
    its folders would be made."""
    if path.is_dir():
        raise ValueError(f"{path}: a folder, expected the path of a file to write.")
    existing = next(folder for folder in path.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise ValueError(f"{path}: {existing} is a file, so no folder can be made there.")


def _predict_arguments(predictor, arguments: Sequence[str], top: int, display=None) -> tuple[list[dict], list[dict]]:
    """predict_sources results for image files, folders (recursively) and zip archives, in argument order, and
    the batch rows of the folders and archives, each file named from the folder's own name (which may name a
    class: `validation/cats`) or from inside the archive, for `batch.score_by_folder`. A file given alone is
    not scored: the folders of a path typed are not a sorting of photos."""

    results, sorted_rows = [], []
    for argument in arguments:
        archive = batch.is_zip(argument)
        if archive or Path(argument).is_dir():
            try:
                rows = batch.predict_folder(predictor, argument, top=top, display=display)
            except (zips.UnsafeArchiveError, ValueError) as error:  # A refused archive or folder: its own row.
                results.append({"image": argument, "error": str(error)})
                continue
            if not rows:  # Said, not silently nothing: the person may have typed the wrong folder.
                results.append({"image": argument, "error": batch.NO_FILES})
                continue
            inside = "" if archive else f"{Path(argument).resolve().name}/"
            sorted_rows += [{**row, "file": inside + row["file"]} for row in rows]
            for row in rows:
                name = f"{argument.rstrip('/')}/{row['file']}"
                results.append(
                    {"image": name, "error": row["error"]} if row["error"] else {"image": name, "top": row["top_k"]}
                )
        else:
            results += predict.predict_sources(predictor, [Path(argument)], names=[argument], top=top)
    return results, sorted_rows


def command_evaluate(arguments: argparse.Namespace) -> int:

    console.import_tensorflow_quietly(arguments.verbose)
    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        result = evaluate.evaluate(arguments.run, arguments.split, arguments.runs_dir, display=display)
    except (ValueError, DatasetError, predict.ModelLoadError) as error:
        return cli_commands.report_error(arguments, error)
    finally:
        display.close()
    if arguments.json:
        cli_commands.print_json(result.to_dict())
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
    display = progress.for_stream(sys.stderr, plain=arguments.json)
    try:
        result = export.export(arguments.run, arguments.format, arguments.output, arguments.runs_dir, display=display)
    except (ValueError, predict.ModelLoadError, export.ExportError) as error:
        return cli_commands.report_error(arguments, error, 1 if isinstance(error, export.ExportError) else 2)
    finally:
        display.close()
    if arguments.json:
        cli_commands.print_json(result.to_dict())
        return 0
    print(f"Exported {result.format}: {result.path}")
    print("Labels: labels.json inside the zip" if result.format == "keras" else f"Labels: {result.labels_path}")
    print(
        f"Checked on {result.images} validation images: same top-1 class for {result.agreement:.2%} "
        f"(required {export.REQUIRED_AGREEMENT[result.format]:.0%}), largest probability difference "
        f"{result.max_difference:.6f}, accuracy {result.accuracy:.2%} (the Keras model's {result.keras_accuracy:.2%})"
    )
    return 0
