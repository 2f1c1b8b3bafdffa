"""This project's checkpoint file: one format for every stage, written atomically.

A file is a dict with ``format``, ``model_config`` (``ModelConfig.to_dict()``) and ``model``
(state dict, LoRA kept separate from the base weights), plus, for training checkpoints,
``optimizer``, ``scheduler``, ``epoch``, ``step``, ``run_config``, ``best`` and ``rng``.

Training checkpoints rotate: the new ``latest.pth`` is written completely under a temporary
name, the old one becomes ``latest.prev.pth``, then the new one takes its name. A crash at any
moment leaves at least one complete copy, and ``read_resumable`` falls back to the previous
copy when the newest is missing or unreadable.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from fuse.atomic import atomic_write
from fuse.errors import CheckpointError

FORMAT = "fuse-checkpoint/1"


def previous_path(path: str | os.PathLike) -> Path:
    """Where a rotated checkpoint keeps its previous copy: ``latest.pth`` -> ``latest.prev.pth``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_torch_save(obj: Any, path: str | os.PathLike, keep_previous: bool = False) -> Path:
    """``torch.save`` through ``fuse.atomic``: the previous file stays until the new one is complete
    (and, with ``keep_previous``, afterwards as ``previous_path(path)``)."""
    previous = previous_path(path) if keep_previous else None
    return atomic_write(path, lambda handle: torch.save(obj, handle), fsync=True, previous=previous)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, keep_previous: bool = False,
                    **state: Any) -> Path:
    """Save ``model`` (with its ``config``) and any training state given as keyword arguments."""
    payload = {"format": FORMAT, "model_config": model.config.to_dict(), "model": model.state_dict(), **state}
    return atomic_torch_save(payload, path, keep_previous)


# First bytes of files that are often passed where a checkpoint belongs.
_FOREIGN_MAGIC = {b"\x89HDF": "an HDF5 file", b"\x93NUMPY": "a NumPy .npy array", b"\x89PNG": "a PNG image",
                  b"\xff\xd8\xff": "a JPEG image", b"\x1aE\xdf\xa3": "a video file"}
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80


def _unreadable_reason(path: Path, error: Exception) -> str:
    """Why ``torch.load`` failed, in words: empty, truncated, another kind of file, or unsafe content."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
    if size == 0:
        return "the file is empty (0 bytes): a download or copy that did not finish; download or copy it again"
    for magic, kind in _FOREIGN_MAGIC.items():
        if head.startswith(magic):
            return f"it is {kind}, not a PyTorch checkpoint; check the path"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0].rstrip(".")
    if head.startswith(_ZIP_MAGIC):
        return (f"the archive is truncated or damaged ({size} bytes; PyTorch says: {first_line}); "
                "download or copy it again")
    if head[:1] == bytes([_PICKLE_PROTOCOL]):
        if "weights_only" in first_line.lower() or "weights only" in first_line.lower():
            return ("it holds Python objects other than tensors and containers, which this project never loads "
                    "(a checkpoint must not run code when read); re-save its state dict with torch.save")
        return f"the legacy PyTorch file is truncated or damaged ({first_line}); download or copy it again"
    return f"it is not a PyTorch checkpoint (it starts with {head!r}); check the path"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file to CPU with one clear error for a missing, empty, cut-short or foreign file.

    Tensors-and-containers only (``weights_only``): a checkpoint never runs code when read.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; check the path (or download the weights)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} could not be read: {_unreadable_reason(path, error)}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a state dict")
    return data


def read_resumable(path: str | os.PathLike) -> tuple[dict, Path]:
    """The newest readable copy of a rotated checkpoint: ``path``, else ``previous_path(path)``.

    An unreadable ``path`` (a disk that lost data, a copy cut short) is renamed to
    ``<stem>.unreadable<suffix>`` so that the next rotation cannot push the good previous copy
    out; a warning names both files.
    """
    path, previous = Path(path), previous_path(path)
    if not path.is_file() and not previous.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist (start without --resume, or set "
                              "run.output_dir to the folder of the run to continue)")
    try:
        return read_checkpoint(path), path
    except CheckpointError as error:
        if not previous.is_file():
            raise
        if path.is_file():
            aside = path.with_name(f"{path.stem}.unreadable{path.suffix}")
            os.replace(path, aside)
            print(f"warning: {error}; moved it to {aside.name} and resuming from the previous copy {previous}",
                  file=sys.stderr)
        else:
            print(f"warning: {path} is missing (the run stopped while renaming it); resuming from the previous "
                  f"copy {previous}", file=sys.stderr)
    return read_checkpoint(previous), previous
