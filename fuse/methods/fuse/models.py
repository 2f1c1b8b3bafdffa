"""The three networks of FUSE: the DA-V2 teacher, the stage-1 event student and FUSE itself.

Attribute names (``pretrained``/``depth_head`` for the DA-V2 layout; ``image_encoder``,
``prompt_encoder``, ``prompt_fuse``, ``depth_head`` for FUSE) are the checkpoint prefixes of
the published files (spec §9).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial

import torch
from torch import nn

from fuse.data.constants import DEFAULT_MAX_DEPTH
from fuse.layers.dpt import HEAD_KINDS, DPTHead
from fuse.methods.fuse.fredfuse import FreDFuse
from fuse.layers.lora import DEFAULT_TARGETS, add_lora
from fuse.layers.parallel import run_side_by_side
from fuse.layers.sizes import PATCH_SIZE, check_input_size, encoder_size, head_size
from fuse.layers.vit import DinoVisionTransformer
from fuse.registry import ModelKind, model_kind, register_model

FAITHFUL_EVENT_BINS = 3
MIN_FUSION_GRID = 4  # the 3-level pyramid of FreDFuse needs a token grid of at least 4x4


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in this project's checkpoints."""

    kind: str
    encoder: str = "vits"
    head_size: str | None = None  # None: the head DA-V2 pairs with ``encoder``
    head: str = "relative"  # "relative" (ReLU, inverse depth) or "metric" (Sigmoid x max_depth)
    max_depth: float = 1.0
    event_bins: int = FAITHFUL_EVENT_BINS
    lora_rank: int = 8
    lora_alpha: float = 1.0
    lora_targets: tuple[str, ...] = field(default=DEFAULT_TARGETS)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_CLASSES:
            raise ValueError(f"ModelConfig describes {tuple(MODEL_CLASSES)}, not {self.kind!r}")
        if self.head not in HEAD_KINDS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {HEAD_KINDS}")
        if self.event_bins < 1:
            raise ValueError(f"event_bins must be >= 1, got {self.event_bins}")
        object.__setattr__(self, "encoder", encoder_size(self.encoder).name)
        object.__setattr__(self, "head_size", head_size(self.head_size or self.encoder).name)
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return cls(**data)

    def with_changes(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


def event_patch_weight_from_rgb(rgb_weight: torch.Tensor, bins: int) -> torch.Tensor:
    """Initialize an event patch embedding with ``bins`` input channels from the RGB one.

    Every event channel gets the mean of the three RGB kernels times ``3 / bins``: a voxel grid
    whose bins all hold the same value ``v`` embeds exactly as a 3-bin grid of ``v`` does with
    the cloned RGB embedding. For ``bins == 3`` the RGB weight is returned unchanged.
    """
    if rgb_weight.shape[1] == bins:
        return rgb_weight.clone()
    mean = rgb_weight.mean(dim=1, keepdim=True) * (rgb_weight.shape[1] / bins)
    return mean.expand(-1, bins, -1, -1).clone()


def _event_encoder(config: ModelConfig) -> DinoVisionTransformer:
    encoder = DinoVisionTransformer(encoder_size(config.encoder), in_chans=config.event_bins)
    add_lora(encoder.blocks, config.lora_rank, config.lora_alpha, config.lora_targets)
    return encoder


def _head(config: ModelConfig, embed_dim: int) -> DPTHead:
    return DPTHead(embed_dim, head_size(config.head_size), config.head, config.max_depth)


class DepthAnythingV2(nn.Module):
    """DA-V2: DINOv2 encoder + DPT head. With the relative head it is the image teacher."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.pretrained = self._make_encoder(config)
        self.depth_head = _head(config, self.pretrained.embed_dim)

    @staticmethod
    def _make_encoder(config: ModelConfig) -> DinoVisionTransformer:
        return DinoVisionTransformer(encoder_size(config.encoder))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(B, C, H, W) -> depth (B, H, W); with ``return_features`` also the tapped token maps."""
        features = self.pretrained.forward_features(x)
        depth = self.depth_head(features, x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE)
        return (depth, features) if return_features else depth


class EventStudent(DepthAnythingV2):
    """Stage-1 student: DA-V2 layout fed with an event voxel grid, blocks adapted with LoRA."""

    @staticmethod
    def _make_encoder(config: ModelConfig) -> DinoVisionTransformer:
        return _event_encoder(config)


class FUSE(nn.Module):
    """Image and event encoders in lockstep, FreDFuse after each tapped block, one DPT head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        size = encoder_size(config.encoder)
        self.image_encoder = DinoVisionTransformer(size)
        self.prompt_encoder = _event_encoder(config)
        self.prompt_fuse = nn.ModuleList(
            FreDFuse(size.embed_dim, size.num_heads) if i in size.taps else nn.Identity()
            for i in range(size.depth)
        )
        self.depth_head = _head(config, size.embed_dim)

    def forward_features(self, image: torch.Tensor, events: torch.Tensor) -> list[torch.Tensor]:
        """Fused, normalized patch tokens after each tapped block."""
        if image.shape[-2:] != events.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape[-2:])} and events {tuple(events.shape[-2:])} differ in size")
        if events.shape[1] != self.config.event_bins:
            raise ValueError(f"model expects {self.config.event_bins} event bins, got {events.shape[1]}")
        check_input_size(*image.shape[-2:])
        grid_h, grid_w = image.shape[-2] // PATCH_SIZE, image.shape[-1] // PATCH_SIZE
        if min(grid_h, grid_w) < MIN_FUSION_GRID:
            raise ValueError(f"FUSE needs inputs of at least {MIN_FUSION_GRID * PATCH_SIZE} px per side "
                             f"(FreDFuse halves the {grid_h}x{grid_w} token grid twice), got {tuple(image.shape[-2:])}")
        image_taps, event_taps = self.encode(image, events)
        return self.fuse_taps(image_taps, event_taps, grid_h, grid_w)

    def encode(self, image: torch.Tensor, events: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Tapped tokens (cls included) of the image and the event encoder."""
        # The encoders never exchange data (fusion only reads their tapped tokens), so on CPU they
        # run side by side, each on its share of the cores (fuse.layers.parallel).
        image_taps, event_taps = run_side_by_side(
            [lambda: self.image_encoder.tapped_tokens(image), lambda: self.prompt_encoder.tapped_tokens(events)],
            image.device)
        return image_taps, event_taps

    def fuse_taps(self, image_taps: list[torch.Tensor], event_taps: list[torch.Tensor], grid_h: int,
                  grid_w: int) -> list[torch.Tensor]:
        """FreDFuse on each tapped pair, then the image encoder's norm: the head's input."""
        taps = self.image_encoder.size.taps

        def fuse_tap(k: int) -> torch.Tensor:
            image_tokens, event_tokens = image_taps[k], event_taps[k]
            fused = self.prompt_fuse[taps[k]](image_tokens[:, 1:], event_tokens[:, 1:], grid_h, grid_w)
            # The image cls token rides along through the norm, exactly as upstream; the head drops it.
            return self.image_encoder.norm(torch.cat((image_tokens[:, :1], fused), dim=1))[:, 1:]

        tasks = [partial(fuse_tap, k) for k in range(len(taps))]
        if self.training:
            # Cross-attention dropout draws from the global generator: keep the draw order fixed.
            return [task() for task in tasks]
        return run_side_by_side(tasks, image_taps[0].device)

    def forward(self, image: torch.Tensor, events: torch.Tensor | None = None, return_features: bool = False):
        """(B,3,H,W) image and (B,bins,H,W) voxel grid -> depth (B,H,W).

        ``events=None`` accepts the upstream single-tensor input: 3 image channels then the bins.
        """
        if events is None:
            image, events = image[:, :3], image[:, 3:]
        features = self.forward_features(image, events)
        depth = self.depth_head(features, image.shape[-2] // PATCH_SIZE, image.shape[-1] // PATCH_SIZE)
        return (depth, features) if return_features else depth


MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "depth_anything_v2": DepthAnythingV2,
    "event_student": EventStudent,
    "fuse": FUSE,
}

def _builder(name: str, default_head: str):
    def build(encoder: str = "vits", head: str | None = None, head_size: str | None = None,
              max_depth: float | None = None, event_bins: int = FAITHFUL_EVENT_BINS, **options) -> nn.Module:
        """A randomly initialized model; ``head`` defaults to the kind's, ``max_depth`` to 80 m (MVSEC)
        for a metric head."""
        head = head or default_head
        if max_depth is None:
            max_depth = DEFAULT_MAX_DEPTH if head == "metric" else 1.0
        return build_from_config(ModelConfig(kind=name, encoder=encoder, head_size=head_size, head=head,
                                             max_depth=max_depth, event_bins=event_bins, **options))

    return build


def build_from_config(config: ModelConfig) -> nn.Module:
    return MODEL_CLASSES[config.kind](config)


_HEAD_OUTPUTS = {"metric": "metric_depth", "relative": "relative_inverse_depth"}
_DAV2_LAYOUTS = ("depth_anything_v2", "event_student")
for _kind in (
    ModelKind("depth_anything_v2", _builder("depth_anything_v2", "relative"), ("image",), _HEAD_OUTPUTS,
              _DAV2_LAYOUTS, "Depth Anything V2: DINOv2 encoder + DPT head (the image teacher)", "relative"),
    ModelKind("event_student", _builder("event_student", "relative"), ("events",), _HEAD_OUTPUTS, _DAV2_LAYOUTS,
              "stage-1 event encoder: DA-V2 cloned for voxel grids, adapted with LoRA", "relative"),
    ModelKind("fuse", _builder("fuse", "metric"), ("image", "events"), _HEAD_OUTPUTS, ("fuse", *_DAV2_LAYOUTS),
              "FUSE: image and event encoders fused by FreDFuse, DPT head", "metric"),
):
    register_model(_kind)


def build_model(name: str, **options) -> nn.Module:
    """A randomly initialized model of any registered kind; load weights with ``fuse.load_weights``."""
    return model_kind(name).build(**options)
