"""Files only their owner may read: the runner's checkpoints, the load manifest (every event's
payload), the demo's runner log (the handler's logs, payloads at DEBUG).

Files are 0600 and the directories created for them 0700 from the moment they exist: the mode
goes to `os.open` / `os.mkdir`, so no other user can open a file before its mode is right (a
chmod after writing leaves that window open, and a reader who got in keeps its descriptor).
The mode given there passes through the umask, which can only take bits away; an `fchmod` on
the new descriptor (a `chmod` of the new directory) gives back what an unusual umask such as
0o277 took from the owner, so the result does not depend on the umask.

Directories that already exist are left as they are: they belong to the user (a `--state-dir`
of /tmp, say). An existing file is never rewritten in place: a new one takes its name, so an
old 0644 file does not keep its mode.

One definition for `esm/` and `streamline/` (which may import `esm`, docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """`directory` and any missing parents, each created 0700; existing ones untouched."""
    missing: list[Path] = []
    current = Path(directory)
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIRECTORY_MODE)
        except FileExistsError:
            continue  # created meanwhile by another process: not ours to change
        os.chmod(path, DIRECTORY_MODE)  # only adds back owner bits the umask took


def _create(path: Path) -> int:
    """A new file at `path`, 0600, open for writing. O_EXCL: never a file or symlink someone
    else put there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Path) -> BinaryIO:
    """`path` opened for writing as a new, empty 0600 file (an old one is removed first)."""
    path = Path(path)
    make_private_dirs(path.parent)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.fdopen(_create(path), "wb")


def write_private_atomically(path: Path, text: str, fsync: bool = False) -> None:
    """`text` (UTF-8) into `path` as a new 0600 file renamed over the old one: a reader, or a
    process killed mid-write, sees the old file or the new one, never half of either.
    ``fsync=True`` also survives a power cut.

    The temporary file's name carries the process id, so there is one writer per path per
    process (the callers hold a lock or write from one thread). A temporary file left by a
    killed process with this id is stale and removed."""
    path = Path(path)
    make_private_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    try:
        with os.fdopen(_create(temporary), "wb") as out:
            out.write(text.encode("utf-8"))
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
