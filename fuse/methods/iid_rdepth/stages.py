"""IID-RDepth's training stage ``restore`` (``python -m fuse restore``), its task and config section.

The student is ``iid_rdepth`` around a frozen base (``iid_rdepth.base``: ``depth_anything_v2`` or
``fuse``, sized by ``model.*``, loaded from ``init.foundation``: a metric model, e.g. stage
``adapt``'s output). Only the restorer, the invertible couplings and AV-LFE train (spec §5: the
encoder and the upper decoder stay frozen). The loss is on the valid ground-truth pixels only (sparse
or dense): SILog by default (``iid_rdepth.loss``), weight ``loss.silog``. With a degradation
(``data.degradation``) the batch also holds the clean image, and ``iid_rdepth.feature_match`` > 0
adds ``mean |f_restored - f_base(clean)|^2`` over the restored levels: direct feature supervision,
which the paper does not have (§1), as an ablation of its premise. Validation sees the same
degradation as training (what the restorer is for) and ``abs_rel`` picks ``best.pth``.

The event auxiliary view (``iid_rdepth.aux_view: events``) reads the samples' voxel grids; the
right camera is not in the prepared layout, so ``aux_view: right`` is refused here
(``benchmarks/study_iid_rdepth.py`` trains it on the stereo recordings directly).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from fuse.data.dataset import EventDepthDataset
from fuse.errors import ConfigError
from fuse.methods.iid_rdepth.av_lfe import ALIGNMENTS
from fuse.methods.iid_rdepth.diffusion import GRAD_STEPS, PARAMETRIZATIONS, SCHEDULES
from fuse.methods.iid_rdepth.invertible import COUPLINGS, LIPSCHITZ_METHODS
from fuse.methods.iid_rdepth.model import BASE_KINDS, KIND
from fuse.train import dense_depth, losses
from fuse.train.config import InitSection, Key, register_section
from fuse.train.stages import InitFile, Loader, Stage, register_stage
from fuse.train.tasks import EpochDataset, Losses, Task, forward

if TYPE_CHECKING:
    from fuse.train.trainer import Trainer

SECTION = "iid_rdepth"
STAGE = "restore"
LOSSES = ("silog", "l1")
_LEVELS = "{}: comma-separated tap indices from 0 (finest) to 3 (deepest)"

register_section(SECTION, {
    "base": Key("depth_anything_v2", "the frozen model IID-RDepth wraps (sized by model.*, loaded from "
                "init.foundation)", choices=BASE_KINDS),
    "diffusion_steps": Key(4, "T: DDIM steps of the feature restorer at inference (0: no restorer) [hyp]", low=0),
    "train_diffusion_steps": Key(None, "DDIM steps while training (null: diffusion_steps) [hyp]", low=0, example=0),
    "schedule": Key("linear", "noise schedule: linear (DDPM betas 1e-4..0.02) or cosine [hyp]", choices=SCHEDULES),
    "schedule_length": Key(1000, "N: timesteps of the noise schedule [hyp]", low=2),
    "start_level": Key(0.5, "the sampler's start: the degraded feature noised to this fraction of N [hyp]",
                       low=0.0, high=1.0, open_low=True),
    "eta": Key(0.0, "DDIM stochasticity (0: deterministic DDIM, 1: DDPM-like) [hyp]", low=0.0),
    "parametrization": Key("x0_residual", "what the denoiser predicts: x0_residual (x0 = degraded + net), x0, eps "
                           "[hyp]", choices=PARAMETRIZATIONS),
    "restorer_width": Key(64, "the conditional U-Net's first width (then x2, x2) [hyp]", low=1),
    "grad_steps": Key("all", "backpropagate through all sampler steps or only the last [hyp]", choices=GRAD_STEPS),
    "eval_seed": Key(0, "seed of the start noise in evaluation (null: global RNG) [hyp]", low=0, example=0),
    "restore_levels": Key("2,3", _LEVELS.format("tapped levels the restorer restores (figure: the high-level 2, 3)")),
    "condition_levels": Key("2,3", _LEVELS.format("levels concatenated as the condition (figure: the deepest two)")),
    "invertible_stages": Key(True, "couplings in the finest DPT refinenets [fig]"),
    "fine_stages": Key(2, "finest DPT refinenets made invertible (figure: 2 of 4) [fig]", low=1, high=4),
    "fine_residual": Key(True, "keep the stage's frozen residual refinement before the couplings [hyp]"),
    "coupling": Key("affine", "coupling form: affine (b*sigma(G(a)) + H(a)) or additive [fig + hyp]",
                    choices=COUPLINGS),
    "coupling_blocks": Key(1, "coupling blocks per fine stage (figure: one two-stream block) [fig]", low=1),
    "scale_bound": Key(0.5, "s: the affine scale lies in [exp(-s), exp(s)] [hyp]", low=0.0),
    "sub_lipschitz": Key(0.9, "c: Lipschitz bound of the coupling sub-networks G, H, G2 [hyp]", low=0.0,
                         open_low=True),
    "lipschitz_method": Key("spectral", "how c is enforced: spectral (exact operator-norm bound) or none [hyp]",
                            choices=LIPSCHITZ_METHODS),
    "coupling_hidden": Key(None, "coupling sub-network width (null: half the DPT width) [hyp]", low=1, example=0),
    "aux_view": Key(None, "auxiliary view for AV-LFE: null or events (the right camera is not in the prepared "
                    "layout) [fig]", choices=(None, "events")),
    "aux_levels": Key("1,2", "DPT skips AV-LFE enhances, comma-separated, 1 (finest) to 4 (figure: the two "
                      "low-level ones) [fig]"),
    "align": Key("offsets", "AV-LFE alignment: offsets + grid_sample, deformable conv, none [hyp]", choices=ALIGNMENTS),
    "align_patch": Key(1, "AV-LFE offsets shared by patches of this side (figure: per-patch arrows) [fig + hyp]",
                       low=1),
    "aux_condition": Key(True, "the auxiliary map also conditions the restorer [hyp]"),
    "loss": Key("silog", "depth loss on valid pixels: silog (weight loss.silog, lambda loss.silog_lambda) or l1 "
                "(metres) [hyp: SILog as in PixelFormer]", choices=LOSSES),
    "feature_match": Key(0.0, "weight of |f_restored - f(clean)|^2 (needs data.degradation; 0: off, as in the "
                         "paper)", low=0.0),
}, "iid_rdepth.*: IID-RDepth's plug-in options and the restore stage's loss")


def parse_levels(key: str, text: str, low: int, high: int) -> tuple[int, ...]:
    """``"2,3"`` -> (2, 3), or a ``ConfigError`` naming the key."""
    try:
        levels = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        levels = ()
    if not levels or len(set(levels)) != len(levels) or any(not low <= level <= high for level in levels):
        raise ConfigError(f"config key '{SECTION}.{key}' must be distinct integers from {low} to {high} separated by "
                          f"commas, e.g. '2,3', got {text!r}")
    return levels


def student_options(trainer: Trainer) -> dict:
    """The frozen base's options (``model.*``, metric head) and the plug-in's (``iid_rdepth.*``)."""
    model, settings = trainer.config.model, trainer.config.section(SECTION)
    base = dict(kind=settings.base, encoder=model.encoder, head_size=model.head_size, head="metric",
                max_depth=model.max_depth, event_bins=model.event_bins, lora_rank=model.lora_rank)
    plain = ("diffusion_steps", "train_diffusion_steps", "schedule", "schedule_length", "start_level", "eta",
             "parametrization", "restorer_width", "grad_steps", "eval_seed", "invertible_stages", "fine_stages",
             "fine_residual", "coupling", "coupling_blocks", "scale_bound", "sub_lipschitz", "lipschitz_method",
             "coupling_hidden", "aux_view", "align", "align_patch", "aux_condition")
    return dict(base=base, **{name: getattr(settings, name) for name in plain},
                restore_levels=parse_levels("restore_levels", settings.restore_levels, 0, 3),
                condition_levels=parse_levels("condition_levels", settings.condition_levels, 0, 3),
                aux_levels=parse_levels("aux_levels", settings.aux_levels, 1, 4))


def datasets(trainer: Trainer) -> tuple[EpochDataset, EpochDataset | None]:
    """Train and validation sets, both with ``data.degradation`` (validation draws are seeded)."""
    config = trainer.config
    data, settings = config.data, config.section(SECTION)
    if not data.train_split:
        raise ConfigError("data.train_split is not set: give the split list to train on")
    degradation = None if data.degradation == "none" else data.degradation
    if settings.feature_match > 0 and degradation is None:
        raise ConfigError(f"{SECTION}.feature_match compares with the clean image's features, which only a degradation "
                          "gives: set data.degradation (e.g. night) or feature_match: 0")
    if settings.feature_match > 0 and settings.diffusion_steps == 0 and not settings.train_diffusion_steps:
        raise ConfigError(f"{SECTION}.feature_match supervises the restorer, but diffusion_steps is 0 (no restorer)")
    common = dict(dataset=data.dataset, size=data.input_size, num_bins=config.model.event_bins, seed=config.run.seed,
                  degradation=degradation)
    train = EventDepthDataset(data.train_split, mode="train", **common)
    val = EventDepthDataset(data.val_split, mode="val", **common) if data.val_split else None
    return train, val


def feature_match(restored: list[torch.Tensor], clean: list[torch.Tensor], levels: tuple[int, ...]) -> torch.Tensor:
    """Mean squared distance of the restored levels to the clean image's features."""
    return torch.stack([F.mse_loss(restored[level].float(), clean[level].float()) for level in levels]).mean()


