"""AV-LFE: auxiliary-view low-level feature enhancement (spec §3, "AVE-FM" in the figure).

The figure shows two steps on the low-level (high-resolution) features: **Align** (a patch grid
with a displacement per patch) brings the auxiliary view's features onto the main view, then
**Fusion** merges them; without an auxiliary view an identity path replaces the module. Its
internals are unknown (§6); here:

- align: a small convolution predicts a 2-D offset field from the two maps, pooled to
  ``align_patch`` x ``align_patch`` cells (the figure's per-patch arrows), and the auxiliary map is
  resampled with ``grid_sample`` (``align="offsets"``); or a 3x3 deformable convolution
  (``torchvision.ops.deform_conv2d``) with predicted offsets (``"deformable"``); or no alignment;
- fusion: ``main + sigmoid(gate(main, aligned)) * proj(aligned)``.

Offsets and ``proj`` start at zero, so a fresh module returns the main features unchanged even with
an auxiliary view; with none it returns the very tensor it was given.

Auxiliary views in this code base: the right camera of a stereo recording (through the frozen
encoder and the frozen DPT reassembly, the figure's dashed arrows) or an event voxel grid through
``EventFeatures``, a small trainable convolutional stem.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from fuse.errors import UsageError

ALIGNMENTS = ("offsets", "deformable", "none")


class AVLFE(nn.Module):
    """Align an auxiliary feature map to the main one and fuse them with a gate (one level)."""

    def __init__(self, channels: int, align: str = "offsets", align_patch: int = 1, hidden: int | None = None) -> None:
        super().__init__()
        if align not in ALIGNMENTS:
            raise UsageError(f"AV-LFE align must be one of {ALIGNMENTS}, got {align!r}")
        if align_patch < 1:
            raise UsageError(f"AV-LFE align_patch must be >= 1, got {align_patch}")
        hidden = hidden or channels
        self.align, self.align_patch = align, align_patch
        if align != "none":
            offsets = 2 if align == "offsets" else 2 * 9
            self.offset_net = nn.Sequential(nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.ReLU(),
                                            nn.Conv2d(hidden, offsets, 3, padding=1))
            nn.init.zeros_(self.offset_net[-1].weight)
            nn.init.zeros_(self.offset_net[-1].bias)
        if align == "deformable":
            # Starts as the identity kernel: with zero offsets the aligned map is the auxiliary map.
            kernel = torch.zeros(channels, channels, 3, 3)
            kernel[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
            self.deform_weight = nn.Parameter(kernel)
        self.gate = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def _offsets(self, main: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        offsets = self.offset_net(torch.cat((main, aux), dim=1))
        if self.align_patch > 1:
            size = offsets.shape[-2:]
            offsets = F.avg_pool2d(offsets, self.align_patch, ceil_mode=True)
            offsets = F.interpolate(offsets, size=size, mode="nearest")
        return offsets

    def aligned(self, main: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """The auxiliary map resampled onto the main view."""
        if self.align == "none":
            return aux
        offsets = self._offsets(main, aux)
        if self.align == "deformable":
            return deform_conv2d(aux, offsets, self.deform_weight, padding=1)
        height, width = aux.shape[-2:]
        ys = torch.linspace(-1, 1, height, device=aux.device, dtype=aux.dtype)
        xs = torch.linspace(-1, 1, width, device=aux.device, dtype=aux.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2): x, y in [-1, 1]
        # Offsets in pixels of this map -> normalized coordinates (align_corners=True).
        scale = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)], device=aux.device, dtype=aux.dtype)
        grid = grid[None] + offsets.permute(0, 2, 3, 1) * scale
        return F.grid_sample(aux, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def forward(self, main: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        if aux is None:
            return main
        if aux.shape[-2:] != main.shape[-2:]:
            aux = F.interpolate(aux, size=main.shape[-2:], mode="bilinear", align_corners=False)
        aligned = self.aligned(main, aux)
        gate = torch.sigmoid(self.gate(torch.cat((main, aligned), dim=1)))
        return main + gate * self.proj(aligned)


class EventFeatures(nn.Module):
    """Event voxel grid -> one feature map per requested size: two stride-2 convolutions, then per
    output a bilinear resize and a 1x1 convolution (trainable; the event-conditioned variant)."""

    def __init__(self, bins: int, channels: int, outputs: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(bins, channels, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.GELU())
        self.heads = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(outputs))

    def forward(self, voxel: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        x = self.stem(voxel)
        return [head(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
                for head, size in zip(self.heads, sizes)]
