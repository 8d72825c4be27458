"""Atomic file writes: a reader never sees a half-written artifact.

Data goes to a temporary file in the destination's folder, is flushed to disk, then `os.replace`
renames it into place (atomic on POSIX); on any error the temporary file is removed and the old
file, if any, stays. Every file edgeact writes goes through here.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from edgeact.errors import ExportError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_destination(path: Path, create_dirs: bool) -> None:
    if path.is_dir():
        raise ExportError(f"cannot write to {str(path)!r}: it is a directory — give a file name inside it")
    parent = path.parent
    if not parent.is_dir():
        if not create_dirs:
            raise ExportError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist — create it first")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create folder {str(parent)!r} for {path.name}: {exc.strerror}; "
                              "choose a writable path") from None
    if not os.access(parent, os.W_OK):
        raise ExportError(f"cannot write {str(path)!r}: {str(parent)!r} is not writable — choose a writable path")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, create_dirs: bool = True):
    """Yields a temporary path beside `path`; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    _check_destination(path, create_dirs)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {str(path)!r}: {exc.strerror} — choose a writable path") from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, create_dirs: bool = True) -> Path:
    """Write bytes or text to `path` atomically; returns the path. An OS error becomes an ExportError."""
    try:
        with atomic_path(path, create_dirs) as tmp:
            if isinstance(data, str):
                tmp.write_text(data)
            else:
                tmp.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {str(path)!r}: {exc.strerror or exc} — choose a writable location") from None
    return Path(path)
