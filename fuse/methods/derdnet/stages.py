"""DERD-Net's training stage ``derdnet`` (``python -m fuse derdnet``), its task and config section.

The shared trainer (``fuse.train.trainer``) runs it: AdamW (``optim.*``; the configs set lr 1e-3,
weight decay 0.01, batch 64 and ``poly_power: 0``, which keeps the learning rate exactly
constant as the authors' run without a scheduler, spec §7), checkpoints, exact resume, DDP and
AMP. The task feeds Sub-DSIs (``fuse.methods.derdnet.data``), computes the L1 loss on normalized
depth (multi-pixel: over the nine outputs, NaN targets left out) and validates with the pooled
MAE in metres of the clipped outputs against unclipped GT (``mae``, which selects ``best.pth``;
the authors' selection criterion is unknown, spec §10).

Section ``derdnet`` (``config.section("derdnet")``): the prepared folders to train and validate
on are the method's own keys ``derdnet.train`` / ``derdnet.val`` (comma-separated folders of
``derdnet-prepare``), not ``data.train_split`` / ``data.val_split``, which name FUSE split lists;
``derdnet.dataset``, ``derdnet.filter`` are checked against what the folders record.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fuse.errors import ConfigError
from fuse.evaluate.metrics import all_reduce_sums
from fuse.methods.derdnet.data import SPLITS, PreparedFolder, SubDsiDataset
from fuse.methods.derdnet.model import CENTRE, DEPTH_RANGES, KIND, DepthRange, depth_range
from fuse.train.config import Key, register_section
from fuse.train.stages import Stage, register_stage
from fuse.train.tasks import EpochDataset, Losses, Task, forward, normalized

if TYPE_CHECKING:
    from fuse.train.trainer import Trainer

SECTION = "derdnet"
register_section(SECTION, {
    "dataset": Key("mvsec", "depth range of the outputs (spec §5.1: mvsec 1-6.5 m, dsec 4-50 m); must be the "
                   "prepared folders' dataset", choices=tuple(DEPTH_RANGES)),
    "multi_pixel": Key(False, "train the multi-pixel model: nine outputs, the 3x3 pixels around each centre "
                       "(spec §5)"),
    "filter": Key("denser", "pixel selection the prepared folders were made with (spec §3: F_denser for training)",
                  choices=("orig", "denser")),
    "split": Key("even", "windows of derdnet.train to train on: even or odd (the two ensemble members, spec §7) "
                 "or all", choices=SPLITS),
    "train": Key(None, "derdnet-prepare folders to train on, comma-separated (for MVSEC fold K: the other two "
                 "indoor_flying sequences)", example=""),
    "val": Key(None, "derdnet-prepare folders to validate on each epoch, comma-separated (null: no validation, "
               "no best.pth)", example=""),
    "val_split": Key("all", "windows of derdnet.val to validate on", choices=SPLITS),
    "augment": Key(False, "random vertical / horizontal flips of training Sub-DSIs (spec §7: off)"),
}, "derdnet.*: DERD-Net's prepared data, variant and depth range")


def _folders(settings: Any, key: str, required: bool) -> list[PreparedFolder]:
    """The prepared folders ``derdnet.<key>`` lists, checked against the section's dataset and filter."""
    names = [name.strip() for name in (getattr(settings, key) or "").split(",") if name.strip()]
    if required and not names:
        raise ConfigError(f"config key '{SECTION}.{key}' is not set: give the derdnet-prepare folders to train on, "
                          "comma-separated")
    folders = [PreparedFolder(name) for name in names]
    for folder in folders:
        for name in ("dataset", "filter"):
            if folder.settings[name] != getattr(settings, name):
                raise ConfigError(f"config key '{SECTION}.{name}' is {getattr(settings, name)!r}, but "
                                  f"{folder.describe()} was prepared with {name} {folder.settings[name]!r}")
    return folders


def _range(trainer: Trainer) -> DepthRange:
    return depth_range(trainer.config.section(SECTION).dataset)


def student_options(trainer: Trainer) -> dict:
    return {"multi_pixel": trainer.config.section(SECTION).multi_pixel}


