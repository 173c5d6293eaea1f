"""The server's start-up heap is frozen out of the garbage collector's sight (views.server)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: freezing is for the life of a process.
FREEZE_AND_LOOK = """
import gc, json
from views import server as heap

frozen = heap.import_and_freeze()
import keras

tracked = {id(item) for item in gc.get_objects()}
made_later = [keras.layers.Dense]  # A list made after the freeze: tracked as usual.
print(json.dumps({"frozen": frozen, "dense_class_tracked": id(keras.layers.Dense) in tracked,
                  "new_list_tracked": any(item is made_later for item in gc.get_objects()),
                  "tracked_after_freeze": len(tracked)}))
"""


def test_import_and_freeze_hides_the_imported_modules_from_the_collector():
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", FREEZE_AND_LOOK], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # TensorFlow and Keras leave hundreds of thousands of objects; the collector sees almost none of them.
    assert report["frozen"] > 100_000, report
    assert report["tracked_after_freeze"] < report["frozen"] / 10, report
    assert not report["dense_class_tracked"]
    assert report["new_list_tracked"]


def test_the_app_freezes_its_start_up_heap(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCORE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "data"))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not app.exception
    assert gc.get_freeze_count() > 100_000
