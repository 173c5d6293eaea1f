"""The files the decoder processes write batches into: shared memory where there is room, else the temp folder.

Each file's name holds the id of the process that made it, so the files of a process that was killed
are found and removed by the next one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile

from tlcore import temporaries

# Where the batches live while the processes fill them: memory (tmpfs) where there is room, else the
# temp folder. A container's /dev/shm can be as small as 64 MB, which a batch of 256 photos at 224 px
# outgrows: the room is reserved up front (a process writing to a tmpfs without room dies of SIGBUS).
SHARED_FOLDERS = tuple(folder for folder in ("/dev/shm", tempfile.gettempdir()) if os.path.isdir(folder))
FILE_PREFIX = "tlcore-decoding-"


def new_file(size: int) -> str:
    """A new file of `size` bytes for a pass's batches, its room reserved, in the first folder that has it.

    Its name holds this process's id, so that the files of a process that was killed can be found
    and removed (`remove_orphans`).
    """
    remove_orphans()
    problems = []
    for folder in SHARED_FOLDERS:
        descriptor, path = tempfile.mkstemp(prefix=f"{FILE_PREFIX}{os.getpid()}-", dir=folder)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(descriptor, 0, size)  # ENOSPC here, rather than SIGBUS in a process.
            else:
                os.ftruncate(descriptor, size)
            return str(temporaries.register(path))  # The caller removes it, then releases it.
        except OSError as error:
            os.unlink(path)
            problems.append(f"{folder}: {error.strerror or error}")
        finally:
            os.close(descriptor)
    raise OSError(errno.ENOSPC, f"no room for {size / 1e6:.1f} MB of decoded batches ({'; '.join(problems)})")


def remove_orphans() -> None:
    """Removes the batch files of processes that no longer run (killed before they could remove them)."""
    pattern = re.compile(re.escape(FILE_PREFIX) + r"(\d+)-")
    for folder in SHARED_FOLDERS:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                match = pattern.match(name)
                if match and not _running(int(match.group(1))):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # Someone else's process, or a platform that cannot tell: leave its files alone.
    return True
