"""DERD-Net's network (spec derd-net.md §5), its ensemble, the arg-max baseline and the depth maps.

The network maps one Sub-DSI, the ``(D, 7, 7)`` block of a ray-density volume around a selected
pixel (near -> far along D, divided by its own maximum, spec §4), to one normalized depth
(single-pixel) or nine (the 3 x 3 neighbourhood, multi-pixel). Module and parameter names are
those of the authors' ``PixelwiseConvGRU`` (tub-rip/DERD-Net, ``notebooks/Classes_and_Functions.ipynb``)
so that their released state dicts load unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from fuse.errors import UsageError
from fuse.registry import ModelKind, register_model

KIND = "derdnet"
HEAD = "point"  # both variants predict metric depth at points; multi_pixel says how many per Sub-DSI
NEIGHBOURHOOD = 3  # the multi-pixel output covers the 3 x 3 pixels around the centre
# (dr, dc) of output i, row-major: i = 3 * (dr + 1) + (dc + 1); index 4 is the centre (spec §5).
OFFSETS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
CENTRE = OFFSETS.index((0, 0))


@dataclass(frozen=True)
class DerdNetConfig:
    """The builder's options; the defaults are those of all 24 released models (spec §5)."""

    multi_pixel: bool = False
    radius: int = 3  # Sub-DSI side is 2 * radius + 1
    out_channels: int = 4  # of the 3D convolution
    hidden_scale: int = 1  # GRU hidden size = scale x its input size
    kind: ClassVar[str] = KIND
    head: ClassVar[str] = HEAD

    def __post_init__(self) -> None:
        for name in ("radius", "out_channels", "hidden_scale"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"DERD-Net's {name} must be >= 1, got {getattr(self, name)}")

    @property
    def side(self) -> int:
        return 2 * self.radius + 1

    @property
    def gru_input(self) -> int:
        """Conv channels x the spatial size left by the unpadded 3 x 3 kernel."""
        return self.out_channels * (self.side - 2) ** 2

    @property
    def outputs(self) -> int:
        return NEIGHBOURHOOD ** 2 if self.multi_pixel else 1

    def to_dict(self) -> dict:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, options: dict) -> "DerdNetConfig":
        """The config of ``options`` (``to_dict()`` output or builder keywords); unknown ones are a ``UsageError``."""
        options = dict(options)
        kind = options.pop("kind", KIND)
        head = options.pop("head", HEAD)
        names = [field.name for field in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if kind != KIND or head != HEAD or unknown:
            raise UsageError(f"DERD-Net takes the options {names} (kind {KIND!r}, head {HEAD!r}); "
                             f"got kind {kind!r}, head {head!r}, unknown {unknown}")
        return cls(**options)


class DerdNet(nn.Module):
    """Conv3d over (depth, h, w), a GRU along depth, an MLP on the last state (spec §5)."""

    def __init__(self, config: DerdNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or DerdNetConfig()
        channels, features = self.config.out_channels, self.config.gru_input
        hidden = features * self.config.hidden_scale
        # The Dropout(0) layers carry no parameters but keep the released indices (dense_output.3).
        self.conv3d = nn.Sequential(
            nn.Conv3d(1, channels, kernel_size=3, stride=(2, 1, 1), padding=(1, 0, 0)), nn.ReLU(), nn.Dropout(0.0))
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.dense_output = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(hidden, self.config.outputs))

    def forward(self, sub_dsi: torch.Tensor, return_features: bool = False):
        """``(B, D, side, side)`` Sub-DSIs, near -> far, any D -> raw normalized depth ``(B,)`` or
        ``(B, 9)``, before the caller's clip to [0, 1]; with ``return_features`` also the last GRU state."""
        side = self.config.side
        if sub_dsi.ndim != 4 or sub_dsi.shape[-2:] != (side, side):
            raise ValueError(f"DERD-Net takes Sub-DSIs of shape (B, D, {side}, {side}), got {tuple(sub_dsi.shape)}")
        volume = self.conv3d(sub_dsi.unsqueeze(1))  # (B, C, ceil(D/2), side-2, side-2)
        sequence = volume.transpose(1, 2).flatten(2)  # depth becomes time; features in (c, h, w) order
        states, _ = self.gru(sequence)
        last = states[:, -1]  # the farthest depth group
        output = self.dense_output(last)
        output = output if self.config.multi_pixel else output.squeeze(-1)
        return (output, last) if return_features else output


class DerdNetEnsemble(nn.Module):
    """The mean of several models' raw outputs, as every published number is (spec §5.2).

    The output is not clipped: clip it to [0, 1] afterwards (``DepthRange.to_metres`` does).
    """

    def __init__(self, members: Sequence[DerdNet]) -> None:
        super().__init__()
        if not members or len({member.config for member in members}) != 1:
            raise UsageError("a DERD-Net ensemble needs at least one model, all built with the same options; got "
                             f"{[member.config for member in members]}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, sub_dsi: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(sub_dsi) for member in self.members]).mean(dim=0)


@dataclass(frozen=True)
class DepthRange:
    """The depth range a DERD-Net model's outputs are normalized to, linearly in depth (spec §5.1)."""

    z_min: float
    z_max: float

    def normalize(self, depth: torch.Tensor) -> torch.Tensor:
        return (depth - self.z_min) / (self.z_max - self.z_min)

    def to_metres(self, output: torch.Tensor) -> torch.Tensor:
        """Network output -> metres, clipped to [z_min, z_max] first as the authors' inference does."""
        return self.z_min + output.clamp(0.0, 1.0) * (self.z_max - self.z_min)


# The notebooks' ranges (spec §5.1); not the core dataset table's, whose MVSEC range (to 80 m) is E2Depth's.
DEPTH_RANGES: dict[str, DepthRange] = {"mvsec": DepthRange(1.0, 6.5), "dsec": DepthRange(4.0, 50.0)}


def depth_range(dataset: str) -> DepthRange:
    try:
        return DEPTH_RANGES[dataset.lower()]
    except KeyError:
        raise UsageError(f"DERD-Net has no depth range for {dataset!r}; it knows {sorted(DEPTH_RANGES)}") from None


def argmax_depth(dsi: torch.Tensor, depth: DepthRange) -> torch.Tensor:
    """The arg-max baseline (spec §5.3): metres of the densest plane along the first axis of a
    near -> far DSI with D planes uniform in inverse depth, ``(D, ...)`` -> ``(...)``."""
    fraction = (dsi.argmax(dim=0) + 1) / dsi.shape[0]
    return 1.0 / (1.0 / depth.z_min - fraction * (1.0 / depth.z_min - 1.0 / depth.z_max))


def write_points(shape: tuple[int, int], centres: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A sparse ``(H, W)`` map (NaN where nothing was written) from per-centre outputs.

    ``centres`` ``(N, 2)`` are (row, col) in processing order, ``values`` ``(N,)`` single-pixel or
    ``(N, 9)`` multi-pixel (``OFFSETS`` order). Where neighbourhoods overlap the last centre in
    that order wins, as in the authors' loop; pass centres row-major (``torch.nonzero`` order)
    to match them (spec §5: the order is theirs, not the paper's).
    """
    height, width = shape
    offsets = torch.tensor(OFFSETS if values.ndim == 2 else [(0, 0)], device=centres.device)
    if values.shape[0] != centres.shape[0] or values.ndim == 2 and values.shape[1] != len(OFFSETS):
        raise ValueError(f"values {tuple(values.shape)} do not fit {centres.shape[0]} centres: expected "
                         f"({centres.shape[0]},) or ({centres.shape[0]}, {len(OFFSETS)})")
    rows = centres[:, :1] + offsets[:, 0]
    cols = centres[:, 1:] + offsets[:, 1]
    if ((rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)).any():
        raise ValueError(f"a centre's neighbourhood leaves the {height} x {width} map")
    targets = (rows * width + cols).reshape(-1)
    writer = torch.full((height * width,), -1, dtype=torch.long, device=centres.device)
    writer.scatter_reduce_(0, targets, torch.arange(targets.numel(), device=centres.device), "amax")
    depth = torch.full((height * width,), float("nan"), dtype=values.dtype, device=values.device)
    written = writer >= 0
    depth[written] = values.reshape(-1)[writer[written]]
    return depth.view(height, width)


def build_derdnet(**options) -> DerdNet:
    """``fuse.build_model("derdnet", multi_pixel=...)``: a randomly initialized network."""
    return DerdNet(DerdNetConfig.from_dict(options))


register_model(ModelKind(
    KIND, build_derdnet, ("dsi_patch",), {HEAD: "point_depth"}, (KIND,),
    "DERD-Net (arXiv 2504.15863): depth at selected pixels from Sub-DSIs of event ray densities", HEAD))
