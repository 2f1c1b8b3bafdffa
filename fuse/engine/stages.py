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


@dataclass(frozen=True)
class Stage:
    name: str
    student: str  # model kind
    student_head: str  # relative | metric
    uses_teacher: bool
    student_input: str  # "events" or "image+events"
    losses: tuple[str, ...]
    trainable: Callable[[str], bool]
    boosted_lr: Callable[[str], bool]
    frozen_event_encoder: bool  # may run with LoRA merged


STAGES: dict[str, Stage] = {
    "align": Stage("align", "event_student", "relative", True, "events", ("feature_cos", "l1"),
                   _align_trainable, _is_lora, False),
    "fuse": Stage("fuse", "fuse", "relative", True, "image+events", ("l1", "feature_cos"),
                  lambda n: n.startswith("prompt_fuse."), _not_encoder, True),
    "adapt": Stage("adapt", "fuse", "metric", False, "image+events", ("silog",),
                   lambda n: n.startswith("depth_head."), _not_encoder, True),
}
