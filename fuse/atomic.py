"""Atomic file writes: a crash at any moment leaves the old file or the complete new one.

Every writer of the project (preparation scripts, inference outputs, reports, checkpoints)
goes through ``atomic_write``: the data goes to a hidden temporary file in the target folder
(plain ``open``, so the usual umask permissions apply), then ``os.replace`` renames it over the
target. Temporary files end with ``TEMP_SUFFIX`` so that interrupted runs can clean them up.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

TEMP_SUFFIX = ".partial"


def temp_path_for(path: Path, extension: str = "") -> Path:
    """A unique hidden temporary name next to ``path`` (``extension`` for writers that need one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}{extension}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], fsync: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file, then rename it to ``path``.

    ``fsync`` forces the bytes to disk before the rename (checkpoints: a power cut must not
    leave a renamed but empty file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))
