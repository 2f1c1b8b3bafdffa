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
class InitFile:
    """A checkpoint a stage reads from ``init.<key>``: which kinds of file hold what it needs.

    ``kinds`` maps the student's model kind to the file kinds that fit (``fuse.engine.weights``
    classifies files by their tensors); ``made_by`` says where the right file comes from.
    ``head`` is the head ending the file must have where it records one.
    """

    key: str
    kinds: dict[str, tuple[str, ...]]
    made_by: dict[str, str]
    required: bool = True
    head: str | None = None


_DAV2 = InitFile("depth_anything", {kind: ("depth_anything_v2",) for kind in ("fuse", "event_student",
                                                                                 "depth_anything_v2")},
                 {kind: "a Depth Anything V2 release (depth_anything_v2_<encoder>.pth) or the stand-in teacher "
                  "(python -m fuse teacher)" for kind in ("fuse", "event_student", "depth_anything_v2")},
                 head="relative")


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
    init_files: tuple[InitFile, ...] = ()
    kinds: tuple[str, ...] = ()  # student kinds ``model.kind`` may choose (default: just ``student``)

    def student_kinds(self) -> tuple[str, ...]:
        return self.kinds or (self.student,)


STAGES: dict[str, Stage] = {
    "align": Stage("align", "event_student", "relative", True, ("feature_cos", "l1"), _align_trainable, _is_lora,
                   "stage 1: align an event encoder to the DA-V2 image teacher (LoRA)", (_DAV2,)),
    "fuse": Stage("fuse", "fuse", "relative", True, ("l1", "feature_cos"), lambda n: n.startswith("prompt_fuse."),
                  _not_encoder, "stage 2: train FreDFuse on degraded inputs against the clean-image teacher",
                  (_DAV2, InitFile("event_encoder", {"fuse": ("event_student",)},
                                   {"fuse": "stage 1 (align_feature.sh: runs/align_<encoder>/model.pth)"}))),
    "adapt": Stage("adapt", "fuse", "metric", False, ("silog",), _is_head, _not_encoder,
                   "stage 3: train the metric depth head on MVSEC or DENSE",
                   (InitFile("foundation",
                             {"fuse": ("fuse",), "depth_anything_v2": ("depth_anything_v2",),
                              "event_student": ("event_student",)},
                             {"fuse": "stage 2 (fuse_feature.sh: runs/fuse_<encoder>/model.pth)",
                              "depth_anything_v2": "a Depth Anything V2 release or the stand-in teacher (image-only "
                                                   "baseline)",
                              "event_student": "stage 1 (align_feature.sh: runs/align_<encoder>/model.pth; "
                                               "event-only baseline)"}),),
                   kinds=("fuse", "depth_anything_v2", "event_student")),
    # Not a FUSE stage: a stand-in relative-depth teacher for machines without the DA-V2 weights
    # (the embedded demo). Trains the whole DA-V2 model on ground-truth inverse depth.
    "teacher": Stage("teacher", "depth_anything_v2", "relative", False, ("disparity_l1",), _all_but_mask_token,
                     _is_head, "stand-in teacher: supervised relative depth when no DA-V2 checkpoint is at hand",
                     (InitFile("depth_anything", _DAV2.kinds, _DAV2.made_by, required=False, head="relative"),)),
}
