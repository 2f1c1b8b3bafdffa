"""The dense-depth task: prepared image / event / depth samples (``fuse.data.layout``), teacher
distillation and metric-depth losses, E2Depth validation metrics.

FUSE's stages, and every other method trained on the prepared samples, use it; which losses
apply is the stage's ``losses`` (weights from ``loss.*``), whether validation scores depth is its
``depth_metrics``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fuse.data.constants import dataset_info
from fuse.data.dataset import EventDepthDataset
from fuse.errors import ConfigError
from fuse.evaluate.metrics import all_reduce_sums, batch_metric_sums, empty_sums, finalize_sums
from fuse.train import losses
from fuse.train.tasks import EpochDataset, Losses, Task, forward, normalized

if TYPE_CHECKING:
    from fuse.train.trainer import Trainer


def at_size(pred: torch.Tensor, size) -> torch.Tensor:
    """Bring a (B, h, w) prediction to the ground truth's resolution (bilinear, align_corners as upstream)."""
    if pred.shape[-2:] == tuple(size):
        return pred
    return F.interpolate(pred[:, None], tuple(size), mode="bilinear", align_corners=True)[:, 0]


def on_device(trainer: Trainer, batch: dict, *keys: str) -> list[torch.Tensor]:
    """``batch[key]`` for each key, moved to the trainer's device (non-blocking)."""
    return [batch[key].to(trainer.device, non_blocking=True) for key in keys]


def student_options(trainer: Trainer) -> dict:
    """The FUSE-family builder options from ``model.*``; the head ending is the stage's."""
    model, stage = trainer.config.model, trainer.stage
    return dict(head=stage.student_head, max_depth=model.max_depth if stage.student_head == "metric" else 1.0,
                encoder=model.encoder, head_size=model.head_size, event_bins=model.event_bins,
                lora_rank=model.lora_rank)


def datasets(trainer: Trainer) -> tuple[EpochDataset, EpochDataset | None]:
    """Train and validation sets over the prepared split lists; validation of a distillation stage
    sees the same degradation as training (the teacher still gets the clean image)."""
    config, stage = trainer.config, trainer.stage
    data = config.data
    if not data.train_split:
        raise ConfigError("data.train_split is not set: give the split list to train on")
    common = dict(dataset=data.dataset, size=data.input_size, num_bins=config.model.event_bins, seed=config.run.seed)
    degradation = None if data.degradation == "none" else data.degradation
    train = EventDepthDataset(data.train_split, mode="train", degradation=degradation, **common)
    val = None
    if data.val_split:
        val = EventDepthDataset(data.val_split, mode="val", degradation=degradation if stage.uses_teacher else None,
                                **common)
    return train, val


def compute_losses(trainer: Trainer, batch: dict) -> Losses:
    """Forward the student (and teacher); the stage's losses, weighted by ``loss.*``."""
    loss_cfg, stage, device = trainer.config.loss, trainer.stage, trainer.device
    image = batch["image"].to(device, non_blocking=True)
    voxel = batch["voxel"].to(device, non_blocking=True)
    with trainer.autocast():
        pred, features = forward(trainer.model, trainer.inputs, {"image": image, "events": voxel})
        named: dict[str, torch.Tensor] = {}
        if trainer.teacher is not None:
            clean = batch.get("image_clean", batch["image"]).to(device, non_blocking=True)
            with torch.no_grad():
                target, target_features = trainer.teacher(clean, return_features=True)
            if "l1" in stage.losses:
                named["l1"] = losses.l1_loss(pred.float(), target.float())
            if "feature_cos" in stage.losses:
                named["feature_cos"] = losses.feature_cosine_loss(
                    [f.float() for f in features], [f.float() for f in target_features],
                    loss_cfg.cos_alpha, loss_cfg.cos_beta)
        if "silog" in stage.losses:
            depth = batch["depth"].to(device, non_blocking=True)
            valid = batch["valid_mask"].to(device, non_blocking=True)
            named["silog"] = losses.silog_loss(at_size(pred.float(), depth.shape[-2:]), depth, valid,
                                               loss_cfg.silog_lambda)
        if "disparity_l1" in stage.losses:
            depth = batch["depth"].to(device, non_blocking=True)
            min_depth = dataset_info(trainer.config.data.dataset).min_depth
            named["disparity_l1"] = losses.disparity_l1_loss(at_size(pred.float(), depth.shape[-2:]), depth, min_depth)
    weights = loss_cfg.weights()
    total = sum(weights[name] * value for name, value in named.items())
    return total, named, pred


def metric_sums(trainer: Trainer, batch: dict, pred: torch.Tensor) -> dict[str, torch.Tensor]:
    """E2Depth per-frame metric sums of a validation batch, in the dataset's depth range."""
    info = dataset_info(trainer.config.data.dataset)
    depth = batch["depth"].to(trainer.device)
    return batch_metric_sums(at_size(pred.float(), depth.shape[-2:]), depth, info.min_depth, info.max_depth)


def finalize(sums: dict[str, torch.Tensor]) -> dict:
    return {key: value for key, value in finalize_sums(all_reduce_sums(sums)).items() if value is not None}


def panel(trainer: Trainer, batch: dict, pred: torch.Tensor) -> list[torch.Tensor]:
    """Image | events | prediction (| ground truth where the stage trains on it)."""
    tiles = [normalized(batch["image"][0].mean(0)), normalized(batch["voxel"][0].sum(0)),
             normalized(pred[0].detach().cpu())]
    if trainer.stage.panel_depth:
        tiles.append(normalized(batch["depth"][0]))
    return tiles


DENSE_DEPTH = Task("dense_depth", student_options, datasets, compute_losses, metric_sums, empty_sums, finalize, panel)
