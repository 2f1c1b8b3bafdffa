"""This project's checkpoint file: one format for every stage, written atomically.

A file is a dict with ``format``, ``model_config`` (``ModelConfig.to_dict()``) and ``model``
(state dict, LoRA kept separate from the base weights), plus, for training checkpoints,
``optimizer``, ``scheduler``, ``epoch``, ``step``, ``run_config``, ``best`` and ``rng``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fuse.atomic import atomic_write

FORMAT = "fuse-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or does not fit the model asked for."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through ``fuse.atomic``: the previous file stays until the new one is complete."""
    return atomic_write(path, lambda handle: torch.save(obj, handle), fsync=True)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, **state: Any) -> Path:
    """Save ``model`` (with its ``config``) and any training state given as keyword arguments."""
    payload = {"format": FORMAT, "model_config": model.config.to_dict(), "model": model.state_dict(), **state}
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file to CPU with one clear error for a missing or corrupt file.

    Tensors-and-containers only (``weights_only``): a checkpoint never runs code when read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (or download the weights)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "the file may be truncated or not a PyTorch checkpoint: download or copy it again"
        ) from error
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a state dict")
    return data
