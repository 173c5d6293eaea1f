"""`python -m benchmarks.precision` end to end on the CPU, tiny: every row, with numbers.

No timing assertions: the rates are measured by running the benchmark (on a GPU, README "Speed").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.test_throughput import table_rows
from tests.helpers.paths import PROJECT_ROOT


def run_bench(*arguments: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.precision", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(environment or {})},
    )


def test_bench_precision_measures_every_row_of_every_policy(tiny_catsdogs: Path) -> None:
    # Decoding in processes, as a machine with many cores does: measured beside threads.
    completed = run_bench(
        "--backbones",
        "vgg16:32",
        "--precisions",
        "float32,mixed_bfloat16",
        "--batch-size",
        "4",
        "--large-batch",
        "8",
        "--steps",
        "1",
        "--data",
        str(tiny_catsdogs),
        environment={"TLCORE_DECODER_PROCESSES": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = completed.stdout
    assert output.startswith("Command: python -m benchmarks.precision --backbones vgg16:32")
    assert "Keras 3." in output and "TensorFlow 2." in output  # The backend the rates belong to.
    assert f"Data: {tiny_catsdogs}: 12 train / 12 validation photos" in output
    rows = table_rows(output)
    decoding = [row for row in rows if row[0] == "-"]
    threads = min(os.cpu_count() or 1, 8)
    assert [row[2] for row in decoding] == [
        f"JPEG decoding at 32 px, pipeline.decoded_batches, 2 decoder processes on {os.cpu_count()} cores (24 files)",
        f"JPEG decoding at 32 px, pipeline.decoded_batches, {threads} decoder thread{'s' if threads > 1 else ''} on "
        f"{os.cpu_count()} cores (24 files)",
    ]
    assert all(float(row[3]) > 0 for row in decoding)
    expected = [
        "forward, batch 4, XLA off",
        "forward, batch 4, XLA on",
        "extraction from JPEG files (extraction.extract_to_file), batch 4, XLA on, 2 decoder processes",
        f"extraction from JPEG files (extraction.extract_to_file), batch 4, XLA on, {threads} decoder thread"
        + ("s" if threads > 1 else ""),
        "forward, batch 8, XLA on",
        "train, staged fine-tuning (top block + head on cached activations), XLA off",
        "train, staged fine-tuning (top block + head on cached activations), XLA on",
        "train, end to end (augmentation + top block unfrozen + head), XLA off",
        "train, end to end (augmentation + top block unfrozen + head), XLA on",
    ]
    for precision in ("float32", "mixed_bfloat16"):
        measured = [row for row in rows if row[:2] == ["vgg16 32 px", precision]]
        assert [row[2] for row in measured] == expected
        for row in measured[:-1]:
            assert float(row[3].split()[0]) > 0, row
            assert row[4].endswith("x") and float(row[4][:-1]) > 0, row
        # Keras' random zoom and translation cannot be compiled with XLA: said, not measured.
        assert measured[-1][3].startswith("- (not allowed") and measured[-1][4] == "-"
    assert all(row[4] == "1.00x" for row in rows if row[1] == "float32" and row[3][0] != "-")
    assert "(24 photos)" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--backbones", "vgg17:150"], "expected backbone:size pairs"),
        (["--backbones", "vgg16:16"], "needs an image size of at least 32"),
        (["--precisions", "float64"], "precisions must be among"),
        (["--steps", "0"], "--steps must be at least 1, received 0"),
    ],
)
def test_bench_precision_refuses_bad_arguments(arguments, message) -> None:
    completed = run_bench(*arguments)
    assert completed.returncode == 2
    assert message in completed.stderr