def depth_loss(name: str, prediction: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor,
               silog_lambda: float) -> torch.Tensor:
    """SILog or mean absolute error (metres) over the valid, finite, positive ground-truth pixels."""
    if name == "silog":
        return losses.silog_loss(prediction, depth, valid, silog_lambda)
    valid = valid & torch.isfinite(depth) & (depth > 0)
    if not valid.any():
        return prediction.sum() * 0.0
    return (prediction[valid] - depth[valid]).abs().mean()


def compute_losses(trainer: Trainer, batch: dict) -> Losses:
    """The depth loss at the ground truth's resolution, plus the optional feature-matching term."""
    settings, loss_cfg = trainer.config.section(SECTION), trainer.config.loss
    image, voxel, depth, valid = dense_depth.on_device(trainer, batch, "image", "voxel", "depth", "valid_mask")
    with trainer.autocast():
        prediction, restored = forward(trainer.model, trainer.inputs, {"image": image, "events": voxel})
    prediction = dense_depth.at_size(prediction.float(), depth.shape[-2:])
    named = {settings.loss: depth_loss(settings.loss, prediction, depth, valid, loss_cfg.silog_lambda)}
    total = (loss_cfg.silog if settings.loss == "silog" else 1.0) * named[settings.loss]
    if settings.feature_match > 0:
        student = trainer.student
        (clean,) = dense_depth.on_device(trainer, batch, "image_clean")
        named["feature_match"] = feature_match(restored, student.base_features(clean, voxel),
                                               student.config.restore_levels)
        total = total + settings.feature_match * named["feature_match"]
    return total, named, prediction


def _from_foundation(load: Loader, student: nn.Module, init: InitSection) -> None:
    """The frozen base from ``init.foundation``; the plug-in's parts keep their identity start."""
    load(student.base, init.foundation)


RESTORE_TASK = Task("iid_rdepth_restore", student_options, datasets, compute_losses, dense_depth.metric_sums,
                    dense_depth.empty_sums, dense_depth.finalize, dense_depth.panel)

RESTORE_STAGE = register_stage(Stage(
    STAGE, KIND, "metric", False, LOSSES + ("feature_match",), lambda name: not name.startswith("base."),
    lambda name: False, "train IID-RDepth's restorer, invertible fine stages and AV-LFE around a frozen metric "
    "DA-V2 / FUSE model on degraded samples",
    (InitFile("foundation", {KIND: BASE_KINDS},
              {KIND: "a metric model of kind iid_rdepth.base: stage adapt's output (model.kind depth_anything_v2 for "
                     "the image-only base, fuse for FUSE)"}, head="metric"),),
    initialize=_from_foundation, select_by="abs_rel", task=RESTORE_TASK, depth_metrics=True, panel_depth=True))
