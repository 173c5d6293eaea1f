"""Safe zip ingest: an uploaded or downloaded archive in, a data set folder (or a clear refusal) out.

Python's `ZipFile.extractall` is never used: it silently rewrites names such as `../x.jpg` or
`C:\\x.jpg` (which would put images under the wrong class) and does not bound what a tiny archive
expands to. Here every member name is checked before anything is written, files keep their own
names made safe (a name taken in its folder gets a number), and the bytes actually decompressed are
counted against caps while streaming.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from tlcore import temporaries
from tlcore.data import images, zip_names
from tlcore.data.dataset import ARCHIVE_NAMES_FILE

Archive = Union[str, os.PathLike, bytes, BinaryIO]

# Where the generated name -> original member name mapping is written (hidden: the scanner skips it).
NAMES_FILE = ARCHIVE_NAMES_FILE  # generated path -> member name, read back by data.scan
# What an extraction left out, (member name, reason) pairs, so that the same archive uploaded again, which
# reuses the folder, can say so again (hidden too).
SKIPPED_FILE = ".skipped.json"
# Members are decompressed in chunks of this size, so memory stays bounded whatever the archive holds.
CHUNK_BYTES = 1024 * 1024
# Members that expand to no more than this are never refused for their ratio: a small flat-coloured
# BMP legitimately compresses 300x, and many small members are bounded by the count and total caps.
RATIO_FREE_BYTES = 1024 * 1024


class UnsafeArchiveError(Exception):
    """An archive refused as a whole, with the archive's name and a human reason."""

    def __init__(self, archive: str, reason: str):
        super().__init__(f"{archive}: {reason}")
        self.archive = str(archive)
        self.reason = reason


@dataclass(frozen=True)
class ZipLimits:
    """Caps that refuse an archive before it can fill the disk or the memory.

    Attributes:
        max_members: most entries (files and folders) in the archive.
        max_total_bytes: most bytes decompressed over the whole archive.
        max_member_bytes: most bytes decompressed for one member.
        max_compression_ratio: most decompressed bytes per compressed byte for one member
            (members of at most `RATIO_FREE_BYTES` are exempt).
    """

    max_members: int = 20_000
    max_total_bytes: int = 2 * 1024**3
    max_member_bytes: int = 100 * 1024**2
    max_compression_ratio: float = 200.0

    def __post_init__(self) -> None:
        for name in ("max_members", "max_total_bytes", "max_member_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, received {value!r}.")
        ratio = self.max_compression_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not ratio >= 1:
            raise ValueError(f"max_compression_ratio must be a number >= 1, received {ratio!r}.")


@dataclass(frozen=True)
class ZipReport:
    """What `extract_dataset` wrote and what it left out.

    Attributes:
        destination: the folder the data set was written to.
        files: generated path (relative to destination, with "/") -> original member name.
        debris_skipped: operating-system debris left out (`__MACOSX/`, `._*`, `.DS_Store`, ...).
        skipped_files: (original member name, reason) for each file that is not extracted.
        bytes_read: bytes decompressed in total.
    """

    destination: Path
    files: dict[str, str]
    debris_skipped: int
    skipped_files: tuple[tuple[str, str], ...]
    bytes_read: int

    @property
    def files_written(self) -> int:
        return len(self.files)


def _format_bytes(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count:,} bytes ({count / size:.4g} {unit})"
    return f"{count:,} bytes"


