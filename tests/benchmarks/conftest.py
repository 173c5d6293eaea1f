"""The benchmarks' tests share one tiny data set."""

from __future__ import annotations

from pathlib import Path

import pytest

PER_CLASS = 6


@pytest.fixture(scope="session")
def tiny_catsdogs(catsdogs_subset) -> Path:
    """6 train + 6 validation real photos per class, as symbolic links."""
    return catsdogs_subset("bench_data", train=PER_CLASS, validation=PER_CLASS)
