"""IID-RDepth as a plug-in: a frozen DA-V2 or FUSE model whose encoder features a diffusion
restorer improves, whose finest DPT stages gain invertible couplings and whose low-level skips an
auxiliary view can enhance (spec: ``shared/spec/iid-rdepth.md``; every assumption:
``docs/iid_rdepth.md``).

``fuse.build_model("iid_rdepth", base=model, diffusion_steps=T, invertible_stages=True,
aux_view=None)`` freezes ``model`` and wraps it; the wrapper is called like the base
(``model(image)`` for DA-V2, ``model(image, events)`` for FUSE) plus an optional ``aux`` view:

1. the base's encoder (DA-V2) or fused encoders (FUSE) give four tapped token maps (frozen);
2. ``FeatureRestorer`` restores the ``restore_levels`` maps, conditioned on the deepest two
   (``diffusion.py``); restored maps keep their shapes;
3. the frozen DPT head decodes them: its reassembly gives skips l1..l4, AV-LFE (``av_lfe.py``)
   enhances the ``aux_levels`` skips from the auxiliary view, the coarse refinenets run frozen,
   and each of the ``fine_stages`` finest refinenets is followed by an invertible coupling stack
   (``invertible.py``) before its upsampling.

With T = 0, no invertible stages and no auxiliary view, the output is the base's, bit for bit
(the base's own head runs); every trainable part also starts as an exact identity, so training
starts from the frozen baseline.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import UsageError
from fuse.layers.dpt import DPTHead
from fuse.layers.sizes import PATCH_SIZE
from fuse.methods.iid_rdepth.av_lfe import ALIGNMENTS, AVLFE, EventFeatures
from fuse.methods.iid_rdepth.diffusion import FeatureRestorer, RestorerSettings
from fuse.methods.iid_rdepth.invertible import CouplingSettings, InvertibleStack
from fuse.registry import ModelKind, model_kind, register_model

KIND = "iid_rdepth"
BASE_KINDS = ("depth_anything_v2", "fuse")
AUX_VIEWS = (None, "right", "events")
TAPS = 4  # tapped encoder levels the DPT head reads
_RESTORER_FIELDS = {"diffusion_steps": "steps", "train_diffusion_steps": "train_steps", "schedule": "schedule",
                    "schedule_length": "schedule_length", "start_level": "start_level", "eta": "eta",
                    "parametrization": "parametrization", "restorer_width": "width", "grad_steps": "grad_steps",
                    "eval_seed": "eval_seed"}
_COUPLING_FIELDS = {"coupling": "coupling", "coupling_blocks": "blocks", "scale_bound": "scale_bound",
                    "sub_lipschitz": "sub_lipschitz", "lipschitz_method": "lipschitz_method",
                    "coupling_hidden": "hidden"}


@dataclass(frozen=True)
class IIDRDepthConfig:
    """The builder's options (recorded in checkpoints): the base model's own options and the plug-in's.

    Defaults and their sources ([fig], [abs], [hyp]) are tabled in ``docs/iid_rdepth.md``.
    """

    base: dict
    # feature restorer (diffusion.RestorerSettings)
    diffusion_steps: int = 4
    train_diffusion_steps: int | None = None
    schedule: str = "linear"
    schedule_length: int = 1000
    start_level: float = 0.5
    eta: float = 0.0
    parametrization: str = "x0_residual"
    restorer_width: int = 64
    grad_steps: str = "all"
    eval_seed: int | None = 0
    restore_levels: tuple[int, ...] = (2, 3)
    condition_levels: tuple[int, ...] = (2, 3)
    # invertible fine stages (invertible.CouplingSettings)
    invertible_stages: bool = True
    fine_stages: int = 2
    fine_residual: bool = True
    coupling: str = "affine"
    coupling_blocks: int = 1
    scale_bound: float = 0.5
    sub_lipschitz: float = 0.9
    lipschitz_method: str = "spectral"
    coupling_hidden: int | None = None
    # AV-LFE
    aux_view: str | None = None
    aux_levels: tuple[int, ...] = (1, 2)
    align: str = "offsets"
    align_patch: int = 1
    aux_condition: bool = True
    kind: ClassVar[str] = KIND

    def __post_init__(self) -> None:
        for name in ("restore_levels", "condition_levels", "aux_levels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "base", dict(self.base))
        if self.base.get("kind") not in BASE_KINDS:
            raise UsageError(f"IID-RDepth wraps a model of kind {' or '.join(BASE_KINDS)}, got {self.base.get('kind')!r}")
        if self.aux_view not in AUX_VIEWS:
            raise UsageError(f"aux_view must be one of {AUX_VIEWS}, got {self.aux_view!r}")
        if self.align not in ALIGNMENTS:
            raise UsageError(f"align must be one of {ALIGNMENTS}, got {self.align!r}")
        for name, allowed in (("restore_levels", range(TAPS)), ("condition_levels", range(TAPS)),
                              ("aux_levels", range(1, TAPS + 1))):
            levels = getattr(self, name)
            if not levels or len(set(levels)) != len(levels) or any(level not in allowed for level in levels):
                raise UsageError(f"{name} must be distinct numbers from {list(allowed)}, got {list(levels)}")
        if not 1 <= self.fine_stages <= TAPS:
            raise UsageError(f"fine_stages counts the finest DPT refinenets to make invertible (1-{TAPS}), got "
                             f"{self.fine_stages}")
        self.restorer_settings()  # each part checks its own options
        self.coupling_settings()

    def restorer_settings(self) -> RestorerSettings:
        return RestorerSettings(**{part: getattr(self, name) for name, part in _RESTORER_FIELDS.items()})

    def coupling_settings(self) -> CouplingSettings:
        return CouplingSettings(**{part: getattr(self, name) for name, part in _COUPLING_FIELDS.items()})

    @property
    def head(self) -> str:
        return self.base.get("head", model_kind(self.base["kind"]).default_head)

    @property
    def max_depth(self) -> float:
        return float(self.base.get("max_depth", 1.0))

    @property
    def event_bins(self) -> int:
        return int(self.base.get("event_bins", 3))

    @property
    def encoder(self) -> str:
        return str(self.base.get("encoder", "-"))

    @property
    def restores(self) -> bool:
        """Whether a restorer exists (a positive step count at inference or in training)."""
        return self.diffusion_steps > 0 or bool(self.train_diffusion_steps)

    def to_dict(self) -> dict:
        values = {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}
        return {"kind": KIND, **values}

    @classmethod
    def from_options(cls, base: dict, **options) -> "IIDRDepthConfig":
        """The config of a base's options and plug-in ``options``; unknown options are a ``UsageError``."""
        options.pop("kind", None)
        names = {f.name for f in fields(cls)} - {"base"}
        unknown = sorted(set(options) - names)
        if unknown:
            raise UsageError(f"IID-RDepth takes the options {sorted(names)}, not {unknown}")
        return cls(base=base, **options)


