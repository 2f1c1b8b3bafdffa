"""DPT depth head in the Depth Anything V2 layout (spec §2).

Parameter names match DA-V2 (``projects.i``, ``resize_layers.i``, ``scratch.layerN_rn``,
``scratch.refinenetN``, ``scratch.output_conv1``, ``scratch.output_conv2``) so released heads load
unchanged. The relative ending (ReLU, disparity-like output) and the metric ending
(Sigmoid x max_depth) share every parameter.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fuse.layers.sizes import PATCH_SIZE, HeadSize

HEAD_KINDS = ("relative", "metric")


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convolutions with bias."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Refinenet: add the (refined) skip, refine, upsample bilinearly (align_corners), 1x1 conv.

    ``resConfUnit1`` is unused by ``refinenet4`` (no skip input) but exists in every checkpoint.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Four tapped token maps -> one depth map at 14x the token grid."""

    def __init__(self, in_channels: int, size: HeadSize, kind: str = "relative", max_depth: float = 1.0) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; expected one of {HEAD_KINDS}")
        self.kind, self.max_depth = kind, float(max_depth)
        features, out_channels = size.features, size.out_channels
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.ReLU() if kind == "relative" else nn.Sigmoid(),
        )
        # The token maps arrive channels-last (a view of the tokens); channels-last weights keep
        # every convolution and resize in that layout, where oneDNN's and torch's CPU kernels
        # are fastest for these channel counts (no per-call weight or activation reorders).
        self.to(memory_format=torch.channels_last)

    def skips(self, features: Sequence[torch.Tensor], grid_h: int, grid_w: int) -> list[torch.Tensor]:
        """The four skip maps l1..l4 (finest first) of (B, grid_h*grid_w, C) token maps: projection,
        resize and ``layerN_rn`` of each tap. Methods that change the decoder between the skips and
        the output (IID-RDepth) call the parts: ``skips``, the refinenets, ``depth_from``."""
        maps = []
        for tokens, project, resize in zip(features, self.projects, self.resize_layers):
            # A channels-last view of the tokens, no copy.
            x = tokens.reshape(tokens.shape[0], grid_h, grid_w, tokens.shape[-1]).permute(0, 3, 1, 2)
            maps.append(resize(project(x)))
        return [getattr(self.scratch, f"layer{i}_rn")(m) for i, m in enumerate(maps, start=1)]

    def depth_from(self, path: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """The output convolutions on the finest refinenet's map: (B, 14*grid_h, 14*grid_w)."""
        s = self.scratch
        out = s.output_conv1(path)
        out = F.interpolate(out, (grid_h * PATCH_SIZE, grid_w * PATCH_SIZE), mode="bilinear", align_corners=True)
        out = s.output_conv2(out).squeeze(1)
        return out * self.max_depth if self.kind == "metric" else out

    def forward(self, features: Sequence[torch.Tensor], grid_h: int, grid_w: int) -> torch.Tensor:
        """``features``: four (B, grid_h*grid_w, C) token maps. Returns (B, 14*grid_h, 14*grid_w)."""
        l1, l2, l3, l4 = self.skips(features, grid_h, grid_w)
        s = self.scratch
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        return self.depth_from(s.refinenet1(path, l1), grid_h, grid_w)
