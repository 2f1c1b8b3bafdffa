"""The three FUSE training stages as data (spec §4): what is built, what trains, what is compared.

The training loop in ``fuse.engine.trainer`` is the same for all of them; a stage only says
which student and teacher to build, which parameters train (and which get the boosted lr),
which inputs the student sees and which losses apply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


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


@dataclass(frozen=True)
class Stage:
    name: str
    student: str  # default model kind; ``model.kind`` may swap it (e.g. image-only baselines in adapt)
    student_head: str  # relative | metric
    uses_teacher: bool
    losses: tuple[str, ...]
    trainable: Callable[[str], bool]
    boosted_lr: Callable[[str], bool]
    description: str


STAGES: dict[str, Stage] = {
    "align": Stage("align", "event_student", "relative", True, ("feature_cos", "l1"), _align_trainable, _is_lora,
                   "stage 1: align an event encoder to the DA-V2 image teacher (LoRA)"),
    "fuse": Stage("fuse", "fuse", "relative", True, ("l1", "feature_cos"), lambda n: n.startswith("prompt_fuse."),
                  _not_encoder, "stage 2: train FreDFuse on degraded inputs against the clean-image teacher"),
    "adapt": Stage("adapt", "fuse", "metric", False, ("silog",), _is_head, _not_encoder,
                   "stage 3: train the metric depth head on MVSEC or DENSE"),
    # Not a FUSE stage: a stand-in relative-depth teacher for machines without the DA-V2 weights
    # (the embedded demo). Trains the whole DA-V2 model on ground-truth inverse depth.
    "teacher": Stage("teacher", "depth_anything_v2", "relative", False, ("disparity_l1",), _all_but_mask_token,
                     _is_head, "stand-in teacher: supervised relative depth when no DA-V2 checkpoint is at hand"),
}

MODEL_INPUTS = {"depth_anything_v2": "image", "event_student": "events", "fuse": "image+events"}
