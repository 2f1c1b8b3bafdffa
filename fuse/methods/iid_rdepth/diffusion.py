"""IID-RDepth's feature restorer: a small conditional U-Net run as a DDIM sampler over the frozen
encoder's features (spec §3, §3.2, §7).

The frozen encoder's tapped features are treated as a degraded version of the features that would
give the right depth. The sampler starts from the degraded feature forward-diffused to
``start_level`` of the noise schedule ("Deg" plus "Noise" in the figure's inset), and runs
``steps`` DDIM updates; the condition is the deepest two tapped features, brought to one grid and
concatenated ("mutual conditional maps"). Every diffusion hyper-parameter is unknown (§3.2), so
each is a ``RestorerSettings`` field; ``docs/iid_rdepth.md`` gives the default's source.

The restorer is trained only through the depth loss (no feature targets exist, §1), so gradients
flow through the sampler: through every step (``grad_steps="all"``) or the last (``"last"``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import UsageError

SCHEDULES = ("linear", "cosine")
PARAMETRIZATIONS = ("x0_residual", "x0", "eps")
GRAD_STEPS = ("all", "last")


@dataclass(frozen=True)
class RestorerSettings:
    """The restorer's options (spec §3.2: all [unknown]; defaults [hyp], docs/iid_rdepth.md)."""

    steps: int = 4  # T: DDIM steps at inference (0: no restorer)
    train_steps: int | None = None  # DDIM steps while training (None: ``steps``)
    schedule: str = "linear"  # beta schedule: linear (DDPM, 1e-4..0.02) or cosine (Nichol & Dhariwal)
    schedule_length: int = 1000  # N: timesteps of the schedule the DDIM steps are spread over
    start_level: float = 0.5  # the start point's noise level as a fraction of N (1: pure noise)
    eta: float = 0.0  # DDIM stochasticity (0: deterministic DDIM; 1: DDPM-like)
    parametrization: str = "x0_residual"  # x0_residual: x0 = degraded + net; x0: net; eps: noise
    width: int = 64  # the U-Net's first-level width (then x2, x2)
    grad_steps: str = "all"  # backpropagate through every sampler step or only the last
    eval_seed: int | None = 0  # in eval mode the start noise comes from this seed (None: global RNG)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.parametrization not in PARAMETRIZATIONS:
            raise UsageError(f"parametrization must be one of {PARAMETRIZATIONS}, got {self.parametrization!r}")
        if self.grad_steps not in GRAD_STEPS:
            raise UsageError(f"grad_steps must be one of {GRAD_STEPS}, got {self.grad_steps!r}")
        if not 0 < self.start_level <= 1 or self.eta < 0 or self.width < 1 or self.schedule_length < 2:
            raise UsageError(f"the restorer needs 0 < start_level <= 1, eta >= 0, width >= 1 and schedule_length >= "
                             f"2, got {self.start_level}, {self.eta}, {self.width}, {self.schedule_length}")
        for name in ("steps", "train_steps"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= self.start_index + 1:
                raise UsageError(f"diffusion {name} must be between 0 and {self.start_index + 1} (the schedule "
                                 f"positions up to start_level), got {value}")

    @property
    def start_index(self) -> int:
        """The schedule position the sampler starts from."""
        return max(0, round(self.start_level * self.schedule_length) - 1)


def alpha_bars(schedule: str, length: int) -> torch.Tensor:
    """Cumulative signal fractions ``alpha_bar_t``, t = 0 .. length - 1 (float64)."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 2e-2, length, dtype=torch.float64)
        return torch.cumprod(1 - betas, dim=0)
    steps = torch.arange(length + 1, dtype=torch.float64) / length
    f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return F.pad(torch.cat((args.sin(), args.cos()), dim=1), (0, dim % 2))


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep as a per-channel scale and shift in between."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(time)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class ConditionalUNet(nn.Module):
    """Seven blocks as in the figure's inset: three down (widths w, 2w, 2w; stride-2 convolutions
    between them), a bottleneck, three up (upsampled to the skip's size, concatenated with it).
    The output convolution starts at zero."""

    MULTIPLIERS = (1, 2, 2)

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        time_dim = 4 * width
        self.time = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.width = width
        widths = [width * m for m in self.MULTIPLIERS]
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down = nn.ModuleList(ResBlock(a, b, time_dim) for a, b in zip([width] + widths[:-1], widths))
        self.downsample = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[:-1])
        self.middle = ResBlock(widths[-1], widths[-1], time_dim)
        ups = list(reversed(widths))
        self.up = nn.ModuleList(ResBlock(a + b, b, time_dim) for a, b in zip([widths[-1]] + ups[:-1], ups))
        self.out_norm = nn.GroupNorm(_groups(width), width)
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = self.time(timestep_embedding(t, self.width))
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, time)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, time)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat((h, skip), dim=1), time)
        return self.out(F.silu(self.out_norm(h)))


class FeatureRestorer(nn.Module):
    """DDIM sampling of restored feature maps from degraded ones, conditioned on a map.

    ``forward(degraded, condition)``: (B, C, h, w) degraded features (every restored level
    concatenated) and a (B, C_cond, h, w) condition -> restored (B, C, h, w).
    """

    def __init__(self, channels: int, condition_channels: int, settings: RestorerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.net = ConditionalUNet(channels + condition_channels, channels, settings.width)
        self.register_buffer("alpha_bar", alpha_bars(settings.schedule, settings.schedule_length).float(),
                             persistent=False)

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` schedule positions from the start level down to 0, evenly spaced and distinct."""
        start = self.settings.start_index
        if steps == 1:
            return [start]
        return [round(start - i * start / (steps - 1)) for i in range(steps)]

    def _start_noise(self, like: torch.Tensor) -> torch.Tensor:
        seed = self.settings.eval_seed
        if self.training or seed is None:
            return torch.randn_like(like)
        generator = torch.Generator(device=like.device).manual_seed(seed)
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def _predict(self, x: torch.Tensor, degraded: torch.Tensor, condition: torch.Tensor,
                 t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) predicted at timestep ``t``."""
        a = self.alpha_bar[t]
        out = self.net(torch.cat((x, condition), dim=1), torch.full((x.shape[0],), t, device=x.device))
        if self.settings.parametrization == "eps":
            return (x - (1 - a).sqrt() * out) / a.sqrt(), out
        x0 = degraded + out if self.settings.parametrization == "x0_residual" else out
        return x0, (x - a.sqrt() * x0) / (1 - a).sqrt()

    def forward(self, degraded: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        settings = self.settings
        steps = settings.train_steps if self.training and settings.train_steps is not None else settings.steps
        if steps == 0:
            return degraded
        times = self.timesteps(steps)
        a = self.alpha_bar[times[0]]
        x = a.sqrt() * degraded + (1 - a).sqrt() * self._start_noise(degraded)
        earlier_grad = torch.is_grad_enabled() and settings.grad_steps == "all"
        for t, t_next in zip(times[:-1], times[1:]):
            with torch.set_grad_enabled(earlier_grad):
                x0, eps = self._predict(x, degraded, condition, t)
                x = self._ddim_step(x0, eps, t, t_next)
        return self._predict(x, degraded, condition, times[-1])[0]

    def _ddim_step(self, x0: torch.Tensor, eps: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        """DDIM update from ``t`` to ``t_next`` (``eta`` > 0 adds fresh noise, DDPM-like)."""
        a, a_next = self.alpha_bar[t], self.alpha_bar[t_next]
        sigma = self.settings.eta * ((1 - a_next) / (1 - a) * (1 - a / a_next)).clamp(min=0).sqrt()
        x = a_next.sqrt() * x0 + (1 - a_next - sigma ** 2).clamp(min=0).sqrt() * eps
        return x + sigma * torch.randn_like(x) if self.settings.eta > 0 else x