def _archive_label(archive: Archive, name: str | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(archive, (bytes, bytearray)):
        return "<uploaded archive>"
    if isinstance(archive, (str, os.PathLike)):
        return str(archive)
    return str(getattr(archive, "name", None) or "<uploaded archive>")


class _Planner:
    """Chooses the output path of every member before anything is written.

    Names are unique per folder, compared case-insensitively (macOS and Windows disks), across
    both file names and folder names.
    """

    def __init__(self):
        self.folders: dict[tuple[str, ...], str] = {(): ""}
        self.used: dict[str, set[str]] = {}

    def _unique(self, parent: str, name: str) -> str:
        used = self.used.setdefault(parent, set())
        candidate, number = name, 1
        while candidate.lower() in used:
            number += 1
            candidate = f"{name}_{number}"
        used.add(candidate.lower())
        return candidate

    def folder(self, parts: tuple[str, ...]) -> str:
        if parts not in self.folders:
            parent = self.folder(parts[:-1])
            name = self._unique(parent, zip_names.sanitise_folder(parts[-1]))
            self.folders[parts] = f"{parent}/{name}" if parent else name
        return self.folders[parts]

    def file(self, folder_parts: tuple[str, ...], member_name: str) -> str:
        """The member's own name, made safe; a name taken in its folder gets _2, _3, ... before the extension."""
        parent = self.folder(folder_parts)
        stem, suffix = zip_names.sanitise_file(member_name)
        used = self.used.setdefault(parent, set())
        candidate, number = f"{stem}{suffix}", 1
        while candidate.lower() in used:
            number += 1
            candidate = f"{stem}_{number}{suffix}"
        used.add(candidate.lower())
        return f"{parent}/{candidate}" if parent else candidate


def _open_archive(archive: Archive, label: str) -> zipfile.ZipFile:
    if isinstance(archive, (bytes, bytearray)):
        archive = io.BytesIO(archive)
    elif isinstance(archive, (str, os.PathLike)) and not Path(archive).is_file():
        raise UnsafeArchiveError(label, "no such file")
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile as error:
        raise UnsafeArchiveError(
            label, f"not a zip archive, or a damaged or incomplete one ({error}); expected a .zip file"
        ) from None
    except (OSError, EOFError, ValueError, NotImplementedError) as error:
        raise UnsafeArchiveError(label, f"cannot read the archive ({error})") from None


def _plan(
    archive: zipfile.ZipFile, label: str, limits: ZipLimits
) -> tuple[list[tuple[zipfile.ZipInfo, str]], list[tuple[str, str]], int]:
    """Checks every name and the declared sizes, before anything is written.

    Returns:
        (member, generated relative path) pairs to extract, (name, reason) pairs skipped, and the
        number of debris entries left out.
    """
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(
            label,
            f"the archive has {len(members):,} entries, above the limit max_members={limits.max_members:,}",
        )
    for info in members:
        reason = zip_names.unsafe_reason(info.orig_filename)
        if reason is not None:
            raise UnsafeArchiveError(label, f"entry {info.orig_filename!r} {reason}; the archive was refused")

    planner = _Planner()
    to_extract: list[tuple[zipfile.ZipInfo, str]] = []
    skipped: list[tuple[str, str]] = []
    debris = 0
    for info in members:
        parts = zip_names.parts(info.filename)
        if info.is_dir() or not parts:
            continue  # Folders are created for the files they hold; empty ones would be empty classes.
        if zip_names.is_debris(parts):
            debris += 1
            continue
        extension = Path(parts[-1]).suffix.lower()
        if extension not in images.SUPPORTED_EXTENSIONS:
            skipped.append(
                (
                    info.filename,
                    (
                        f"not an image file (extension {extension or 'none'!r}); "
                        f"expected one of {', '.join(images.SUPPORTED_EXTENSIONS)}"
                    ),
                )
            )
            continue
        if zip_names.is_symlink(info):
            skipped.append((info.filename, "a symbolic link, not a file"))
            continue
        if info.flag_bits & 0x1:
            skipped.append((info.filename, "encrypted (password-protected)"))
            continue
        # Declared sizes can lie, so they are only used to refuse early; the streaming counts decide.
        _check_member(label, info, info.file_size, limits, declared=True)
        to_extract.append((info, planner.file(tuple(parts[:-1]), parts[-1])))
    declared_total = sum(info.file_size for info, _ in to_extract)
    if declared_total > limits.max_total_bytes:
        raise UnsafeArchiveError(label, _total_message(declared_total, limits, declared=True))
    return to_extract, skipped, debris


def _total_message(count: int, limits: ZipLimits, declared: bool) -> str:
    verb = "declares" if declared else "expands to at least"
    return (
        f"the archive {verb} {_format_bytes(count)} of images, above the limit "
        f"max_total_bytes={_format_bytes(limits.max_total_bytes)} (possible zip bomb); "
        "the archive was refused"
    )


def _check_member(label: str, info: zipfile.ZipInfo, size: int, limits: ZipLimits, declared: bool) -> None:
    """Refuses a member whose size (declared, or read so far) breaks the per-member caps."""
    verb = "declares" if declared else "expands to at least"
    # The ratio first: for a zip bomb it is the telling reason.
    if size > RATIO_FREE_BYTES and size > limits.max_compression_ratio * max(info.compress_size, 1):
        ratio = size / max(info.compress_size, 1)
        raise UnsafeArchiveError(
            label,
            f"entry {info.filename!r} expands {ratio:,.0f}x ({_format_bytes(info.compress_size)} "
            f"compressed, {verb} {_format_bytes(size)}), above the limit max_compression_ratio="
            f"{limits.max_compression_ratio:g} (possible zip bomb); the archive was refused",
        )
    if size > limits.max_member_bytes:
        raise UnsafeArchiveError(
            label,
            f"entry {info.filename!r} {verb} {_format_bytes(size)}, above the limit "
            f"max_member_bytes={_format_bytes(limits.max_member_bytes)}; the archive was refused",
        )


def _copy_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    label: str,
    limits: ZipLimits,
    total: int,
) -> int:
    """Streams one member to `target`, counting the bytes; returns the new running total."""
    written = 0
    try:
        with archive.open(info) as source, open(target, "xb") as output:
            while chunk := source.read(CHUNK_BYTES):
                written += len(chunk)
                total += len(chunk)
                # Checked before writing, so no more than one chunk past a cap is ever read.
                _check_member(label, info, written, limits, declared=False)
                if total > limits.max_total_bytes:
                    raise UnsafeArchiveError(label, _total_message(total, limits, declared=False))
                output.write(chunk)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as error:
        raise UnsafeArchiveError(
            label, f"entry {info.filename!r} is damaged ({error}); the archive was refused"
        ) from None
    except NotImplementedError as error:  # e.g. Deflate64, which Python cannot decompress.
        raise UnsafeArchiveError(
            label, f"entry {info.filename!r} uses an unsupported compression method ({error})"
        ) from None
    return total


