"""Visual state-space blocks (VMamba's SS2D as Sigma uses it, spec §3 and §5), channels-last.

An image becomes 1-D sequences through *scan orders*: ``h`` (row-major), ``v`` (column-major),
their reverses ``h_flip`` / ``v_flip``, and local orders for LSS (§4.2): ``window`` visits
``window`` x ``window`` tiles one after another, each in row-major order, so the state runs
through a tile before it moves on; ``window_shifted`` uses tiles offset by half a tile, so the two
tilings overlap; ``*_flip`` reverses any order. Each order has its own selective-scan parameters;
the outputs are put back in place and summed (cross-scan / cross-merge).

Parameter names follow VMamba / Sigma (``in_proj``, ``conv2d``, ``x_proj_weight``,
``dt_projs_weight``, ``dt_projs_bias``, ``A_logs``, ``Ds``, ``out_norm``, ``out_proj``), so that
ImageNet VMamba weights could be mapped onto the encoder.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from fuse.methods.aimdepth.scan import DEFAULT_CHUNK, selective_scan

SS2D_ORDERS = ("h", "v", "h_flip", "v_flip")  # VMamba's four directions, in its parameter order
BASE_ORDERS = ("h", "v", "window", "window_shifted")


@functools.lru_cache(maxsize=64)
def _order(name: str, height: int, width: int, window: int) -> torch.Tensor:
    base, flip = (name[: -len("_flip")], True) if name.endswith("_flip") else (name, False)
    if base not in BASE_ORDERS:
        raise ValueError(f"unknown scan order {name!r}; expected one of {BASE_ORDERS} or one of them + '_flip'")
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    if base == "h":
        order = torch.arange(height * width)
    elif base == "v":
        order = (rows * width + cols).t().reshape(-1)
    else:
        shift = window // 2 if base == "window_shifted" else 0
        tile_rows, tile_cols = (rows + shift) // window, (cols + shift) // window
        tiles_across = (width + shift) // window + 1
        key = ((tile_rows * tiles_across + tile_cols) * height + rows) * width + cols
        order = torch.argsort(key.reshape(-1), stable=True)
    return order.flip(0) if flip else order


def scan_orders(names: tuple[str, ...], height: int, width: int, window: int = 8) -> torch.Tensor:
    """(K, H*W) LongTensor: for each order, the row-major index visited at each step."""
    return torch.stack([_order(name, height, width, window) for name in names])


def cross_scan(x: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, K, C, L): the image read along each order."""
    flat = x.flatten(2)
    return flat[:, :, orders.to(x.device)].permute(0, 2, 1, 3)


