"""FUSE's three training stages (spec §4) and the stand-in teacher, registered as data.

The trainer (``fuse.train.trainer``) runs them; each entry says which student trains, which
parameters move, which checkpoints start it and what selects ``best.pth``.
"""
from __future__ import annotations

import torch
from torch import nn

from fuse.train.config import InitSection
from fuse.train.stages import InitFile, Loader, Stage, register_stage


def _align_trainable(name: str) -> bool:
    """LoRA adapters plus the encoder's non-block parameters (patch_embed, cls, pos_embed, norm)."""
    if ".lora_" in name:
        return True
    return name.startswith("pretrained.") and not name.startswith("pretrained.blocks.") and name != "pretrained.mask_token"


def _is_lora(name: str) -> bool:
    return ".lora_" in name


def _not_encoder(name: str) -> bool:
    """Upstream's rule: parameters whose name contains "encoder" get the base lr, others 10x."""
    return "encoder" not in name


def _all_but_mask_token(name: str) -> bool:
    return not name.endswith("mask_token")


def _is_head(name: str) -> bool:
    return name.startswith("depth_head.")


_DAV2 = InitFile("depth_anything", {kind: ("depth_anything_v2",) for kind in ("fuse", "event_student",
                                                                                 "depth_anything_v2")},
                 {kind: "a Depth Anything V2 release (depth_anything_v2_<encoder>.pth) or the stand-in teacher "
                  "(python -m fuse teacher)" for kind in ("fuse", "event_student", "depth_anything_v2")},
                 head="relative")


def _from_depth_anything(load: Loader, student: nn.Module, init: InitSection) -> None:
    """Stage 1: DA-V2 everywhere (the event encoder is a clone of the image one)."""
    if init.depth_anything:
        load(student, init.depth_anything)


def _from_depth_anything_and_stage1(load: Loader, student: nn.Module, init: InitSection) -> None:
    """Stage 2: DA-V2, then the stage-1 event encoder."""
    _from_depth_anything(load, student, init)
    load(student, init.event_encoder, into="prompt_encoder")


def _from_foundation(load: Loader, student: nn.Module, init: InitSection) -> None:
    """Stage 3: everything but the head from the previous stage's output (spec §4)."""
    parts = [part for part, _ in student.named_children() if part != "depth_head" or init.head_from_foundation]
    load(student, init.foundation, into=parts)


def _teacher_start(load: Loader, student: nn.Module, init: InitSection) -> None:
    """DA-V2 if given; from scratch, a ReLU ending whose input starts negative everywhere never
    gets a gradient, so the last bias starts at a typical disparity and the output begins alive."""
    if init.depth_anything:
        load(student, init.depth_anything)
    else:
        torch.nn.init.constant_(student.depth_head.scratch.output_conv2[2].bias, 0.2)


for _stage in (
    Stage("align", "event_student", "relative", True, ("feature_cos", "l1"), _align_trainable, _is_lora,
          "stage 1: align an event encoder to the DA-V2 image teacher (LoRA)", (_DAV2,),
          initialize=_from_depth_anything),
    Stage("fuse", "fuse", "relative", True, ("l1", "feature_cos"), lambda n: n.startswith("prompt_fuse."),
          _not_encoder, "stage 2: train FreDFuse on degraded inputs against the clean-image teacher",
          (_DAV2, InitFile("event_encoder", {"fuse": ("event_student",)},
                           {"fuse": "stage 1 (align_feature.sh: runs/align_<encoder>/model.pth)"})),
          initialize=_from_depth_anything_and_stage1),
    Stage("adapt", "fuse", "metric", False, ("silog",), _is_head, _not_encoder,
          "stage 3: train the metric depth head on MVSEC or DENSE",
          (InitFile("foundation",
                    {"fuse": ("fuse",), "depth_anything_v2": ("depth_anything_v2",),
                     "event_student": ("event_student",)},
                    {"fuse": "stage 2 (fuse_feature.sh: runs/fuse_<encoder>/model.pth)",
                     "depth_anything_v2": "a Depth Anything V2 release or the stand-in teacher (image-only baseline)",
                     "event_student": "stage 1 (align_feature.sh: runs/align_<encoder>/model.pth; event-only "
                                      "baseline)"}),),
          kinds=("fuse", "depth_anything_v2", "event_student"), initialize=_from_foundation,
          select_by="abs_rel", depth_metrics=True, panel_depth=True),
    # Not a FUSE stage: a stand-in relative-depth teacher for machines without the DA-V2 weights
    # (the embedded demo). Trains the whole DA-V2 model on ground-truth inverse depth.
    Stage("teacher", "depth_anything_v2", "relative", False, ("disparity_l1",), _all_but_mask_token,
          _is_head, "stand-in teacher: supervised relative depth when no DA-V2 checkpoint is at hand",
          (InitFile("depth_anything", _DAV2.kinds, _DAV2.made_by, required=False, head="relative"),),
          initialize=_teacher_start),
):
    register_stage(_stage)
