"""Invertible fine decoder stages of IID-RDepth: affine couplings with Lipschitz-bounded
sub-networks and a bounded scale (spec §3.1), their inverse and a bi-Lipschitz probe.

Why bi-Lipschitz: the restored features are only supervised through the depth the decoder makes of
them; if the decoder is bi-Lipschitz, ``L1 |f - g| <= |dec(f) - dec(g)| <= L2 |f - g|``, so a depth
error bounds the feature error from both sides and every diffusion step is held to the same
target (the paper's "feature deviation among steps"). The sheet's reading of the figure, on the
two channel halves ``(a, b)`` of a map:

    b' = b * sigma(G(a)) + H(a),   sigma = exp(s tanh(.)) in [e^-s, e^s]
    a' = a + G2(b')

Each sub-network is ``c tanh(gamma) tanh(net(x))`` with ``net`` made of convolutions whose
operator norm is at most 1 (``spectral_bounded``) and 1-Lipschitz activations, so its Lipschitz
constant is at most ``c`` and every output element lies in ``[-c, c]``. ``gamma`` starts at 0: a
fresh stack is exactly the identity, so training starts from the frozen baseline.

An affine coupling is bi-Lipschitz only on a bounded set (its scale term multiplies ``b``); the
additive one (``sigma = 1``) is bi-Lipschitz everywhere. ``InvertibleStack.configured_bounds(R)``
gives the bounds that hold for inputs whose elements lie in ``[-R, R]``; ``lipschitz_bounds``
measures them on pairs of inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import UsageError

COUPLINGS = ("affine", "additive")
LIPSCHITZ_METHODS = ("spectral", "none")


@dataclass(frozen=True)
class CouplingSettings:
    """The coupling stack's options (spec §3.1: all [unknown]; defaults [hyp], docs/iid_rdepth.md)."""

    coupling: str = "affine"  # affine (the sheet's reading) or additive (sigma = 1)
    blocks: int = 1  # coupling blocks per fine stage (the figure draws one); halves swap roles between blocks
    scale_bound: float = 0.5  # s: sigma in [exp(-s), exp(s)]
    sub_lipschitz: float = 0.9  # c: Lipschitz bound (and output bound) of G, H and G2
    lipschitz_method: str = "spectral"  # spectral: operator norms <= 1; none: unbounded (an ablation)
    hidden: int | None = None  # sub-network width; None: the stage's half width

    def __post_init__(self) -> None:
        if self.coupling not in COUPLINGS:
            raise UsageError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.lipschitz_method not in LIPSCHITZ_METHODS:
            raise UsageError(f"lipschitz_method must be one of {LIPSCHITZ_METHODS}, got {self.lipschitz_method!r}")
        if self.blocks < 1 or self.scale_bound < 0 or self.sub_lipschitz <= 0:
            raise UsageError(f"couplings need blocks >= 1, scale_bound >= 0 and sub_lipschitz > 0, got "
                             f"{self.blocks}, {self.scale_bound}, {self.sub_lipschitz}")
        if self.hidden is not None and self.hidden < 1:
            raise UsageError(f"coupling hidden width must be >= 1, got {self.hidden}")


def spectral_bounded(weight: torch.Tensor) -> torch.Tensor:
    """A convolution weight divided by an upper bound of its operator norm (spectral normalization).

    The exact largest singular value of the (out, in * kh * kw) matrix is computed every call (the
    matrices here are small), times ``sqrt(kh * kw)``: every input element enters ``kh * kw``
    patches, so ``|conv x| <= sqrt(kh kw) |W| |x|``. Exact, unlike power iteration, which
    underestimates the norm and can let the bound slip.
    """
    kernel = weight.shape[-1] * weight.shape[-2]
    return weight / (torch.linalg.matrix_norm(weight.flatten(1), ord=2) * math.sqrt(kernel))


class BoundedConv2d(nn.Conv2d):
    """A same-padded convolution whose operator norm is at most 1 (``bounded``) or unconstrained."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bounded: bool) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        self.bounded = bounded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, spectral_bounded(self.weight) if self.bounded else self.weight, self.bias)


class LipschitzNet(nn.Module):
    """``c tanh(gamma) tanh(conv1x1(leaky_relu(conv3x3(x))))``: Lipschitz <= c, outputs in [-c, c]
    (with spectral bounds); ``gamma = 0`` at the start makes it output exact zeros."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, bound: float, bounded: bool) -> None:
        super().__init__()
        self.conv1 = BoundedConv2d(in_channels, hidden, 3, bounded)
        self.conv2 = BoundedConv2d(hidden, out_channels, 1, bounded)
        self.bound = bound
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.conv2(F.leaky_relu(self.conv1(x), 0.2)))
        return (self.bound * torch.tanh(self.gain)) * y