def _prepare_destination(destination: Path) -> None:
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ValueError(
            f"destination must be a new or empty folder, received {str(destination)!r}, which "
            "already exists and is not empty."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)


def extract_dataset(
    archive: Archive,
    destination: str | os.PathLike,
    limits: ZipLimits = ZipLimits(),
    *,
    name: str | None = None,
) -> ZipReport:
    """Extracts the images of a zip archive into a new data set folder, or refuses the archive.

    Every member name is checked first: one name with a '..' component, an absolute path, a
    backslash or a drive letter refuses the whole archive, and nothing is written. Images keep
    their names inside the archive's folders (names made safe; `cat_2.jpg` where two names would
    meet on a case-insensitive disk), so `train/cats/` or `<class>/` layouts survive. OS debris
    and non-image files are left out. The bytes actually decompressed are counted against
    `limits` while streaming; breaking a cap refuses the archive. Extraction happens in a hidden
    temporary folder beside `destination`, renamed into place at the end, so a refused archive
    leaves nothing behind.

    Args:
        archive: a path to a .zip file, its bytes (an upload), or a seekable binary file object.
        destination: a folder that does not exist yet, or an empty one.
        limits: the caps on entries, bytes and compression ratio.
        name: the archive's name to show in errors (defaults to the path or the file object's name).

    Returns:
        A ZipReport; `destination/.names.json` also holds its generated name -> original name mapping.

    Raises:
        UnsafeArchiveError: the archive is not a zip, is damaged, has an unsafe entry name, or
            breaks a limit.
        ValueError: destination exists and is not an empty folder.
        TypeError: limits is not a ZipLimits.
    """
    if not isinstance(limits, ZipLimits):
        raise TypeError(f"limits must be a ZipLimits, received {limits!r}.")
    label = _archive_label(archive, name)
    destination = Path(destination).expanduser().resolve()
    with _open_archive(archive, label) as zip_archive:
        to_extract, skipped, debris = _plan(zip_archive, label, limits)
        _prepare_destination(destination)
        # Beside the destination, so the final rename stays on one disk. Hidden (the scanner skips
        # it), unique per call, and made with the usual permissions (mkdtemp would make it 0700).
        partial = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:12]}"
        with temporaries.being_written(partial) as temporary:
            temporary.mkdir()
            total = 0
            files = {}
            for info, relative in to_extract:
                target = temporary / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                total = _copy_member(zip_archive, info, target, label, limits, total)
                files[relative] = info.filename
            names = json.dumps(files, indent=1, ensure_ascii=False)
            (temporary / NAMES_FILE).write_text(names, encoding="utf-8")
            (temporary / SKIPPED_FILE).write_text(json.dumps(skipped, ensure_ascii=False), encoding="utf-8")
            if destination.exists():
                destination.rmdir()  # Empty (checked above); a rename cannot replace a folder.
            os.rename(temporary, destination)
    return ZipReport(
        destination=destination,
        files=files,
        debris_skipped=debris,
        skipped_files=tuple(skipped),
        bytes_read=total,
    )


def skipped_files(destination: str | os.PathLike) -> tuple[tuple[str, str], ...]:
    """The (member name, reason) pairs an extraction into `destination` left out (`ZipReport.skipped_files`);
    () for a folder extracted before they were recorded, or not extracted from a zip."""
    path = Path(destination) / SKIPPED_FILE
    try:
        return tuple((str(name), str(reason)) for name, reason in json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return ()


def original_names(destination: str | os.PathLike) -> dict[str, str]:
    """The generated path -> original member name mapping of an extracted folder ({} if none)."""
    path = Path(destination) / NAMES_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
