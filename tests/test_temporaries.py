"""Temporaries being written are removed when the process ends at once; what was finished stays."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.helpers.paths import PROJECT_ROOT
from tlcore import console, temporaries


def test_remove_all_removes_registered_files_and_folders_and_skips_the_rest(tmp_path):
    file = tmp_path / ".model.keras.partial"
    file.write_bytes(b"half")
    folder = tmp_path / ".export.partial"
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "data").write_bytes(b"half")
    finished = tmp_path / ".released.partial"
    finished.write_bytes(b"renamed into place by now")
    never_created = tmp_path / ".never.partial"
    for path in (file, folder, finished, never_created):
        temporaries.register(path)
    temporaries.release(finished)
    assert sorted(temporaries.remove_all()) == sorted([file, folder])
    assert [path.name for path in tmp_path.iterdir()] == [".released.partial"]
    assert not [path for path in temporaries.registered() if path.parent == tmp_path]


def test_being_written_registers_for_the_block_only(tmp_path):
    path = tmp_path / ".file.tmp"
    with temporaries.being_written(path):
        assert path in temporaries.registered()
    assert path not in temporaries.registered()


def test_being_written_removes_what_a_failed_writer_left(tmp_path):
    folder = tmp_path / ".export.partial"
    with pytest.raises(OSError, match="disk full"):
        with temporaries.being_written(folder):
            (folder / "variables").mkdir(parents=True)
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == [] and folder not in temporaries.registered()


def test_temporary_directory_is_registered_while_it_exists():
    with temporaries.temporary_directory(prefix="tlcore-test-") as folder:
        (folder / "extracted.jpg").write_bytes(b"photo")
        assert folder in temporaries.registered()
    assert not folder.exists() and folder not in temporaries.registered()


def test_control_c_in_a_command_removes_its_temporaries_and_keeps_finished_files(tmp_path):
    # A command writing a file under its temporary name when Ctrl+C comes (SIGINT to itself here).
    program = textwrap.dedent(
        """
        import os, signal, sys, time
        from pathlib import Path
        from tlcore import cli, temporaries

        def command(arguments):
            folder = Path(sys.argv[1])
            (folder / "finished.txt").write_text("done")
            temporary = temporaries.register(folder / ".result.txt.partial")
            temporary.write_text("half")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
            return 0

        sys.exit(cli.run_interruptibly(command, None))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == console.INTERRUPTED_EXIT_CODE, completed.stderr
    assert completed.stderr.strip() == "Interrupted by Ctrl+C."
    assert [path.name for path in tmp_path.iterdir()] == ["finished.txt"]


def test_control_c_while_tensorflow_is_imported_quietly_still_says_so(tmp_path):
    # The quiet import sends descriptor 2 to a file for a few seconds; the line must reach the real one.
    program = textwrap.dedent(
        """
        import os, signal, sys, threading, time
        from tlcore import cli, console

        def command(arguments):
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            console.import_tensorflow_quietly()
            time.sleep(30)
            return 0

        sys.exit(cli.run_interruptibly(command, None))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == console.INTERRUPTED_EXIT_CODE, completed.stderr
    assert "Interrupted by Ctrl+C." in completed.stderr, completed.stderr