def datasets(trainer: Trainer) -> tuple[EpochDataset, EpochDataset | None]:
    """Training windows of ``derdnet.split`` (targets clipped), validation windows (targets as they are)."""
    settings, seed = trainer.config.section(SECTION), trainer.config.run.seed
    common = dict(depth=_range(trainer), multi_pixel=settings.multi_pixel)
    train_folders = _folders(settings, "train", True)
    train = SubDsiDataset(train_folders, settings.split, clip_targets=True, augment=settings.augment, seed=seed,
                          **common)
    if len(train) == 0:
        raise ConfigError(f"the {settings.split} windows of {', '.join(f.describe() for f in train_folders)} hold "
                          "no selected pixel with ground truth: nothing to train on")
    val_folders = _folders(settings, "val", False)
    val = SubDsiDataset(val_folders, settings.val_split, clip_targets=False, **common) if val_folders else None
    return train, val


def masked_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the finite targets (all of them for the single-pixel model)."""
    valid = torch.isfinite(target)
    return (prediction[valid] - target[valid]).abs().mean()


def compute_losses(trainer: Trainer, batch: dict) -> Losses:
    """L1 on normalized depth, the authors' only loss (spec §7); ``loss.*`` weights do not apply."""
    sub_dsi = batch["sub_dsi"].to(trainer.device, non_blocking=True)
    target = batch["target"].to(trainer.device, non_blocking=True)
    with trainer.autocast():
        prediction, _ = forward(trainer.model, trainer.inputs, {"dsi_patch": sub_dsi})
    loss = masked_l1(prediction.float(), target)
    return loss, {"l1": loss}, prediction


def metric_sums(trainer: Trainer, batch: dict, prediction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums of |depth error| in metres over the points with GT (outputs clipped, spec §5.1)."""
    depth = batch["depth"].to(trainer.device).double()
    error = (_range(trainer).to_metres(prediction.double()) - depth).abs()
    valid = torch.isfinite(depth)
    return {"abs_error": error[valid].sum(), "points": valid.sum().double()}


def empty_sums() -> dict[str, float]:
    return {"abs_error": 0.0, "points": 0.0}


def finalize(sums: dict[str, torch.Tensor]) -> dict:
    """The pooled MAE in metres over every validation point (spec §8's MAE before the x100)."""
    total = all_reduce_sums(sums)
    points = int(total["points"])
    return {"mae": float(total["abs_error"]) / points, "points": points} if points else {"points": 0}


def panel(trainer: Trainer, batch: dict, prediction: torch.Tensor) -> list[torch.Tensor]:
    """The first Sub-DSI cut through its centre row and column (depth near -> far downwards), and a
    strip marking the planes nearest the ground truth (left) and the prediction (right)."""
    block = batch["sub_dsi"][0].float()
    centre = block.shape[-1] // 2
    depth = _range(trainer)
    truth, guess = _centre(batch["depth"][0]), depth.to_metres(_centre(prediction[0]).float())
    strip = torch.zeros(block.shape[0], 2)
    for column, metres in enumerate((truth, guess)):
        if torch.isfinite(metres):
            strip[_plane(metres, depth, block.shape[0]), column] = 1.0
    return [normalized(block[:, centre, :]), normalized(block[:, :, centre]), strip]


def _centre(values: torch.Tensor) -> torch.Tensor:
    """The centre pixel's value of a single-pixel (scalar) or multi-pixel (nine) sample."""
    return values.reshape(-1)[CENTRE if values.ndim else 0]


def _plane(metres: torch.Tensor, depth: DepthRange, planes: int) -> int:
    """Index (near -> far) of the plane nearest ``metres`` on the DSI's inverse-depth grid (spec §2.4)."""
    step = (1 / depth.z_min - 1 / depth.z_max) / planes
    return int(round(min(max((1 / depth.z_min - 1 / float(metres)) / step - 1, 0), planes - 1)))


DERDNET_TASK = Task("derdnet_points", student_options, datasets, compute_losses, metric_sums, empty_sums, finalize,
                    panel)

DERDNET_STAGE = register_stage(Stage(
    "derdnet", KIND, "point", False, ("l1",), lambda name: True, lambda name: False,
    "train DERD-Net on derdnet-prepare folders (Sub-DSIs -> depth, L1 on normalized depth, spec §7)",
    select_by="mae", task=DERDNET_TASK, depth_metrics=True))
