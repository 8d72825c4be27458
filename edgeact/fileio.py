"""Atomic file writes: a reader never sees a half-written artifact; no temporary file outlives its run.

Data goes to a temporary file in the destination's folder, is flushed to disk, then `os.replace`
renames it into place (atomic on POSIX); on any error the temporary file is removed and the old
file, if any, stays. Every file edgeact writes goes through here.

A run killed outright (SIGKILL, power loss) cannot clean up, so temporary names carry the writer's
process id (`.NAME.edgeact<pid>.XXXX.tmp`, `edgeact-run-<pid, 7 digits>-XXXX`): the next run removes those
whose process is gone (and unnamed ones from older versions once they are an hour old).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from edgeact import interrupt
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


LEGACY_AGE = 3600.0  # seconds after which a temporary file without a process id is taken as stale
_TMP_FILE = re.compile(r"^\..+\.edgeact(\d+)\.[^.]+\.tmp$")
_TMP_DIR = re.compile(r"^edgeact-run-(?:(\d+)-)?[^-]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _is_stale(entry: Path, pid: str | None, legacy: bool) -> bool:
    if pid is not None:
        return not _alive(int(pid))
    if not legacy:
        return False
    try:
        return time.time() - entry.lstat().st_mtime > LEGACY_AGE
    except OSError:
        return False


def remove_stale_temp_files(folder: Path, name: str | None = None) -> list[Path]:
    """Remove temporary files in `folder` left by killed edgeact runs (process gone); for `name`, also
    its old-style `.NAME.XXXXXXXX.tmp` once an hour old. Returns what was removed; never raises."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    legacy = re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp$") if name else None
    for e in entries:
        m = _TMP_FILE.match(e.name)
        old = bool(legacy and legacy.match(e.name))
        if (m or old) and _is_stale(e, m.group(1) if m else None, old):
            with contextlib.suppress(OSError):
                e.unlink()
                removed.append(e)
    return removed


def temp_dir(prefix: str = "edgeact-run-") -> Path:
    """A private temporary folder named with this process id; stale ones of dead processes go first."""
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for e in base.iterdir():
            m = _TMP_DIR.match(e.name)
            if m and e.is_dir() and _is_stale(e, m.group(1), legacy=True):
                shutil.rmtree(e, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid():07d}-"))  # one length: see targets/qemu.py
    interrupt.track(path)
    return path


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and prove it takes a file (a read-only disk, a full disk or missing rights
    fail here, before any long work, with an ExportError naming the folder)."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # made here, removed again on failure
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".probe.edgeact{os.getpid()}.", suffix=".tmp", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        for p in created:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
        raise ExportError(f"cannot write into {str(folder)!r}: {exc.strerror or exc} — choose a writable folder "
                          "with free space") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, create_dirs: bool = True):
    """Yields a temporary path beside `path`; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    _check_destination(path, create_dirs)
    remove_stale_temp_files(path.parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.edgeact{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {str(path)!r}: {exc.strerror} — choose a writable path") from None
    os.close(fd)
    interrupt.track(tmp)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # full disk, quota, I/O error while writing: say which file
            raise ExportError(f"cannot write {str(path)!r}: {exc.strerror or exc} — free some space or choose "
                              "another folder") from None
        raise
    finally:
        interrupt.track(tmp, done=True)


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
