"""AIMDepth (CVPR 2026): asymmetric image-event Mamba for monocular depth (spec: shared/spec/aimdepth.md).

No code or weights are public; every choice the paper leaves open is an ``AIMDepthConfig`` field
whose default and source ([seed] = the paper, [Sigma] = the closest public code, [assumed]) are
listed in ``docs/aimdepth.md``. The forward pass:

1. SCPG (``spectral.py``): image amplitudes into the events (EAT), the phases of the two strongest
   event channels appended to the image (IPE): 3 + 2 image channels, 5 event bins;
2. AME: one shared four-stage VSS encoder run on each modality; ``selection "A"`` keeps image
   stages 1-3 and event stages 2-4 as ``(I1, ModiLocal(I2, E2), ModiLocal(I3, E3), E4)``,
   ``"B"`` pairs shifted stages ``(I1, E2), (I2, E3), (I3, E4)``;
3. a CVSS decoder up to full resolution, one channel ``y`` in [0, 1] of normalized log depth;
4. metric depth ``max_depth * exp(-alpha * (1 - y))`` in metres.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import UsageError
from fuse.registry import ModelKind, register_model
from fuse.methods.aimdepth.modilocal import DELTA_SOURCES, EXCHANGES, ModiLocal
from fuse.methods.aimdepth.scan import DEFAULT_CHUNK
from fuse.methods.aimdepth.spectral import SpectralSettings, spectral_prior
from fuse.methods.aimdepth.vss import BASE_ORDERS, CVSSDecoderBlock, PatchEmbed, PatchExpand, PatchMerging, VSSBlock

KIND = "aimdepth"
HEAD = "metric"
STRIDE = 32  # four stages after a 4x4 patch embedding
IMAGE_CHANNELS = 3
IPE_CHANNELS = 2

SIZES: dict[str, dict] = {
    # [Sigma] VMamba-T encoder (22.1 M) and four CVSS blocks per decoder level: 38.8 M in all (paper: 45.07 M)
    "paper": dict(dims=(96, 192, 384, 768), depths=(2, 2, 9, 2), d_state=16, decoder_depths=(4, 4, 4),
                  decoder_d_state=4, lss_window=8, se_reduction=16),
    # CPU tests and the demo
    "tiny": dict(dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), d_state=4, decoder_depths=(1, 1, 1),
                 decoder_d_state=4, lss_window=4, se_reduction=4),
}
DEFAULT_SIZE = "paper"
SELECTIONS = ("A", "B")
STEMS = ("shared", "separate")
HEAD_ACTIVATIONS = ("sigmoid", "clamp")
INPUT_FITS = ("strict", "pad")


@dataclass(frozen=True)
class AIMDepthConfig:
    """The builder's options (recorded in checkpoints); defaults = the ``paper`` size."""

    size: str = DEFAULT_SIZE
    dims: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (2, 2, 9, 2)
    d_state: int = 16
    ssm_ratio: float = 2.0
    mlp_ratio: float = 0.0
    drop_path: float = 0.1
    decoder_depths: tuple[int, ...] = (4, 4, 4)
    decoder_d_state: int = 4
    event_bins: int = 5
    max_depth: float = 80.0
    alpha: float = 3.70378
    head_activation: str = "sigmoid"
    selection: str = "A"
    scpg: bool = True
    ame: bool = True
    modilocal: bool = True
    exchange: str = "BD"
    delta_from: str = "own"
    lss_orders: tuple[str, ...] = ("h", "v", "window", "window_shifted")
    lss_window: int = 8
    se_reduction: int = 16
    stem: str = "shared"
    spectral: SpectralSettings = field(default_factory=SpectralSettings)
    input_fit: str = "strict"
    scan_chunk: int | None = DEFAULT_CHUNK
    kind: ClassVar[str] = KIND
    head: ClassVar[str] = HEAD

    def __post_init__(self) -> None:
        for name in ("dims", "depths", "decoder_depths", "lss_orders"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.spectral, dict):
            object.__setattr__(self, "spectral", SpectralSettings(**self.spectral))
        choices = {"size": tuple(SIZES), "selection": SELECTIONS, "stem": STEMS, "exchange": EXCHANGES,
                   "delta_from": DELTA_SOURCES, "head_activation": HEAD_ACTIVATIONS, "input_fit": INPUT_FITS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"AIMDepth's {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if len(self.dims) != 4 or len(self.depths) != 4 or any(d % 2 or d < 2 for d in self.dims):
            raise UsageError(f"AIMDepth needs four stage widths (even, halving upwards) and depths, got dims "
                             f"{self.dims}, depths {self.depths}")
        if any(b != 2 * a for a, b in zip(self.dims, self.dims[1:])):
            raise UsageError(f"AIMDepth's stage widths must double from stage to stage, got {self.dims}")
        if len(self.decoder_depths) != 3:
            raise UsageError(f"decoder_depths needs one block count per decoder level (3), got {self.decoder_depths}")
        if self.event_bins < 1 or self.max_depth <= 0 or self.alpha <= 0:
            raise UsageError("AIMDepth needs event_bins >= 1, max_depth > 0 and alpha > 0")
        unknown = [o for o in self.lss_orders if o.removesuffix("_flip") not in BASE_ORDERS]
        if unknown:
            raise UsageError(f"unknown LSS scan orders {unknown}; expected {BASE_ORDERS}, each optionally + '_flip'")
        image_in = IMAGE_CHANNELS + IPE_CHANNELS
        if self.stem == "shared" and self.event_bins != image_in:
            raise UsageError(f"a shared patch embedding needs as many event bins as image channels ({image_in}: RGB + "
                             f"two phase maps), got event_bins={self.event_bins}; use stem='separate' for other bin "
                             "counts")

    @property
    def levels(self) -> int:
        """Feature levels the decoder receives: four (selection A, or no AME) or three (selection B)."""
        return 3 if self.ame and self.selection == "B" else 4

    @property
    def fused_levels(self) -> tuple[int, ...]:
        """0-based levels fused from both modalities."""
        if not self.ame:
            return (0, 1, 2, 3)
        return (1, 2) if self.selection == "A" else (0, 1, 2)

    def to_dict(self) -> dict:
        values = asdict(self)
        values = {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}
        return {"kind": KIND, **values}

    @classmethod
    def from_options(cls, size: str = DEFAULT_SIZE, **options) -> "AIMDepthConfig":
        """A size's preset with ``options`` on top; unknown options are a ``UsageError``."""
        options.pop("kind", None)
        if options.pop("head", HEAD) != HEAD:
            raise UsageError(f"AIMDepth has one head ending, {HEAD!r}")
        if size not in SIZES:
            raise UsageError(f"unknown AIMDepth size {size!r}; expected one of {sorted(SIZES)}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise UsageError(f"AIMDepth takes the options {sorted(names)}, not {unknown}")
        return cls(size=size, **(SIZES[size] | options))


class VSSEncoder(nn.Module):
    """Four VSS stages (patch embedding, then 2x patch merging before stages 2-4) and an output
    LayerNorm per stage; one instance serves both modalities (AME's weight sharing)."""

    def __init__(self, config: AIMDepthConfig, in_chans: int) -> None:
        super().__init__()
        dims, depths = config.dims, config.depths
        rates = torch.linspace(0, config.drop_path, sum(depths)).tolist()
        self.patch_embed = PatchEmbed(in_chans, dims[0])
        self.downsamples = nn.ModuleList([nn.Identity()] + [PatchMerging(dims[i - 1], dims[i]) for i in range(1, 4)])
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(nn.Sequential(*(VSSBlock(dims[i], config.d_state, config.ssm_ratio, config.mlp_ratio,
                                                        rates[start + j], config.scan_chunk) for j in range(depth))))
        self.out_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)

    def forward(self, x: torch.Tensor, stages: int = 4, embed: nn.Module | None = None) -> list[torch.Tensor]:
        """Channels-last features of the first ``stages`` stages; ``embed`` replaces the patch
        embedding (separate stems)."""
        x = (embed or self.patch_embed)(x)
        outputs = []
        for i in range(stages):
            x = self.layers[i](self.downsamples[i](x))
            outputs.append(self.out_norms[i](x))
        return outputs


class Decoder(nn.Module):
    """From the deepest level: 2x patch expansion, add the next level, CVSS blocks; then two more
    expansions to full resolution and a 1x1 convolution to one channel (spec §5)."""

    def __init__(self, config: AIMDepthConfig) -> None:
        super().__init__()
        dims, levels = config.dims, config.levels
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1]) for i in range(levels - 1))
        self.blocks = nn.ModuleList(
            nn.Sequential(*(CVSSDecoderBlock(dims[i], config.decoder_d_state, config.ssm_ratio,
                                             chunk=config.scan_chunk) for _ in range(config.decoder_depths[i])))
            for i in range(levels - 1))
        self.final = nn.Sequential(PatchExpand(dims[0]), PatchExpand(dims[0] // 2))
        self.head = nn.Conv2d(dims[0] // 4, 1, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = levels[-1]
        for i in reversed(range(len(levels) - 1)):
            x = self.blocks[i](self.expands[i](x) + levels[i])
        return self.head(self.final(x).permute(0, 3, 1, 2))[:, 0]


class ShiftedPair(nn.Module):
    """Selection B: the next event stage brought to this stage's size and width (bilinear 2x, Linear)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(events.permute(0, 3, 1, 2), scale_factor=2, mode="bilinear", align_corners=False)
        return self.proj(up.permute(0, 2, 3, 1))


class AIMDepth(nn.Module):
    """``model(image, events)``: image (B, 3, H, W) and voxel grid (B, event_bins, H, W) -> metric
    depth (B, H, W) in metres. H and W must be multiples of 32 unless ``input_fit="pad"``, which
    pads (replicating the border) and crops the output back."""

    def __init__(self, config: AIMDepthConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VSSEncoder(config, IMAGE_CHANNELS + IPE_CHANNELS)
        self.event_embed = PatchEmbed(config.event_bins, config.dims[0]) if config.stem == "separate" else None
        self.fusions = nn.ModuleDict({
            str(level): ModiLocal(config.dims[level], config.d_state, config.ssm_ratio, config.exchange,
                                  config.delta_from, config.lss_orders, config.lss_window, config.se_reduction,
                                  config.scan_chunk)
            for level in config.fused_levels} if config.modilocal else {})
        self.shifted = nn.ModuleDict({str(level): ShiftedPair(config.dims[level]) for level in config.fused_levels}
                                     if config.ame and config.selection == "B" else {})
        self.decoder = Decoder(config)

    def check_inputs(self, image: torch.Tensor, events: torch.Tensor) -> None:
        """One clear message per input the network cannot take."""
        if image.ndim != 4 or image.shape[1] != IMAGE_CHANNELS:
            raise UsageError(f"AIMDepth takes RGB images of shape (B, 3, H, W) (replicate a grayscale frame to three "
                             f"channels), got {tuple(image.shape)}")
        if events.ndim != 4 or events.shape[1] != self.config.event_bins:
            raise UsageError(f"this AIMDepth model takes voxel grids of {self.config.event_bins} bins (B, "
                             f"{self.config.event_bins}, H, W), got {tuple(events.shape)}; prepare the data with "
                             f"--numbins {self.config.event_bins}")
        if image.shape[0] != events.shape[0] or image.shape[-2:] != events.shape[-2:]:
            raise UsageError(f"image {tuple(image.shape)} and events {tuple(events.shape)} differ in batch or size")
        height, width = image.shape[-2:]
        if self.config.input_fit == "strict" and (height % STRIDE or width % STRIDE):
            raise UsageError(f"AIMDepth's encoder divides the input by {STRIDE}: height and width must be multiples "
                             f"of {STRIDE}, got {height}x{width} (resize or pad the input, or build the model with "
                             "input_fit='pad')")

    def to_depth(self, output: torch.Tensor) -> torch.Tensor:
        """Network output -> normalized log depth in [0, 1] -> metres."""
        config = self.config
        y = torch.sigmoid(output) if config.head_activation == "sigmoid" else output.clamp(0, 1)
        return config.max_depth * torch.exp(-config.alpha * (1 - y))

    def encoder_input(self, image: torch.Tensor, events: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SCPG's image (RGB + two phase maps) and events; without SCPG, zeros stand in for the phase
        maps so that the shared stem still takes five channels."""
        if self.config.scpg:
            return spectral_prior(image, events, self.config.spectral)
        return F.pad(image, (0, 0, 0, 0, 0, IPE_CHANNELS)), events

    def features(self, image: torch.Tensor, events: torch.Tensor) -> list[torch.Tensor]:
        """The decoder's input levels (channels-last), after SCPG, the shared encoder and the selection."""
        config = self.config
        image, events = self.encoder_input(image, events)
        asymmetric_a = config.ame and config.selection == "A"
        image_levels = self.encoder(image, stages=3 if asymmetric_a else 4)
        event_levels = self.encoder(events, embed=self.event_embed)
        if config.ame and config.selection == "B":
            event_levels = [self.shifted[str(i)](event_levels[i + 1]) for i in range(3)]
        levels = []
        for level in range(config.levels):
            if level not in config.fused_levels:
                levels.append(image_levels[level] if level == 0 else event_levels[level])
            elif config.modilocal:
                levels.append(self.fusions[str(level)](image_levels[level], event_levels[level]))
            else:
                levels.append(image_levels[level] + event_levels[level])
        return levels

    def forward(self, image: torch.Tensor, events: torch.Tensor, return_features: bool = False):
        self.check_inputs(image, events)
        height, width = image.shape[-2:]
        if self.config.input_fit == "pad":
            pad = (0, -width % STRIDE, 0, -height % STRIDE)
            image, events = F.pad(image, pad, mode="replicate"), F.pad(events, pad, mode="replicate")
        levels = self.features(image, events)
        depth = self.to_depth(self.decoder(levels))[:, :height, :width]
        return (depth, levels) if return_features else depth


def build_aimdepth(size: str = DEFAULT_SIZE, **options) -> AIMDepth:
    """A randomly initialized AIMDepth of a size (``SIZES``) with ``options`` (``AIMDepthConfig`` fields)."""
    return AIMDepth(AIMDepthConfig.from_options(size, **options))


register_model(ModelKind(
    KIND, build_aimdepth, ("image", "events"), {HEAD: "metric_depth"}, (KIND,),
    "AIMDepth (CVPR 2026, no public code): image + event Mamba, metric depth from normalized log depth", HEAD))
