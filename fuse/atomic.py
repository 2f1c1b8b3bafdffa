"""Atomic file writes: a crash at any moment leaves the old file or the complete new one.

Every writer of the project (preparation scripts, inference outputs, reports, checkpoints)
goes through ``atomic_write``: the data goes to a hidden temporary file in the target folder
(plain ``open``, so the usual umask permissions apply), then ``os.replace`` renames it over the
target. Temporary files end with ``TEMP_SUFFIX`` so that interrupted runs can clean them up
(``remove_stale_temps``).

A write the file system refuses (full disk, read-only folder, no permission) raises
``WriteError``, whose message names the file and the cause; ``check_writable`` finds a refusing
output folder before any work starts.
"""
from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from fuse.errors import WriteError

TEMP_SUFFIX = ".partial"

_ADVICE = {
    errno.ENOSPC: "free some space or choose another output folder",
    errno.EDQUOT: "free some space or choose another output folder",
    errno.EROFS: "choose a writable output folder",
    errno.EACCES: "choose a folder you may write to",
    errno.EPERM: "choose a folder you may write to",
}


def write_error(path: str | os.PathLike, error: OSError) -> WriteError:
    """A ``WriteError`` for ``path`` from the ``OSError`` a write raised."""
    if isinstance(error, WriteError):
        return error
    reason = error.strerror or str(error)
    advice = _ADVICE.get(error.errno, "check the output folder")
    return WriteError(error.errno, f"cannot write {path}: {reason}; {advice}", os.fspath(path))


def check_writable(folder: str | os.PathLike, create: bool = True) -> Path:
    """Write and remove a small file in ``folder``, so a refusing file system fails at start.

    ``create=False`` leaves a missing ``folder`` uncreated and probes its nearest existing parent
    instead (a run that then fails on its input leaves nothing behind).
    """
    folder = Path(folder)
    target = folder
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_error(folder, error) from None
    else:
        while not target.exists():
            target = target.parent
    if not target.is_dir():
        raise WriteError(errno.ENOTDIR, f"cannot write into {folder}: {target} is not a folder", os.fspath(folder))
    try:
        probe = atomic_write(target / ".write_test", lambda handle: handle.write(b"0" * 4096))
    except WriteError as error:
        refused = error.__cause__  # the file system's own OSError
        if target == folder or not isinstance(refused, OSError):
            raise
        reason = refused.strerror or str(refused)
        raise write_error(folder, OSError(refused.errno, f"{reason} (in {target}, where it would be created)")) from None
    probe.unlink()
    return folder


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> int:
    """Delete temporary files nobody writes any more: ``atomic_write`` temporaries whose writer
    process is gone (killed mid-write), and hidden ``*.partial`` files that name no writer.

    Files of a live process (another run writing into the same folder) are kept. ``name`` limits
    this to the temporaries of that one file, for a folder shared with other outputs. Returns the count.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.glob(f".*{TEMP_SUFFIX}*"):
        if (name is None or path.name.startswith(f".{name}.")) and _is_stale(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _is_stale(name: str) -> bool:
    """True for a temporary file of a writer that is gone, or of none (a name without a process id)."""
    pid = _writer_pid(name)
    return name.endswith(TEMP_SUFFIX) if pid is None else not _alive(pid)


def _writer_pid(name: str) -> int | None:
    """The process id in a ``temp_path_for`` name, or None for other files."""
    parts = name.split(TEMP_SUFFIX)[0].split(".")
    return int(parts[-2]) if len(parts) >= 4 and parts[-2].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_path_for(path: Path, extension: str = "") -> Path:
    """A unique hidden temporary name next to ``path`` (``extension`` for writers that need one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}{extension}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], fsync: bool = False,
                 previous: str | os.PathLike | None = None) -> Path:
    """Call ``write(handle)`` on a temporary file, then rename it to ``path``.

    ``fsync`` forces the bytes (and the renames) to disk (checkpoints: a power cut must not
    leave a renamed but empty file). ``previous``: once the new file is complete, the current
    ``path`` is renamed there instead of being replaced, so two complete copies exist.
    A refused write raises ``WriteError``.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
        if fsync:
            _fsync_folder(path.parent)
    except OSError as error:
        _remove_quietly(tmp)
        raise write_error(path, error) from error
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


@contextmanager
def files_together(finals: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary paths for files that belong together (a recording's data, ground truth and
    calibration): all are renamed into place when the block ends, none appear when it fails."""
    temps = [temp_path_for(final) for final in finals]
    try:
        yield temps
        for temp, final in zip(temps, finals):
            os.replace(temp, final)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _remove_quietly(path: Path) -> None:
    """Remove a temp file if it was made; a folder that refuses this too (read-only) must not turn
    the one clear error about the write into a second one."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))
