"""Safe zip ingest: every archive is generated here, in tmp_path."""

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcore.data import folders, images, zip_names, zips
from tlcore.data.dataset import DatasetError

MEGABYTE = 1024 * 1024


def jpeg_bytes(seed: int, size: int = 48) -> bytes:
    """A small noisy JPEG (noise, so it does not compress like a bomb)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def class_members(prefix: str, classes=("cats", "dogs"), per_class: int = 3) -> dict[str, bytes]:
    members = {}
    for class_index, name in enumerate(classes):
        for index in range(per_class):
            members[f"{prefix}{name}/{name}.{index}.jpg"] = jpeg_bytes(class_index * 100 + index)
    return members


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_real_photos_extract_and_scan(tmp_path, catsdogs_dir):
    members = {}
    for split in ("train", "validation"):
        for name in ("cats", "dogs"):
            for photo in sorted((catsdogs_dir / split / name).glob("*.jpg"))[:3]:
                members[f"{split}/{name}/{photo.name}"] = photo.read_bytes()
    archive = make_zip(tmp_path / "photos.zip", members)

    report = zips.extract_dataset(archive, tmp_path / "out")

    assert report.files_written == 12
    assert report.bytes_read == sum(len(content) for content in members.values())
    assert report.destination == (tmp_path / "out").resolve()
    assert sorted(report.files.values()) == sorted(members)
    scan = folders.scan(tmp_path / "out")
    assert scan.classes == ("cats", "dogs")
    assert scan.layout == "splits"
    assert scan.counts()["train"] == {"cats": 3, "dogs": 3}
    assert scan.rejected == ()
    for relative, original in report.files.items():
        assert (tmp_path / "out" / relative).read_bytes() == members[original]
        assert relative == original, "members keep their names"
        images.decode(tmp_path / "out" / relative)
    assert zips.original_names(tmp_path / "out") == report.files
    assert json.loads((tmp_path / "out" / zips.NAMES_FILE).read_text()) == report.files


def test_bytes_and_file_object_sources(tmp_path):
    archive = make_zip(tmp_path / "upload.zip", class_members(""))
    content = archive.read_bytes()

    from_bytes = zips.extract_dataset(content, tmp_path / "from_bytes")
    from_stream = zips.extract_dataset(io.BytesIO(content), tmp_path / "from_stream")

    assert from_bytes.files_written == from_stream.files_written == 6
    assert folders.scan(tmp_path / "from_bytes").classes == ("cats", "dogs")


@pytest.mark.parametrize(
    "evil_name", ["../evil.jpg", "cats/../../evil.jpg", "/abs.jpg", "a\\b.jpg", "C:/x.jpg", "c:x.jpg"]
)
def test_unsafe_names_refuse_the_whole_archive(tmp_path, evil_name):
    members = class_members("")
    members[evil_name] = jpeg_bytes(7)
    # Written through ZipInfo so the name is stored exactly as given (no normalisation).
    archive_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name), content)
    work = tmp_path / "work"
    work.mkdir()
    destination = work / "out"

    with pytest.raises(zips.UnsafeArchiveError) as caught:
        zips.extract_dataset(archive_path, destination)

    assert caught.value.archive == str(archive_path)
    assert "refused" in caught.value.reason
    assert list(work.iterdir()) == []  # Nothing written: no destination, no temporary folder.
    assert not (tmp_path / "evil.jpg").exists()


def test_nul_character_in_a_name_refuses_the_archive(tmp_path):
    # zipfile cuts names at a NUL when writing, so the NUL is patched into the bytes.
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as archive:
        archive.writestr("cats/cat.jpg", jpeg_bytes(1))
        archive.writestr("dogs/evil.jpg\u00a7.png", jpeg_bytes(2))
    patched = content.getvalue().replace("\u00a7".encode(), b"\x00\x00")

    with pytest.raises(zips.UnsafeArchiveError, match="NUL character"):
        zips.extract_dataset(patched, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def decompressed(monkeypatch) -> list[int]:
    """Counts the bytes every zip member read decompresses: a bomb must be refused before most of it is read.

    Returns:
        A one-item list holding the count so far.
    """
    count = [0]
    read = zipfile.ZipExtFile.read

    def counted_read(self, *arguments):
        data = read(self, *arguments)
        count[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counted_read)
    return count


def test_zip_bomb_refused_by_ratio_before_reading_it(tmp_path, decompressed):
    archive_path = tmp_path / "bomb.zip"
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/cat.jpg", jpeg_bytes(1))
        with archive.open("dogs/bomb.jpg", "w") as member:
            for _ in range(300):  # 300 MB of zeros.
                member.write(chunk)
    assert archive_path.stat().st_size < 1024 * 1024
    work = tmp_path / "work"
    work.mkdir()

    decompressed[0] = 0  # Writing the archive read nothing back; count from here.
    with pytest.raises(zips.UnsafeArchiveError, match="max_compression_ratio=200"):
        zips.extract_dataset(archive_path, work / "out")

    assert decompressed[0] < MEGABYTE  # Of its 300 MB: refused on the sizes it declares.
    assert list(work.iterdir()) == []


def test_zip_bomb_refused_by_total_cap_one_chunk_past_it(tmp_path, decompressed):
    archive_path = tmp_path / "bomb.zip"
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(30):
            with archive.open(f"class_{index % 2}/zeros_{index}.png", "w") as member:
                for _ in range(10):
                    member.write(chunk)
    limits = zips.ZipLimits(max_total_bytes=5 * 1024 * 1024, max_compression_ratio=1e9)
    work = tmp_path / "work"
    work.mkdir()

    decompressed[0] = 0
    with pytest.raises(zips.UnsafeArchiveError, match="max_total_bytes=5,242,880 bytes"):
        zips.extract_dataset(archive_path, work / "out", limits)

    assert decompressed[0] <= limits.max_total_bytes + zips.CHUNK_BYTES  # Of its 300 MB.
    assert list(work.iterdir()) == []


def test_header_understating_the_size_is_not_trusted(tmp_path, decompressed):
    # A bomb whose central directory declares 1,000 bytes passes the early checks on declared
    # sizes; reading stops at the declared size and the checksum fails, so it is refused as damaged.
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/cat.jpg", jpeg_bytes(1))
        archive.writestr("dogs/bomb.jpg", bytes(50 * 1024 * 1024))
    patched = bytearray(content.getvalue())
    entry = patched.rindex(b"PK\x01\x02")  # The last central directory entry: dogs/bomb.jpg.
    struct.pack_into("<I", patched, entry + 24, 1000)  # Its "uncompressed size" field.
    with zipfile.ZipFile(io.BytesIO(bytes(patched))) as archive:
        assert archive.getinfo("dogs/bomb.jpg").file_size == 1000

    decompressed[0] = 0
    with pytest.raises(zips.UnsafeArchiveError, match="'dogs/bomb.jpg' is damaged"):
        zips.extract_dataset(bytes(patched), tmp_path / "out")

    assert decompressed[0] < MEGABYTE  # Of its 50 MB: reading stopped near the 1,000 bytes declared.
    assert [path.name for path in tmp_path.iterdir()] == []


def test_per_member_cap(tmp_path):
    archive_path = make_zip(
        tmp_path / "big.zip",
        {
            "cats/big.jpg": np.random.default_rng(0).bytes(2_000_000),
            "dogs/small.jpg": jpeg_bytes(1),
        },
    )
    with pytest.raises(zips.UnsafeArchiveError, match="max_member_bytes=1,000,000 bytes"):
        zips.extract_dataset(archive_path, tmp_path / "out", zips.ZipLimits(max_member_bytes=1_000_000))
    assert not (tmp_path / "out").exists()


def test_too_many_members_refused(tmp_path):
    members = {f"cats/cat_{index}.jpg": b"x" for index in range(30)}
    archive_path = make_zip(tmp_path / "many.zip", members)

    with pytest.raises(zips.UnsafeArchiveError, match="30 entries.*max_members=20"):
        zips.extract_dataset(archive_path, tmp_path / "out", zips.ZipLimits(max_members=20))
    assert not (tmp_path / "out").exists()


def test_debris_and_non_images_skipped(tmp_path):
    members = class_members("")
    members.update(
        {
            "__MACOSX/cats/._cat.0.jpg": b"\x00\x05\x16\x07",
            "cats/._cat.0.jpg": b"\x00\x05\x16\x07",
            ".DS_Store": b"\x00\x00\x00\x01Bud1",
            "dogs/Thumbs.db": b"\xd0\xcf\x11\xe0",
            "dogs/desktop.ini": b"[.ShellClassInfo]",
            "README.txt": b"hello",
            "cats/notes.PDF": b"%PDF-1.4",
            "cats/CAT.JPEG": jpeg_bytes(50),
        }
    )
    archive_path = make_zip(tmp_path / "debris.zip", members)

    report = zips.extract_dataset(archive_path, tmp_path / "out")

    assert report.debris_skipped == 5
    assert dict(report.skipped_files).keys() == {"README.txt", "cats/notes.PDF"}
    assert "not an image file (extension '.pdf')" in dict(report.skipped_files)["cats/notes.PDF"]
    assert report.files_written == 7
    assert report.files["cats/CAT.JPEG"] == "cats/CAT.JPEG", "the member's own name, extension as it was"
    scan = folders.scan(tmp_path / "out")
    assert scan.classes == ("cats", "dogs")
    assert scan.rejected == ()
    written = {path.name for path in files_under(tmp_path / "out")}
    assert not written & {".DS_Store", "Thumbs.db", "desktop.ini", "README.txt", "._cat.0.jpg"}


def test_nested_wrapper_folder(tmp_path):
    members = {}
    for split in ("train", "validation"):
        members.update(class_members(f"my archive/cats_and_dogs/{split}/", per_class=2))
    archive_path = make_zip(tmp_path / "wrapped.zip", members)

    report = zips.extract_dataset(archive_path, tmp_path / "out")

    assert set(report.files) == set(members)
    scan = folders.scan(tmp_path / "out")
    assert scan.layout == "splits"
    assert scan.counts() == {"train": {"cats": 2, "dogs": 2}, "validation": {"cats": 2, "dogs": 2}}


def test_folder_names_sanitised_and_collisions(tmp_path):
    members = {
        "Cats/a.jpg": jpeg_bytes(1),
        "cats/b.jpg": jpeg_bytes(2),
        "dogs:big?/c.jpg": jpeg_bytes(3),
        ("x" * 200) + "/d.jpg": jpeg_bytes(4),
        "img_000005.jpg/e.jpg": jpeg_bytes(5),
        "f.jpg": jpeg_bytes(6),
    }
    archive_path = make_zip(tmp_path / "names.zip", members)

    report = zips.extract_dataset(archive_path, tmp_path / "out")

    folders = {path.name for path in (tmp_path / "out").iterdir() if path.is_dir()}
    assert {"Cats", "cats_2", "dogs_big_", "x" * zip_names.MAX_FOLDER_NAME} <= folders
    assert report.files_written == 6
    for relative in report.files:
        assert (tmp_path / "out" / relative).is_file()
    assert len({relative.lower() for relative in report.files}) == 6


def test_real_photos_keep_their_names_and_same_names_in_different_folders_both_survive(tmp_path, catsdogs_dir):
    cats = sorted((catsdogs_dir / "train" / "cats").glob("*.jpg"))[:4]
    dogs = sorted((catsdogs_dir / "train" / "dogs").glob("*.jpg"))[:2]
    members = {
        "album/train/cats/holiday.jpg": cats[0].read_bytes(),
        "album/validation/cats/holiday.jpg": cats[1].read_bytes(),  # Same name, another folder.
        "album/train/cats/HOLIDAY.jpg": cats[2].read_bytes(),  # Meets holiday.jpg on a case-insensitive disk.
        "album/train/cats/sofa: 2?.JPG": cats[3].read_bytes(),
        "album/train/dogs/holiday.jpg": dogs[0].read_bytes(),
        "album/validation/dogs/park.jpeg": dogs[1].read_bytes(),
    }
    report = zips.extract_dataset(make_zip(tmp_path / "album.zip", members), tmp_path / "out")
    assert report.files == {
        "album/train/cats/holiday.jpg": "album/train/cats/holiday.jpg",
        "album/validation/cats/holiday.jpg": "album/validation/cats/holiday.jpg",
        "album/train/cats/HOLIDAY_2.jpg": "album/train/cats/HOLIDAY.jpg",
        "album/train/cats/sofa_ 2_.JPG": "album/train/cats/sofa: 2?.JPG",
        "album/train/dogs/holiday.jpg": "album/train/dogs/holiday.jpg",
        "album/validation/dogs/park.jpeg": "album/validation/dogs/park.jpeg",
    }
    for relative, original in report.files.items():
        assert (tmp_path / "out" / relative).read_bytes() == members[original]
    scan = folders.scan(tmp_path / "out")
    assert scan.counts() == {"train": {"cats": 3, "dogs": 1}, "validation": {"cats": 1, "dogs": 1}}
    assert not any("img_" in path for path in scan.paths("train") + scan.paths("validation"))


def test_one_class_extracts_but_scan_refuses(tmp_path):
    archive_path = make_zip(tmp_path / "one.zip", class_members("", classes=("cats",)))

    report = zips.extract_dataset(archive_path, tmp_path / "out")

    assert report.files_written == 3
    with pytest.raises(DatasetError, match="at least 2"):
        folders.scan(tmp_path / "out")


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "not a zip archive"),
        (b"<html><body>Not found</body></html>", "not a zip archive"),
        (jpeg_bytes(3), "not a zip archive"),
    ],
)
def test_not_a_zip(tmp_path, content, expected):
    with pytest.raises(zips.UnsafeArchiveError, match=expected) as caught:
        zips.extract_dataset(content, tmp_path / "out", name="upload.zip")
    assert caught.value.archive == "upload.zip"
    assert not (tmp_path / "out").exists()


def test_truncated_and_damaged_archives(tmp_path):
    content = make_zip(tmp_path / "good.zip", class_members("")).read_bytes()

    with pytest.raises(zips.UnsafeArchiveError, match="not a zip archive, or a damaged or incomplete one"):
        zips.extract_dataset(content[: len(content) // 2], tmp_path / "out")

    # Flip bytes inside the first member's compressed data: the directory is intact, the data is not.
    damaged = bytearray(content)
    for offset in range(200, 400):
        damaged[offset] ^= 0xFF
    with pytest.raises(zips.UnsafeArchiveError, match="damaged"):
        zips.extract_dataset(bytes(damaged), tmp_path / "out")
    assert [path.name for path in tmp_path.iterdir()] == ["good.zip"]


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(zips.UnsafeArchiveError, match="no such file"):
        zips.extract_dataset(tmp_path / "missing.zip", tmp_path / "out")
    archive_path = make_zip(tmp_path / "good.zip", class_members(""))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        zips.extract_dataset(archive_path, tmp_path / "taken")
    assert [path.name for path in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    # An existing empty folder is fine.
    (tmp_path / "empty").mkdir()
    assert zips.extract_dataset(archive_path, tmp_path / "empty").files_written == 6


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_members", 0),
        ("max_total_bytes", -1),
        ("max_member_bytes", 1.5),
        ("max_compression_ratio", 0.5),
        ("max_members", True),
    ],
)
def test_limits_validated(field, value):
    with pytest.raises(ValueError, match=f"{field} must be"):
        zips.ZipLimits(**{field: value})
