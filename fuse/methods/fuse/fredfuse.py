"""FreDFuse: frequency-decoupled fusion of image and event tokens (spec §3).

Each modality's tokens are split by a Gaussian-Laplacian pyramid into a low-frequency and a
high-frequency map. Image low frequencies query event low frequencies (events fill in global
structure where the image is degraded); event high frequencies query image high frequencies
(the image sharpens event edges). Parameter names follow the upstream checkpoints.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fuse.layers.attention import attention

SHUFFLE_GROUPS = 8


def gaussian_kernel(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """Normalized 2-D Gaussian, shape (1, 1, size, size)."""
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma ** 2))
    return (kernel / kernel.sum()).view(1, 1, size, size)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class FusionConv(nn.Sequential):
    """[1x1 grouped conv 2C->C, channel shuffle, ReLU, 1x1 grouped conv C->C] (upstream layout).

    :meth:`forward_channels_last` computes the same on ``(..., channels)`` maps: each grouped
    1x1 convolution is one batched matmul over the groups, and the shuffle is a transpose of
    the (group, channel) axes, so no convolution kernel or NCHW copy is involved (torch's CPU
    1x1 grouped convolution falls back to a slow per-group loop).
    """

    def __init__(self, channels: int, groups: int = SHUFFLE_GROUPS) -> None:
        super().__init__(
            nn.Conv2d(2 * channels, channels, 1, groups=groups),
            ChannelShuffle(groups),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1, groups=groups),
        )
        self.groups = groups

    @staticmethod
    def _grouped_pointwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        """(M, G, Cin/G) -> (G, M, Cout/G): one matmul per group, bias added in the same call."""
        g = conv.groups
        weight = conv.weight.view(g, conv.out_channels // g, -1).transpose(1, 2)
        return torch.baddbmm(conv.bias.view(g, 1, -1), x.transpose(0, 1), weight)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., 2C) -> (..., C)."""
        lead, g = x.shape[:-1], self.groups
        hidden = self._grouped_pointwise(x.reshape(-1, g, x.shape[-1] // g), self[0])  # (G, M, C/G)
        # Shuffle: output channel (group i, index j) moves to position j * G + i.
        hidden = torch.relu(hidden.permute(1, 2, 0)).reshape(hidden.shape[1], g, -1)
        out = self._grouped_pointwise(hidden, self[3])  # (G, M, C/G)
        return out.transpose(0, 1).reshape(*lead, -1)


def _fusion_conv(channels: int) -> FusionConv:
    return FusionConv(channels)


class GaussianLaplacianDecoupler(nn.Module):
    """Tokens -> (low, high) tokens via 3-level Gaussian / Laplacian pyramids and top-down fusion.

    Maps stay in the token layout (B, h, w, C) throughout, seen as channels-last NCHW tensors
    for the blur and the resizes, so the tokens are never transposed or copied into NCHW.
    """

    def __init__(self, channels: int, levels: int = 3, kernel_size: int = 3, sigma: float = 1.0) -> None:
        super().__init__()
        if channels % SHUFFLE_GROUPS:
            raise ValueError(f"FreDFuse needs channels divisible by {SHUFFLE_GROUPS}, got {channels}")
        self.levels = levels
        # Persistent: upstream checkpoints store it (the values are fixed, never trained).
        self.register_buffer("gaussian_kernel", gaussian_kernel(kernel_size, sigma))
        self.fusion_convs_g = nn.ModuleList(_fusion_conv(channels) for _ in range(levels - 1))
        self.fusion_convs_l = nn.ModuleList(_fusion_conv(channels) for _ in range(levels - 1))

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise Gaussian blur of a (B, h, w, C) map."""
        kernel = self.gaussian_kernel.to(x.dtype).expand(x.shape[-1], 1, -1, -1)
        out = F.conv2d(x.permute(0, 3, 1, 2), kernel, padding=kernel.shape[-1] // 2, groups=x.shape[-1])
        return out.permute(0, 2, 3, 1)

    @staticmethod
    def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bilinear resize (align_corners False) of a (B, h, w, C) map."""
        out = F.interpolate(x.permute(0, 3, 1, 2), size=tuple(size), mode="bilinear", align_corners=False)
        return out.permute(0, 2, 3, 1)

    def pyramids(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Gaussian and Laplacian pyramids of a (B, h, w, C) map, finest level first."""
        gaussian = [x]
        for _ in range(self.levels - 1):
            g = gaussian[-1]
            gaussian.append(self._resize(self.blur(g), (g.shape[1] // 2, g.shape[2] // 2)))
        laplacian = [g - self._resize(g_next, g.shape[1:3]) for g, g_next in zip(gaussian, gaussian[1:])]
        laplacian.append(gaussian[-1])
        return gaussian, laplacian

    def _top_down(self, pyramid: list[torch.Tensor], convs: nn.ModuleList) -> torch.Tensor:
        fused = pyramid[-1]
        for level in range(self.levels - 2, -1, -1):
            up = self._resize(fused, pyramid[level].shape[1:3])
            fused = convs[level].forward_channels_last(torch.cat((pyramid[level], up), dim=-1))
        return fused

    def forward(self, tokens: torch.Tensor, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = tokens.shape
        gaussian, laplacian = self.pyramids(tokens.reshape(b, grid_h, grid_w, c))
        low = self._top_down(gaussian, self.fusion_convs_g)
        high = self._top_down(laplacian, self.fusion_convs_l)
        return low.reshape(b, n, c), high.reshape(b, n, c)


class CrossAttention(nn.Module):
    """``norm1(x1) + out_proj(attn(q=W_q(norm1(x1)), k,v=W_k,W_v(norm1(x2))))`` at width C/reduction.

    Both inputs pass through the same LayerNorm. Upstream also defines ``temperature`` and
    ``norm2`` here but never uses them; the weight loader reports them as ignored.
    """

    def __init__(self, dim: int, num_heads: int, reduction: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        inner = dim // reduction
        if inner % num_heads:
            raise ValueError(f"cross-attention width {inner} not divisible by {num_heads} heads")
        self.num_heads, self.dropout = num_heads, dropout
        self.W_q = nn.Linear(dim, inner)
        self.W_k = nn.Linear(dim, inner)
        self.W_v = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)
        self.norm1 = nn.LayerNorm(dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.norm1(x1), self.norm1(x2)
        q, k, v = self._heads(self.W_q(x1)), self._heads(self.W_k(x2)), self._heads(self.W_v(x2))
        out = attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).flatten(2)
        return x1 + self.out_proj(out)


class FreDFuse(nn.Module):
    """Fuse image tokens ``x1`` and event tokens ``x2`` (both B x N x C, no cls) into B x N x C."""

    def __init__(self, dim: int, num_heads: int, reduction: int = 2) -> None:
        super().__init__()
        self.img_feature_decouple = GaussianLaplacianDecoupler(dim)
        self.vox_feature_decouple = GaussianLaplacianDecoupler(dim)
        self.low_cross_att = CrossAttention(dim, num_heads, reduction)
        self.high_cross_att = CrossAttention(dim, num_heads, reduction)
        self.out_proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, image_tokens: torch.Tensor, event_tokens: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        image_low, image_high = self.img_feature_decouple(image_tokens, grid_h, grid_w)
        event_low, event_high = self.vox_feature_decouple(event_tokens, grid_h, grid_w)
        low = self.low_cross_att(image_low, event_low)
        high = self.high_cross_att(event_high, image_high)
        return self.norm2(self.out_proj(self.norm1(low + high)))