def cross_merge(ys: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """(B, K, C, L) -> (B, C, L) row-major: each order's outputs put back in place, then summed."""
    inverse = torch.argsort(orders, dim=1).to(ys.device)
    return sum(ys[:, k][:, :, inverse[k]] for k in range(ys.shape[1]))


@dataclass
class ScanInputs:
    """One modality's projected sequences, before the scan (ISS exchanges parts of two of them)."""

    xs: torch.Tensor  # (B, K, d, L)
    dts: torch.Tensor  # (B, K, d, L), before bias and softplus
    Bs: torch.Tensor  # (B, K, n, L)
    Cs: torch.Tensor  # (B, K, n, L)
    z: torch.Tensor  # (B, H, W, d): the gate
    orders: torch.Tensor


class SS2D(nn.Module):
    """2-D selective scan: in-projection, depthwise conv + SiLU, K directional scans, merge, norm,
    SiLU gate, out-projection (spec §3)."""

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 2.0, orders: tuple[str, ...] = SS2D_ORDERS,
                 window: int = 8, d_conv: int = 3, dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_floor: float = 1e-4, chunk: int | None = DEFAULT_CHUNK) -> None:
        super().__init__()
        inner, rank, count = int(ssm_ratio * dim), math.ceil(dim / 16), len(orders)
        self.orders, self.window, self.chunk, self.d_state, self.dt_rank = orders, window, chunk, d_state, rank
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv2d = nn.Conv2d(inner, inner, d_conv, padding=(d_conv - 1) // 2, groups=inner)
        self.x_proj_weight = nn.Parameter(torch.stack([nn.Linear(inner, rank + 2 * d_state, bias=False).weight
                                                       for _ in orders]))
        bound = rank ** -0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(count, inner, rank).uniform_(-bound, bound))
        # Mamba's init: dt log-uniform in [dt_min, dt_max], the bias its inverse softplus
        dt = torch.exp(torch.rand(count, inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(count * inner, 1))
        self.Ds = nn.Parameter(torch.ones(count * inner))
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def project(self, x: torch.Tensor) -> ScanInputs:
        """(B, H, W, C) -> the sequences, step sizes, B and C of every order, and the gate."""
        height, width = x.shape[1:3]
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        orders = scan_orders(self.orders, height, width, self.window)
        xs = cross_scan(x, orders)
        projected = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = projected.split((self.dt_rank, self.d_state, self.d_state), dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        return ScanInputs(xs, dts, Bs, Cs, z, orders)

    def scan(self, inputs: ScanInputs, Bs: torch.Tensor | None = None, Cs: torch.Tensor | None = None,
             Ds: torch.Tensor | None = None, dts: torch.Tensor | None = None) -> torch.Tensor:
        """The merged scan outputs (B, H, W, d); ``Bs``/``Cs``/``Ds``/``dts`` replace this branch's own (ISS)."""
        batch, count, inner, length = inputs.xs.shape
        ys = selective_scan(inputs.xs.reshape(batch, -1, length), (inputs.dts if dts is None else dts).reshape(batch, -1, length),
                            -torch.exp(self.A_logs.float()), inputs.Bs if Bs is None else Bs, inputs.Cs if Cs is None else Cs,
                            self.Ds if Ds is None else Ds, delta_bias=self.dt_projs_bias.reshape(-1),
                            delta_softplus=True, chunk=self.chunk)
        merged = cross_merge(ys.reshape(batch, count, inner, length).to(inputs.xs.dtype), inputs.orders)
        height, width = inputs.z.shape[1:3]
        return merged.transpose(1, 2).reshape(batch, height, width, inner)

    def finish(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.out_norm(y) * F.silu(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = self.project(x)
        return self.finish(self.scan(inputs), inputs.z)


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float) -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class VSSBlock(nn.Module):
    """``x + DropPath(SS2D(LN(x)))``, then ``x + DropPath(MLP(LN(x)))`` when ``mlp_ratio > 0`` (spec §3)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, mlp_ratio: float = 0.0, drop_path: float = 0.0,
                 chunk: int | None = DEFAULT_CHUNK) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state, ssm_ratio, chunk=chunk)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.mlp = nn.Sequential(nn.LayerNorm(dim), Mlp(dim, mlp_ratio)) if mlp_ratio > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        return x if self.mlp is None else x + self.drop_path(self.mlp(x))


class ChannelAttention(nn.Module):
    """``x * sigmoid(fc(avgpool x) + fc(maxpool x))``, fc = 1x1 conv C -> C/squeeze, SiLU, 1x1 back (spec §5)."""

    def __init__(self, dim: int, squeeze: int = 30) -> None:
        super().__init__()
        hidden = max(1, dim // squeeze)
        self.fc = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.fc(F.adaptive_avg_pool2d(x, 1)) + self.fc(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(weight)


class ChannelAttentionBlock(nn.Module):
    """CAB: conv 3x3 C -> C/compress, GELU, conv 3x3 back, channel attention; channels-last in and out."""

    def __init__(self, dim: int, compress: int = 3, squeeze: int = 30) -> None:
        super().__init__()
        hidden = max(1, dim // compress)
        self.body = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, dim, 3, padding=1),
                                  ChannelAttention(dim, squeeze))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class CVSSDecoderBlock(nn.Module):
    """Channel-aware VSS: ``x = x*s1 + DropPath(SS2D(LN x))``; ``x = CAB(LN x) + x*s2`` (spec §5)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, drop_path: float = 0.0,
                 chunk: int | None = DEFAULT_CHUNK) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state, ssm_ratio, chunk=chunk)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim)
        self.conv_blk = ChannelAttentionBlock(dim)
        self.skip_scale2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.skip_scale + self.drop_path(self.op(self.norm(x)))
        return self.conv_blk(self.norm2(x)) + x * self.skip_scale2


class PatchEmbed(nn.Module):
    """Conv ``patch`` x ``patch`` with stride ``patch``, then LayerNorm; returns channels-last."""

    def __init__(self, in_chans: int, dim: int, patch: int = 4) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """2x downsampling: the 2x2 neighbours concatenated, LayerNorm, Linear 4C -> 2C (Swin / VMamba)."""

    def __init__(self, dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """2x upsampling: Linear C -> 2C, pixel shuffle to C/2 channels, LayerNorm (spec §5)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_shuffle(self.expand(x).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        return self.norm(x)
