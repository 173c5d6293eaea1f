"""benchmarks.augmentation runs and prints its table (its numbers are for benchmarks/RESULTS.md, not asserted)."""

from __future__ import annotations

from benchmarks import augmentation


def test_the_augmentation_benchmark_prints_each_row_and_the_cost_of_a_view(capsys):
    exit_code = augmentation.main(["--batches", "1", "--repeats", "1", "--image-size", "64"])
    printed = capsys.readouterr().out
    for row in ("three Keras layers", "one resampling (flip, RandomAffine)", "the base's forward pass"):
        assert row in printed
    assert "caching a view costs" in printed and exit_code in (0, 1)
