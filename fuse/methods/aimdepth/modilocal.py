"""ModiLocal: interactive selective scan (ISS), local spatial selective scan (LSS) and SE (spec §4).

ISS runs one SS2D per modality on the same positions and exchanges what ``exchange`` names:
``"BD"`` (the paper: each modality's scan reads the *other* modality's input-to-state ``B_t`` and
skip ``D``, keeps its own ``A``, ``C`` and ``Δ``), ``"C"`` (Sigma's cross-attention scan: the other
modality's readout ``C_t``) or ``"none"`` (two independent scans, an ablation); ``delta_from``
says whose step sizes ``Δ`` a branch uses (``"own"``, [assumed]; ``"other"``). Each branch adds
its output to its input. The two updated maps are summed (Sigma's merge, [assumed]), LSS scans
the sum along global and local orders (``fuse.methods.aimdepth.vss``), and squeeze-and-excitation
rescales the channels.
"""
from __future__ import annotations

import torch
from torch import nn

from fuse.methods.aimdepth.scan import DEFAULT_CHUNK
from fuse.methods.aimdepth.vss import SS2D

EXCHANGES = ("BD", "C", "none")
DELTA_SOURCES = ("own", "other")


class InteractiveScan(nn.Module):
    """ISS: ``h^m_t = exp(Δ^m A^m) h^m_{t-1} + Δ^m B^{m'}_t x^m_t``, ``y^m_t = C^m_t h^m_t + D^{m'} x^m_t``."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, exchange: str = "BD", delta_from: str = "own",
                 chunk: int | None = DEFAULT_CHUNK) -> None:
        super().__init__()
        if exchange not in EXCHANGES or delta_from not in DELTA_SOURCES:
            raise ValueError(f"exchange must be one of {EXCHANGES} and delta_from one of {DELTA_SOURCES}, got "
                             f"{exchange!r}, {delta_from!r}")
        self.exchange, self.delta_from = exchange, delta_from
        self.norm_image, self.norm_events = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.image = SS2D(dim, d_state, ssm_ratio, chunk=chunk)
        self.events = SS2D(dim, d_state, ssm_ratio, chunk=chunk)

    def forward(self, image: torch.Tensor, events: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, C) each -> both maps updated (residual)."""
        own_i, own_e = self.image.project(self.norm_image(image)), self.events.project(self.norm_events(events))
        swap = self.delta_from == "other"
        taken_i = {"dts": own_e.dts} if swap else {}  # what the image branch takes from the events
        taken_e = {"dts": own_i.dts} if swap else {}
        if self.exchange == "BD":
            taken_i |= {"Bs": own_e.Bs, "Ds": self.events.Ds}
            taken_e |= {"Bs": own_i.Bs, "Ds": self.image.Ds}
        elif self.exchange == "C":
            taken_i, taken_e = taken_i | {"Cs": own_e.Cs}, taken_e | {"Cs": own_i.Cs}
        y_i, y_e = self.image.scan(own_i, **taken_i), self.events.scan(own_e, **taken_e)
        return image + self.image.finish(y_i, own_i.z), events + self.events.finish(y_e, own_e.z)


class LocalScan(nn.Module):
    """LSS: ``x + SS2D(LN x)`` along ``orders`` (default: global rows and columns, two overlapping tilings)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, orders: tuple[str, ...], window: int,
                 chunk: int | None = DEFAULT_CHUNK) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state, ssm_ratio, orders=orders, window=window, chunk=chunk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.op(self.norm(x))


class SqueezeExcite(nn.Module):
    """Channels scaled by ``sigmoid(FC(ReLU(FC(GAP x))))``, the hidden width ``C / reduction``."""

    def __init__(self, dim: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.fc = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        return x * self.fc(x.mean(dim=(1, 2)))[:, None, None, :]


class ModiLocal(nn.Module):
    """ISS, sum of the two maps, LSS, SE: one fused map (B, H, W, C)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, exchange: str, delta_from: str,
                 orders: tuple[str, ...], window: int, reduction: int, chunk: int | None = DEFAULT_CHUNK) -> None:
        super().__init__()
        self.iss = InteractiveScan(dim, d_state, ssm_ratio, exchange, delta_from, chunk)
        self.lss = LocalScan(dim, d_state, ssm_ratio, orders, window, chunk)
        self.se = SqueezeExcite(dim, reduction)

    def forward(self, image: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        image, events = self.iss(image, events)
        return self.se(self.lss(image + events))
