"""Pure ``nn.Module``s of FUSE: no file or dataset access lives here."""
from fuse.models.depth_models import (
    FUSE,
    DepthAnythingV2,
    EventStudent,
    ModelConfig,
    build_from_config,
    build_model,
    event_patch_weight_from_rgb,
)
from fuse.models.fredfuse import FreDFuse
from fuse.models.lora import LoRALinear, add_lora, merge_lora, unmerge_lora
from fuse.models.sizes import ENCODER_SIZES, HEAD_SIZES, encoder_size, head_size

__all__ = [
    "FUSE", "DepthAnythingV2", "EventStudent", "ModelConfig", "build_from_config", "build_model",
    "event_patch_weight_from_rgb", "FreDFuse", "LoRALinear", "add_lora", "merge_lora", "unmerge_lora",
    "ENCODER_SIZES", "HEAD_SIZES", "encoder_size", "head_size",
]
