"""What a stage trains on: its data, forward pass and losses, validation metrics and panels.

The trainer (``fuse.train.trainer``) owns the loop, optimizer, checkpoints, resume and DDP; a
``Task`` owns everything that depends on what a batch holds. Stages of methods trained on the
prepared image / event / depth samples use ``fuse.train.dense_depth.DENSE_DEPTH``; a method with
other data (DERD-Net's Sub-DSIs) registers stages with its own task.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from fuse.train.trainer import Trainer


class EpochDataset(Protocol):
    """A map-style dataset whose random augmentation is reseeded each epoch (exact resume)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...

    def set_epoch(self, epoch: int) -> None: ...


Losses = tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]  # total, named losses, prediction


@dataclass(frozen=True)
class Task:
    """The data-dependent half of training.

    - ``student_options(trainer)``: builder options of the student (``model_kind(kind).build``);
    - ``datasets(trainer)``: (train, validation or None) datasets;
    - ``losses(trainer, batch)``: forward the student (``trainer.model``) and the teacher, return
      the weighted total, the named losses and the prediction;
    - ``metric_sums(trainer, batch, prediction)``: per-batch sums of validation metrics (tensors on
      the trainer's device, added over batches), for stages with ``depth_metrics``;
    - ``empty_sums()``: the zero sums validation starts from (every key ``metric_sums`` gives);
    - ``finalize(sums)``: the metrics from the sums, reduced over ranks here;
    - ``panel(batch, prediction)``: image tiles (H, W in [0, 1]) of the first sample for TensorBoard.
    """

    name: str
    student_options: Callable[["Trainer"], dict]
    datasets: Callable[["Trainer"], tuple[EpochDataset, EpochDataset | None]]
    losses: Callable[["Trainer", dict], Losses]
    metric_sums: Callable[["Trainer", dict, torch.Tensor], dict[str, torch.Tensor]]
    empty_sums: Callable[[], dict[str, float]]
    finalize: Callable[[dict[str, torch.Tensor]], dict]
    panel: Callable[["Trainer", dict, torch.Tensor], list[torch.Tensor]]


def normalized(x: torch.Tensor) -> torch.Tensor:
    """A tensor scaled to [0, 1] for a panel tile (NaN shown as 0)."""
    x = torch.nan_to_num(x.float(), nan=0.0)
    return (x - x.min()) / (x.max() - x.min() + 1e-8)


def forward(model: nn.Module, inputs: tuple[str, ...], tensors: dict[str, torch.Tensor]):
    """``model(*inputs in the kind's order, return_features=True)``."""
    return model(*(tensors[name] for name in inputs), return_features=True)