class AffineCoupling(nn.Module):
    """One block on a (B, C, H, W) map; ``flip`` exchanges the roles of the two channel halves."""

    def __init__(self, channels: int, settings: CouplingSettings, flip: bool) -> None:
        super().__init__()
        if channels % 2:
            raise UsageError(f"a coupling splits channels in two halves; got {channels} channels")
        half, bounded = channels // 2, settings.lipschitz_method == "spectral"
        hidden = settings.hidden or half
        self.flip, self.affine, self.scale_bound = flip, settings.coupling == "affine", settings.scale_bound
        # G (the scale's logit) and H share one trunk: their joint Lipschitz bound is c.
        self.gh = LipschitzNet(half, 2 * half if self.affine else half, hidden, settings.sub_lipschitz, bounded)
        self.g2 = LipschitzNet(half, half, hidden, settings.sub_lipschitz, bounded)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = x.chunk(2, dim=1)
        return (second, first) if self.flip else (first, second)

    def _join(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat((b, a) if self.flip else (a, b), dim=1)

    def _scale_shift(self, a: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        out = self.gh(a)
        if not self.affine:
            return None, out
        logit, shift = out.chunk(2, dim=1)
        return torch.exp(self.scale_bound * torch.tanh(logit)), shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._halves(x)
        scale, shift = self._scale_shift(a)
        b = (b if scale is None else b * scale) + shift
        return self._join(a + self.g2(b), b)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        a, b = self._halves(y)
        a = a - self.g2(b)
        scale, shift = self._scale_shift(a)
        b = b - shift
        return self._join(a, b if scale is None else b / scale)


def _norm_2x2(p: float, q: float, r: float) -> float:
    """Spectral norm of the non-negative lower-triangular matrix [[p, 0], [q, r]]."""
    trace = p * p + q * q + r * r
    return math.sqrt((trace + math.sqrt(max(trace * trace - 4 * (p * r) ** 2, 0.0))) / 2)


class InvertibleStack(nn.Module):
    """``blocks`` couplings with alternating halves: an invertible map of (B, C, H, W) maps."""

    def __init__(self, channels: int, settings: CouplingSettings) -> None:
        super().__init__()
        self.settings = settings
        self.blocks = nn.ModuleList(AffineCoupling(channels, settings, flip=i % 2 == 1) for i in range(settings.blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.blocks):
            y = block.inverse(y)
        return y

    def configured_bounds(self, radius: float) -> tuple[float, float]:
        """(L1, L2) with ``L1 |x - y| <= |f(x) - f(y)| <= L2 |x - y|`` for all inputs whose elements
        lie in ``[-radius, radius]``, from the configured ``c`` and ``s`` (valid when the sub-networks
        honour ``c``, i.e. with ``lipschitz_method="spectral"``).

        Per block, with ``e = e^s`` (1 for additive couplings) and ``R_b`` the bound on ``|b|``:
        the first half-step has the norm of [[1, 0], [m, e]], ``m = c (1 + R_b s e)``, its inverse
        that of [[1, 0], [c e (1 + R_b s e), e]]; the second (additive) half-step and its inverse that of
        [[1, c], [0, 1]]. Outputs grow to ``|b'| <= e R_b + c``, ``|a'| <= R_a + c`` before the
        halves swap roles.
        """
        c = self.settings.sub_lipschitz
        s = self.settings.scale_bound if self.settings.coupling == "affine" else 0.0
        e = math.exp(s)
        additive = _norm_2x2(1.0, c, 1.0)
        upper, inverse_upper = 1.0, 1.0
        r_a = r_b = float(radius)
        for _ in self.blocks:
            upper *= _norm_2x2(1.0, c * (1 + r_b * s * e), e) * additive
            inverse_upper *= _norm_2x2(1.0, c * e * (1 + r_b * s * e), e) * additive
            r_a, r_b = e * r_b + c, r_a + c  # b' and a' become the next block's a and b
        return 1.0 / inverse_upper, upper


@dataclass(frozen=True)
class LipschitzProbe:
    """Measured slopes: ``lower`` and ``upper`` ``|f(x) - f(y)| / |x - y|`` over the probed pairs, whose
    elements all lay in ``[-radius, radius]`` (the domain to compare ``configured_bounds`` on)."""

    lower: float
    upper: float
    radius: float

    def within(self, bounds: tuple[float, float]) -> bool:
        return bounds[0] <= self.lower and self.upper <= bounds[1]


@torch.no_grad()
def lipschitz_bounds(fn, inputs: torch.Tensor, rounds: int = 16, scales: tuple[float, ...] = (1e-2, 1e-1, 1.0),
                     seed: int = 0) -> LipschitzProbe:
    """Empirical bi-Lipschitz bounds of ``fn`` around ``inputs`` (B, ...), over random pairs.

    Each round pairs every input with a random perturbation of every relative size in ``scales``
    (local slopes) and with another input (global slopes); norms are over each sample's whole map.
    The true bounds lie outside the measured interval, so a measurement outside the configured
    bounds proves the configuration wrong, one inside supports it.
    """
    generator = torch.Generator().manual_seed(seed)
    out = fn(inputs)
    ratios, radius = [], float(inputs.abs().max())
    for _ in range(rounds):
        for scale in scales:
            delta = torch.randn(inputs.shape, generator=generator).to(inputs) * (scale * float(inputs.std()))
            moved = inputs + delta
            radius = max(radius, float(moved.abs().max()))
            ratios.append((fn(moved) - out).flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1))
        order = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
        apart = (inputs - inputs[order]).flatten(1).norm(dim=1)
        ratios.append(((out - out[order]).flatten(1).norm(dim=1) / apart.clamp_min(1e-30))[apart > 0])
    ratios = torch.cat(ratios)
    return LipschitzProbe(float(ratios.min()), float(ratios.max()), radius)
