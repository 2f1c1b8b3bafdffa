"""FUSE (arXiv 2503.19739): DA-V2 teacher, LoRA event student, FreDFuse fusion, three stages.

Importing this package registers the model kinds ``depth_anything_v2``, ``event_student`` and
``fuse``, the stages ``align``, ``fuse``, ``adapt`` and ``teacher``, and the checkpoint family
that reads DA-V2 releases and upstream FUSE files, and the published rows of the FUSE paper.
"""
from fuse.layers.lora import LoRALinear, add_lora, merge_lora, unmerge_lora
from fuse.layers.sizes import ENCODER_SIZES, HEAD_SIZES, encoder_size, head_size
from fuse.methods.fuse import published, stages, weights  # importing them registers rows, stages, layouts
from fuse.methods.fuse.fredfuse import FreDFuse
from fuse.methods.fuse.models import (
    FUSE,
    DepthAnythingV2,
    EventStudent,
    ModelConfig,
    build_from_config,
    build_model,
    event_patch_weight_from_rgb,
)

__all__ = [
    "FUSE", "DepthAnythingV2", "EventStudent", "ModelConfig", "build_from_config", "build_model",
    "event_patch_weight_from_rgb", "FreDFuse", "LoRALinear", "add_lora", "merge_lora", "unmerge_lora",
    "ENCODER_SIZES", "HEAD_SIZES", "encoder_size", "head_size", "published", "stages", "weights",
]
