"""Demo data sets: the offline texture set, and the cats vs dogs download against a local server."""

import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from tests.helpers.paths import PROJECT_ROOT, shared_path
from tlcore.data import demo, folders, images


def test_offline_demo_builds_scans_and_decodes(tmp_path):
    folder = demo.build_offline_demo(tmp_path / "offline")

    assert folder == (tmp_path / "offline").resolve()
    scan = folders.scan(folder)
    assert scan.classes == ("brick", "grass", "gravel")
    assert scan.layout == "flat"
    assert scan.rejected == ()
    for name in scan.classes:
        files = sorted((folder / name).glob("*.jpg"))
        assert len(files) == demo.OFFLINE_IMAGES_PER_CLASS >= 40
        pixels = images.decode(files[0])
        assert pixels.shape == (demo.OFFLINE_IMAGE_SIZE, demo.OFFLINE_IMAGE_SIZE, 3)
    total = sum(sum(per_class.values()) for per_class in scan.counts().values())
    assert total == 3 * demo.OFFLINE_IMAGES_PER_CLASS
    assert [path.name for path in tmp_path.iterdir()] == ["offline"]  # No temporary folder left.


def test_offline_demo_is_deterministic_and_idempotent(tmp_path):
    first = demo.build_offline_demo(tmp_path / "first")
    second = demo.build_offline_demo(tmp_path / "second")
    for path in sorted(first.rglob("*.jpg")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()

    modified = {path: path.stat().st_mtime_ns for path in first.rglob("*.jpg")}
    assert demo.build_offline_demo(first) == first
    assert {path: path.stat().st_mtime_ns for path in first.rglob("*.jpg")} == modified


def test_offline_demo_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds other files"):
        demo.build_offline_demo(tmp_path / "mine")
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_offline_demo_needs_no_network(tmp_path):
    # A fresh interpreter in which opening any socket fails, so a download would raise.
    code = (
        "import socket, sys\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from tlcore.data import demo\n"
        f"demo.build_offline_demo({str(tmp_path / 'offline')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert folders.scan(tmp_path / "offline").num_classes == 3


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and counts the requests; quiet."""

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving tmp_path / "served"."""
    # Never send requests for 127.0.0.1 through a proxy set in the environment.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(CountingHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    httpd.served = served
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def build_small_archive(path: Path, per_folder: dict[str, int]) -> dict[str, int]:
    """A cats_and_dogs_filtered.zip laid out like the real one, from real photos; returns the counts."""
    catsdogs = shared_path("data", "catsdogs")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats_and_dogs_filtered/", b"")
        archive.writestr("cats_and_dogs_filtered/vectorize.py", b"print('not an image')\n")
        for folder, count in per_folder.items():
            photos = sorted((catsdogs / folder).glob("*.jpg"))[:count]
            assert len(photos) == count
            for photo in photos:
                archive.write(photo, f"cats_and_dogs_filtered/{folder}/{photo.name}")
    return per_folder


def test_download_cats_and_dogs_from_local_server(tmp_path, server):
    build_small_archive(
        server.served / demo.CATS_AND_DOGS_FILE,
        {
            "train/cats": 3,
            "train/dogs": 3,
            "validation/cats": 2,
            "validation/dogs": 2,
        },
    )
    origin = f"http://127.0.0.1:{server.server_address[1]}/{demo.CATS_AND_DOGS_FILE}"
    cache = tmp_path / "cache"

    folder = demo.download_cats_and_dogs(cache_dir=cache, origin=origin)

    assert server.requests == [f"/{demo.CATS_AND_DOGS_FILE}"]
    assert folder.name == "cats_and_dogs_filtered"
    assert (folder / "train").is_dir() and (folder / "validation").is_dir()
    assert folder.is_relative_to(cache / "datasets")
    scan = folders.scan(folder)
    assert scan.classes == ("cats", "dogs")
    assert scan.counts() == {"train": {"cats": 3, "dogs": 3}, "validation": {"cats": 2, "dogs": 2}}
    assert scan.rejected == ()

    # Second call: the cached archive and extraction are reused; the server is not asked again.
    assert demo.download_cats_and_dogs(cache_dir=cache, origin=origin) == folder
    assert len(server.requests) == 1


def test_download_404_is_a_clear_error(tmp_path, server):
    origin = f"http://127.0.0.1:{server.server_address[1]}/{demo.CATS_AND_DOGS_FILE}"

    with pytest.raises(demo.DemoDataError) as caught:
        demo.download_cats_and_dogs(cache_dir=tmp_path / "cache", origin=origin)

    message = str(caught.value)
    assert caught.value.reason.startswith("the server answered 404 (") and message.count(origin) == 1
    assert caught.value.answered, "a server answered: the page says to try again later"
    assert "404" in message
    assert "Try again later" in message and "network access" not in message, "the server answered"
    assert "offline demo" in message
    assert server.requests == [f"/{demo.CATS_AND_DOGS_FILE}"]
    assert not (tmp_path / "cache" / "datasets" / demo.CATS_AND_DOGS_FILE).exists()


def test_download_refused_connection_is_a_clear_error(tmp_path):
    # A port nobody listens on: bind one, then close it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(demo.DemoDataError, match="needs network access") as caught:
        demo.download_cats_and_dogs(cache_dir=tmp_path, origin=f"http://127.0.0.1:{port}/x.zip")
    assert caught.value.reason == "Connection refused"  # Not Keras' "None -- [Errno 111] Connection refused".
    assert not caught.value.answered


def test_damaged_download_is_deleted(tmp_path, server):
    (server.served / demo.CATS_AND_DOGS_FILE).write_text("<html>Service unavailable</html>")
    origin = f"http://127.0.0.1:{server.server_address[1]}/{demo.CATS_AND_DOGS_FILE}"

    with pytest.raises(demo.DemoDataError, match="not a zip archive.*It was deleted"):
        demo.download_cats_and_dogs(cache_dir=tmp_path / "cache", origin=origin)

    assert not (tmp_path / "cache" / "datasets" / demo.CATS_AND_DOGS_FILE).exists()
    assert not os.listdir(tmp_path / "cache" / "datasets")
