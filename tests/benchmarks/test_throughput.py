"""`python -m benchmarks.throughput` end to end on a tiny subset: every section's rows, with numbers.

No timing assertions: speed targets are checked by running the benchmark, not by timed tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.benchmarks.conftest import PER_CLASS
from tests.helpers.cli import options
from tests.helpers.paths import PROJECT_ROOT

NUMBER = re.compile(r"\d+(\.\d+)?")


def table_rows(output: str) -> list[list[str]]:
    """The plain-text table's rows, split at the columns the dashed rule marks."""
    lines = output.splitlines()
    rule = next(index for index, line in enumerate(lines) if line.startswith("-------"))
    spans = [match.span() for match in re.finditer(r"-+", lines[rule])]
    rows = []
    for line in lines[rule + 1 :]:
        if line.strip():
            cells = [
                line[start : spans[index + 1][0]] if index + 1 < len(spans) else line[start:]
                for index, (start, _) in enumerate(spans)
            ]
            rows.append([cell.strip() for cell in cells])
    return rows


def test_bench_prints_every_section_with_numbers(tiny_catsdogs: Path) -> None:
    settings = options(limit=PER_CLASS, epochs=1, views=2, sections="1,2,3,4", backbone="vgg16", weights="none")
    settings += options(image_size=32, repeats=1)
    command = [sys.executable, "-m", "benchmarks.throughput", "--data", str(tiny_catsdogs), *settings]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = completed.stdout
    assert output.startswith("Command: python -m benchmarks.throughput --data ")
    assert "Machine: " in output and "TensorFlow 2." in output

    rows = table_rows(output)
    sections = [row[0] for row in rows]
    assert sections == ["1a", "1b", "1c", "1d", "1e", "2", "2", "3", "3", "3", "3", "3", "4", "4", "4", "4"], output
    for section, what, value, ratio, target, result in rows:
        assert what, output
        assert NUMBER.search(value), f"no number in the value of {what!r}: {value!r}"
        assert result in ("PASS", "FAIL", "info"), result
        if result != "info":
            assert NUMBER.search(target), f"{what!r}: target {target!r}"
            assert NUMBER.search(ratio) or section == "4", f"{what!r}: ratio {ratio!r}"  # 4 compares with targets.
    throughput = {row[0]: float(row[2].split()[0]) for row in rows if row[0] in ("1a", "1b", "1c")}
    assert all(rate > 0 for rate in throughput.values()), throughput
    assert "img/s (24 images" in rows[0][2]
    # CPU time per image of each method, and the a/b that CPU time allows.
    cpu = re.fullmatch(r"a ([\d.]+) ms \(([\d.]+)\); b ([\d.]+) ms \([\d.]+\); c ([\d.]+) ms \([\d.]+\)", rows[3][2])
    assert cpu and all(float(value) > 0 for value in cpu.groups()), rows[3]
    ceiling = float(rows[3][3].removeprefix("a/b at most "))
    assert 0 < ceiling <= 1, rows[3]
    # One a/b per pass (a single repeat here), and their median.
    assert re.fullmatch(r"[\d.]+", rows[4][2]) and rows[4][3] == f"median {rows[4][2]}", rows[4]
    assert "warm from cache: yes" in rows[5][2]
    assert [row[1].split(":")[0] for row in rows[7:12]] == [
        "frozen_augmented",
        "frozen_augmented",
        "fine_tuning",
        "fine_tuning",
        "both stages, whole run",
    ]
    schedule = rows[12]
    assert schedule[4] == "<= 600 s" and "(1 + 1 + 1 epochs; stages " in schedule[2], schedule
    assert [row[1].split(": ")[1] for row in rows[13:]] == [
        f"{stage} validation accuracy" for stage in ("feature_extraction", "frozen_augmented", "fine_tuning")
    ]
