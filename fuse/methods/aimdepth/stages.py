"""AIMDepth's training stage ``aimdepth`` (``python -m fuse aimdepth``), its task and config section.

The shared trainer runs it (AdamW from ``optim.*``, polynomial decay, checkpoints, exact resume,
DDP, AMP) on the prepared image / event / depth samples of ``fuse.data`` with 5-bin voxels
(``model.event_bins: 5``; prepare with ``--numbins 5``). The loss is the paper's (spec §6): the
residuals ``R = D* - D̂`` in metres over valid pixels, ``mean|R| + λ mean R²`` (λ =
``aimdepth.squared_weight``). Validation scores the E2Depth per-frame metrics, like FUSE's stage
3, and ``abs_rel`` picks ``best.pth``.

Section ``aimdepth`` holds the model's options (``fuse.methods.aimdepth.model.AIMDepthConfig``;
``docs/aimdepth.md`` says which the paper states and which are assumed).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from fuse.data.constants import dataset_info
from fuse.methods.aimdepth.model import (
    HEAD,
    HEAD_ACTIVATIONS,
    KIND,
    SELECTIONS,
    SIZES,
    STEMS,
)
from fuse.methods.aimdepth.modilocal import DELTA_SOURCES, EXCHANGES
from fuse.methods.aimdepth.spectral import IMAGE_AMPLITUDES, IPE_SOURCES, MASK_CONVENTIONS, PHASE_SCALES
from fuse.train import dense_depth
from fuse.train.config import Key, register_section
from fuse.train.stages import Stage, register_stage
from fuse.train.tasks import Losses, Task, forward

if TYPE_CHECKING:
    from fuse.train.trainer import Trainer

SECTION = "aimdepth"
register_section(SECTION, {
    "size": Key("paper", "model size (fuse.methods.aimdepth.model.SIZES): paper (VMamba-T encoder) or tiny",
                choices=tuple(SIZES)),
    "selection": Key("A", "asymmetric selection (spec §3): A = (I1, fuse(I2,E2), fuse(I3,E3), E4), B = shifted "
                     "pairs (I1,E2), (I2,E3), (I3,E4)", choices=SELECTIONS),
    "scpg": Key(True, "ablation switch: spectral prior guidance (EAT + IPE)"),
    "ame": Key(True, "ablation switch: asymmetric selection (off: every level fused)"),
    "modilocal": Key(True, "ablation switch: ISS + LSS + SE fusion (off: the two maps summed)"),
    "exchange": Key("BD", "what ISS takes from the other modality: BD (paper), C (Sigma), none", choices=EXCHANGES),
    "delta_from": Key("own", "whose step sizes Δ each ISS branch uses: own (assumed) or other", choices=DELTA_SOURCES),
    "dims": Key(None, "stage widths, four doubling numbers (null: the size's; paper 96 192 384 768)", low=2,
                example=[0, 0, 0, 0]),
    "depths": Key(None, "VSS blocks per encoder stage (null: the size's; paper 2 2 9 2)", low=1, example=[0, 0, 0, 0]),
    "decoder_depths": Key(None, "CVSS blocks per decoder level, finest first (null: the size's; paper 4 4 4)",
                          low=0, example=[0, 0, 0]),
    "lss_window": Key(None, "LSS tile side in tokens (null: the size's; paper 8)", low=1, example=0),
    "se_reduction": Key(None, "SE hidden width = channels / this (null: the size's; paper 16)", low=1, example=0),
    "stem": Key("shared", "patch embedding: shared (needs 5 event bins) or separate per modality", choices=STEMS),
    "head_activation": Key("sigmoid", "how the output is bounded to [0, 1]", choices=HEAD_ACTIVATIONS),
    "drop_path": Key(0.1, "stochastic depth rate of the encoder's last block", low=0.0, high=1.0, open_high=True),
    "max_depth": Key(None, "D_max of the depth mapping in metres (null: the dataset's, mvsec 80, dense 1000)",
                     low=0.0, open_low=True, example=1.0),
    "alpha": Key(None, "alpha of the depth mapping (null: the dataset's, mvsec 3.70378, dense 5.7)", low=0.0,
                 open_low=True, example=1.0),
    "squared_weight": Key(1.0, "λ of the squared residual in the loss mean|R| + λ mean R² (spec §6: assumed 1)",
                          low=0.0),
    "clip_targets": Key(True, "clip ground truth to the representable range [D_max exp(-alpha), D_max] in the loss"),
    "beta": Key(0.01, "SCPG low-frequency mask size (spec §2.1)", low=0.0, high=0.5),
    "mask": Key("sheet", "SCPG mask convention: sheet (|h| <= beta H, |w| <= beta W) or fda", choices=MASK_CONVENTIONS),
    "mix": Key(1.0, "EAT mixing weight inside the mask (1: replace)", low=0.0, high=1.0),
    "image_amplitude": Key("gray", "image amplitude EAT transfers: gray (of the channel mean) or mean (of the "
                           "channel amplitudes)", choices=IMAGE_AMPLITUDES),
    "ipe_source": Key("raw", "events IPE reads phases from: raw or eat", choices=IPE_SOURCES),
    "phase_scale": Key("radians", "IPE phase maps in radians or divided by pi (unit)", choices=PHASE_SCALES),
}, "aimdepth.*: AIMDepth's model options and loss")


def depth_mapping(trainer: Trainer) -> tuple[float, float]:
    """(D_max, alpha): the section's, else the dataset's constants (the field's convention)."""
    settings, info = trainer.config.section(SECTION), dataset_info(trainer.config.data.dataset)
    return (settings.max_depth or info.max_depth, settings.alpha or info.reg_factor)


def student_options(trainer: Trainer) -> dict:
    """Builder options from ``aimdepth.*`` and ``model.event_bins``; inputs are padded to multiples of 32."""
    settings = trainer.config.section(SECTION)
    max_depth, alpha = depth_mapping(trainer)
    spectral = {name: getattr(settings, name) for name in ("beta", "mask", "mix", "image_amplitude", "ipe_source",
                                                            "phase_scale")}
    sized = {name: getattr(settings, name) for name in ("dims", "depths", "decoder_depths", "lss_window",
                                                         "se_reduction") if getattr(settings, name) is not None}
    return dict(size=settings.size, selection=settings.selection, scpg=settings.scpg, ame=settings.ame,
                modilocal=settings.modilocal, exchange=settings.exchange, delta_from=settings.delta_from,
                stem=settings.stem, head_activation=settings.head_activation, drop_path=settings.drop_path,
                event_bins=trainer.config.model.event_bins, max_depth=max_depth, alpha=alpha, spectral=spectral,
                input_fit="pad", **sized)


def absolute_and_squared(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                         squared_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean|R|`` and ``mean R²`` of ``R = target - prediction`` over the valid, finite, positive targets."""
    valid = valid & torch.isfinite(target) & (target > 0)
    if not valid.any():
        zero = prediction.sum() * 0.0
        return zero, zero
    residual = target[valid] - prediction[valid]
    return residual.abs().mean(), squared_weight * residual.square().mean()


def compute_losses(trainer: Trainer, batch: dict) -> Losses:
    """The paper's loss on metric depth at the ground truth's resolution."""
    settings = trainer.config.section(SECTION)
    image, voxel, depth, valid = dense_depth.on_device(trainer, batch, "image", "voxel", "depth", "valid_mask")
    with trainer.autocast():
        prediction, _ = forward(trainer.model, trainer.inputs, {"image": image, "events": voxel})
    prediction = dense_depth.at_size(prediction.float(), depth.shape[-2:])
    target = depth
    if settings.clip_targets:
        max_depth, alpha = depth_mapping(trainer)
        target = depth.clamp(max_depth * math.exp(-alpha), max_depth)
    absolute, squared = absolute_and_squared(prediction, target, valid, settings.squared_weight)
    return absolute + squared, {"abs": absolute, "squared": squared}, prediction


AIMDEPTH_TASK = Task("aimdepth_dense_depth", student_options, dense_depth.datasets, compute_losses,
                     dense_depth.metric_sums, dense_depth.empty_sums, dense_depth.finalize, dense_depth.panel)

AIMDEPTH_STAGE = register_stage(Stage(
    KIND, KIND, HEAD, False, ("abs", "squared"), lambda name: True, lambda name: False,
    "train AIMDepth on prepared image / 5-bin event / depth samples (|R| + R² in metres, spec §6)",
    select_by="abs_rel", task=AIMDEPTH_TASK, depth_metrics=True, panel_depth=True))