def _maps(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C) tokens -> (B, C, h, w)."""
    return tokens.reshape(tokens.shape[0], *grid, tokens.shape[-1]).permute(0, 3, 1, 2)


def _tokens(maps: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C) tokens."""
    return maps.permute(0, 2, 3, 1).reshape(maps.shape[0], -1, maps.shape[1])


def skip_sizes(grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Spatial sizes of the DPT skips l1..l4 for a token grid (x4, x2, x1 and a stride-2 conv)."""
    h, w = grid
    return [(4 * h, 4 * w), (2 * h, 2 * w), (h, w), ((h + 1) // 2, (w + 1) // 2)]


class IIDRDepth(nn.Module):
    """A frozen DA-V2 / FUSE model with IID-RDepth's restorer, invertible fine stages and AV-LFE.

    ``forward(image, events=None, aux=None, return_features=False)``: ``events`` are FUSE's voxel
    grid (a DA-V2 base uses them only as the auxiliary view ``aux_view="events"``); ``aux`` is the
    right camera's image (``aux_view="right"``) or a voxel grid (``"events"``; default: ``events``).
    Without an auxiliary input AV-LFE is the identity. ``return_features`` also returns the four
    (restored) token maps.
    """

    def __init__(self, base: nn.Module, config: IIDRDepthConfig) -> None:
        super().__init__()
        self.config = config
        self.base = base.requires_grad_(False).eval()
        head: DPTHead = base.depth_head
        embed_dim = self.image_encoder.embed_dim
        width = head.scratch.refinenet1.out_conv.in_channels
        aux_channels = width if config.aux_view is not None and config.aux_condition else 0
        self.restorer = None
        if config.restores:
            self.restorer = FeatureRestorer(embed_dim * len(config.restore_levels),
                                            embed_dim * len(config.condition_levels) + aux_channels,
                                            config.restorer_settings())
        self.fine = None
        if config.invertible_stages:
            self.fine = nn.ModuleList(InvertibleStack(width, config.coupling_settings())
                                      for _ in range(config.fine_stages))
        self.av_lfe = None
        self.event_features = None
        if config.aux_view is not None:
            self.av_lfe = nn.ModuleList(AVLFE(width, config.align, config.align_patch) for _ in config.aux_levels)
        if config.aux_view == "events":
            self.event_features = EventFeatures(config.event_bins, width, len(config.aux_levels))

    @property
    def image_encoder(self) -> nn.Module:
        """The base's image ViT (DA-V2's ``pretrained``, FUSE's ``image_encoder``)."""
        return self.base.pretrained if self.config.base["kind"] == "depth_anything_v2" else self.base.image_encoder

    def train(self, mode: bool = True) -> "IIDRDepth":
        """The base stays in eval mode (frozen: no dropout, e.g. FUSE's cross-attention)."""
        super().train(mode)
        self.base.eval()
        return self

    # ------------------------------------------------------------------ inputs and features
    def _inputs(self, image: torch.Tensor, events: torch.Tensor | None):
        if self.config.base["kind"] == "fuse" and events is None:
            return image[:, :3], image[:, 3:]  # FUSE's single-tensor input: 3 image channels then the bins
        if image.ndim != 4 or image.shape[1] != 3:
            raise UsageError(f"IID-RDepth takes RGB images (B, 3, H, W), got {tuple(image.shape)}")
        return image, events

    def base_features(self, image: torch.Tensor, events: torch.Tensor | None) -> list[torch.Tensor]:
        """The frozen base's four tapped token maps (what its DPT head reads)."""
        with torch.no_grad():
            if self.config.base["kind"] == "fuse":
                if events is None:
                    raise UsageError("a FUSE base needs the event voxel grid: model(image, events)")
                return self.base.forward_features(image, events)
            return self.base.pretrained.forward_features(image)

    def aux_maps(self, events: torch.Tensor | None, aux: torch.Tensor | None,
                 grid: tuple[int, int]) -> list[torch.Tensor] | None:
        """The auxiliary view's feature maps at the ``aux_levels`` skips, or None without one."""
        view = self.config.aux_view
        if view is None:
            if aux is not None:
                raise UsageError("this IID-RDepth model has no auxiliary view (aux_view=None); build it with "
                                 "aux_view='right' or 'events' to pass aux")
            return None
        levels = self.config.aux_levels
        if view == "events":
            voxel = aux if aux is not None else events
            if voxel is None:
                return None
            if voxel.ndim != 4 or voxel.shape[1] != self.config.event_bins:
                raise UsageError(f"the events auxiliary view takes voxel grids (B, {self.config.event_bins}, H, W), "
                                 f"got {tuple(voxel.shape)}")
            sizes = skip_sizes(grid)
            return self.event_features(voxel, [sizes[level - 1] for level in levels])
        if aux is None:
            return None
        if aux.ndim != 4 or aux.shape[1] != 3:
            raise UsageError(f"the right-camera auxiliary view takes RGB images (B, 3, H, W), got {tuple(aux.shape)}")
        with torch.no_grad():  # the figure's dashed arrows: the same frozen encoder (and reassembly)
            aux_grid = (aux.shape[-2] // PATCH_SIZE, aux.shape[-1] // PATCH_SIZE)
            skips = self.base.depth_head.skips(self.image_encoder.forward_features(aux), *aux_grid)
        return [skips[level - 1] for level in levels]

    # ------------------------------------------------------------------ the plug-in's parts
    def restore(self, features: list[torch.Tensor], grid: tuple[int, int],
                aux_maps: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The tapped token maps with the ``restore_levels`` restored (shapes unchanged)."""
        if self.restorer is None:
            return features
        config = self.config
        maps = [_maps(tokens, grid) for tokens in features]
        size = maps[config.condition_levels[-1]].shape[-2:]
        condition = [F.interpolate(maps[level], size=size, mode="bilinear", align_corners=False)
                     if maps[level].shape[-2:] != size else maps[level] for level in config.condition_levels]
        if config.aux_view is not None and config.aux_condition:
            if aux_maps is None:  # no auxiliary input: zeros stand in for it
                width = self.base.depth_head.scratch.refinenet1.out_conv.in_channels
                condition.append(maps[0].new_zeros(maps[0].shape[0], width, *size))
            else:
                condition.append(F.interpolate(aux_maps[-1], size=size, mode="bilinear", align_corners=False))
        degraded = torch.cat([maps[level] for level in config.restore_levels], dim=1)
        restored = self.restorer(degraded, torch.cat(condition, dim=1)).chunk(len(config.restore_levels), dim=1)
        out = list(features)
        for level, value in zip(config.restore_levels, restored):
            out[level] = _tokens(value)
        return out

    def _refine(self, index: int, x: torch.Tensor, skip: torch.Tensor | None,
                size: Sequence[int] | None) -> torch.Tensor:
        """Refinenet ``index`` (1 = finest): the frozen block, or with its coupling stack inserted
        before the upsampling (``fine_residual``: after the block's frozen residual refinement)."""
        block = getattr(self.base.depth_head.scratch, f"refinenet{index}")
        if self.fine is None or index > self.config.fine_stages:
            return block(x, skip, size=size)
        if skip is not None:
            x = x + block.resConfUnit1(skip)
        if self.config.fine_residual:
            x = block.resConfUnit2(x)
        x = self.fine[index - 1](x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return block.out_conv(x)

    def decode(self, features: list[torch.Tensor], grid: tuple[int, int],
               aux_maps: list[torch.Tensor] | None) -> torch.Tensor:
        """The DPT head with AV-LFE on its skips and the invertible fine stages."""
        head = self.base.depth_head
        skips = head.skips(features, *grid)
        if aux_maps is not None:
            for level, module, aux in zip(self.config.aux_levels, self.av_lfe, aux_maps):
                skips[level - 1] = module(skips[level - 1], aux)
        path = self._refine(4, skips[3], None, skips[2].shape[2:])
        path = self._refine(3, path, skips[2], skips[1].shape[2:])
        path = self._refine(2, path, skips[1], skips[0].shape[2:])
        return head.depth_from(self._refine(1, path, skips[0], None), *grid)

    def forward(self, image: torch.Tensor, events: torch.Tensor | None = None, aux: torch.Tensor | None = None,
                return_features: bool = False):
        image, events = self._inputs(image, events)
        grid = (image.shape[-2] // PATCH_SIZE, image.shape[-1] // PATCH_SIZE)
        features = self.base_features(image, events)
        aux_maps = self.aux_maps(events, aux, grid)
        restored = self.restore(features, grid, aux_maps)
        if self.fine is None and aux_maps is None:
            depth = self.base.depth_head(restored, *grid)  # the base's own head: bit-exact when nothing changes
        else:
            depth = self.decode(restored, grid, aux_maps)
        return (depth, restored) if return_features else depth


def build_iid_rdepth(base: nn.Module | Mapping | None = None, **options) -> IIDRDepth:
    """IID-RDepth around ``base``: a built ``depth_anything_v2`` / ``fuse`` model (frozen in place and
    wrapped) or its options (``config.to_dict()``, as checkpoints record them: a random base is
    built, to be loaded). ``options`` are ``IIDRDepthConfig`` fields, e.g. ``diffusion_steps``,
    ``invertible_stages``, ``aux_view``."""
    if isinstance(base, nn.Module):
        kind = getattr(getattr(base, "config", None), "kind", None)
        if kind not in BASE_KINDS:
            raise UsageError(f"IID-RDepth wraps a {' or '.join(BASE_KINDS)} model, got {kind or type(base).__name__}")
        return IIDRDepth(base, IIDRDepthConfig.from_options(base.config.to_dict(), **options))
    if isinstance(base, Mapping):
        config = IIDRDepthConfig.from_options(dict(base), **options)
        base_options = {key: value for key, value in config.base.items() if key != "kind"}
        return IIDRDepth(model_kind(config.base["kind"]).build(**base_options), config)
    raise UsageError("IID-RDepth is a plug-in: pass the model to wrap, e.g. fuse.build_model('iid_rdepth', "
                     "base=fuse.build_model('depth_anything_v2', head='metric'))")


register_model(ModelKind(
    KIND, build_iid_rdepth, ("image", "events"), {"metric": "metric_depth", "relative": "relative_inverse_depth"},
    (KIND,), "IID-RDepth (IEEE TMM, no public code): diffusion feature restoration, invertible fine DPT stages and "
    "AV-LFE around a frozen DA-V2 or FUSE model", "metric"))
