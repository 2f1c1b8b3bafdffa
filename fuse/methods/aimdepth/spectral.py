"""SCPG, Spectral Cross-modal Prior Guidance: AIMDepth's parameter-free input alignment (spec §2).

Two exchanges through the 2-D DFT ``F(x) = A(x) e^{j P(x)}`` of each channel:

* **EAT** (Event-targeted Amplitude Transfer, image -> events): inside a low-frequency mask ``M``
  each event channel's amplitude is replaced by the image's, ``A' = (1 - M mix) A_E + M mix A_I``,
  and the channel is rebuilt with its own phase, ``E~ = Re F^-1(A' e^{j P_E})``.
* **IPE** (Image-targeted Phase Enhancement, events -> image): the two event channels with the
  largest L1 norm of their amplitude spectrum give their phase maps, which are concatenated to the
  image (C + 2 channels).

Conventions (``SpectralSettings``); the spec leaves most of them open:

* ``beta = 0.01`` [seed].
* ``mask = "sheet"`` [seed]: ``|h| <= beta H`` and ``|w| <= beta W`` on signed integer frequencies
  (DC = 0); at 260 x 346 that is ``|h| <= 2``, ``|w| <= 3``, 5 x 7 = 35 bins [derived].
  ``"fda"`` [assumed, Fourier Domain Adaptation's rule]: one half-size ``b = floor(min(H, W) beta)``
  for both axes, 5 x 5 = 25 bins at 260 x 346 [derived]. Both masks are symmetric under negating the
  frequency, so the rebuilt spectrum stays Hermitian and its inverse is real.
* ``mix = 1`` [assumed]: full replacement inside the mask, the sheet's reading of "replace"; the
  paper may have a weight lambda there [unknown].
* ``image_amplitude = "gray"`` [assumed]: a multi-channel image gives the amplitude of its channel
  mean; ``"mean"`` averages the per-channel amplitudes instead. Both agree for one channel (MVSEC).
* ``ipe_source = "raw"`` [assumed, as the sheet]: IPE reads the input events; ``"eat"`` reads EAT's
  output.
* ``phase_scale = "radians"`` [assumed]: phases as ``torch.angle`` gives them, in [-pi, pi];
  ``"unit"`` divides them by pi. Phase maps are image-sized and not fftshift-ed [assumed].

FFTs run in float32 (float64 stays float64), whatever the input dtype, and the outputs are cast
back: half-precision FFTs are inexact and limited to power-of-two sizes on CUDA.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fuse.errors import ConfigError, UsageError

__all__ = [
    "IMAGE_AMPLITUDES",
    "IPE_SOURCES",
    "MASK_CONVENTIONS",
    "PHASE_SCALES",
    "SpectralSettings",
    "amplitude_transfer",
    "low_frequency_mask",
    "phase_maps",
    "spectral_prior",
    "top_amplitude_channels",
]

MASK_CONVENTIONS = ("sheet", "fda")
IMAGE_AMPLITUDES = ("gray", "mean")
IPE_SOURCES = ("raw", "eat")
PHASE_SCALES = ("radians", "unit")

# beta * n is floored to a whole half-width; this slack keeps e.g. 0.29 * 100 = 28.999... at 29.
_FLOOR_SLACK = 1e-9


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    """Reject a setting outside its choices, naming the field and the choices."""
    if value not in allowed:
        raise ConfigError(f"SCPG setting '{field}' is {value!r}; allowed: {', '.join(map(repr, allowed))}")


def _check_range(field: str, value: object, low: float, high: float) -> None:
    """Reject a non-number or a number outside [low, high] (NaN included), naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"SCPG setting '{field}' is {value!r}; allowed: a number in [{low}, {high}]")


@dataclass(frozen=True)
class SpectralSettings:
    """SCPG's choices; see the module docstring for each one's source."""

    beta: float = 0.01
    mask: str = "sheet"
    mix: float = 1.0
    image_amplitude: str = "gray"
    ipe_source: str = "raw"
    phase_scale: str = "radians"

    def __post_init__(self) -> None:
        _check_range("beta", self.beta, 0.0, 0.5)
        _check_range("mix", self.mix, 0.0, 1.0)
        _check_choice("mask", self.mask, MASK_CONVENTIONS)
        _check_choice("image_amplitude", self.image_amplitude, IMAGE_AMPLITUDES)
        _check_choice("ipe_source", self.ipe_source, IPE_SOURCES)
        _check_choice("phase_scale", self.phase_scale, PHASE_SCALES)


def _signed_frequencies(n: int, device: torch.device | str | None) -> torch.Tensor:
    """Integer frequency of each fft index (k or k - n), rounded because fftfreq divides by n * (1/n)."""
    return torch.fft.fftfreq(n, d=1.0 / n, device=device).round().long()


def _half_width(fraction: float, n: int) -> int:
    """Largest integer frequency kept on an axis: floor(fraction * n)."""
    return math.floor(fraction * n + _FLOOR_SLACK)


def low_frequency_mask(height: int, width: int, beta: float, convention: str = "sheet",
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (H, W) mask in torch.fft.fft2's (unshifted) layout: True on the low frequencies.

    Working on signed frequencies avoids fftshift and its odd/even centre rules.
    """
    _check_choice("mask", convention, MASK_CONVENTIONS)
    if convention == "sheet":
        half_h, half_w = _half_width(beta, height), _half_width(beta, width)
    else:
        half_h = half_w = _half_width(beta, min(height, width))
    rows = _signed_frequencies(height, device).abs() <= half_h
    cols = _signed_frequencies(width, device).abs() <= half_w
    return rows[:, None] & cols[None, :]


def _spectrum(x: torch.Tensor) -> torch.Tensor:
    """fft2 over the last two axes in at least float32 (half-precision FFTs are inexact)."""
    return torch.fft.fft2(x.to(torch.promote_types(x.dtype, torch.float32)))


def _check_maps(name: str, x: torch.Tensor) -> None:
    """Require a (B, channels, H, W) batch."""
    if x.dim() != 4:
        raise UsageError(f"SCPG: {name} must be (B, channels, H, W); got shape {tuple(x.shape)}")


def _check_pair(image: torch.Tensor, events: torch.Tensor) -> None:
    """Require image and events batches of one size and one resolution."""
    _check_maps("image", image)
    _check_maps("events", events)
    if image.shape[0] != events.shape[0] or image.shape[-2:] != events.shape[-2:]:
        raise UsageError(f"SCPG: image {tuple(image.shape)} and events {tuple(events.shape)} must share "
                         "batch size, height and width; resize the events to the image first")


def _image_amplitude(image: torch.Tensor, source: str) -> torch.Tensor:
    """(B, 1, H, W) amplitude that EAT writes into every event channel."""
    if source == "gray":
        return _spectrum(image.mean(dim=1, keepdim=True)).abs()
    return _spectrum(image).abs().mean(dim=1, keepdim=True)


def amplitude_transfer(image: torch.Tensor, events: torch.Tensor, settings: SpectralSettings) -> torch.Tensor:
    """EAT: each event channel's low-frequency amplitudes replaced by the image's, own phase kept.

    image (B, C, H, W), events (B, K, H, W) -> (B, K, H, W) in the events' dtype. The spectrum is
    rebuilt with torch.polar from the phase so that bins with zero event amplitude still take the
    image's amplitude (a ratio A'/A_E would be undefined there).
    """
    _check_pair(image, events)
    height, width = events.shape[-2:]
    mask = low_frequency_mask(height, width, settings.beta, settings.mask, device=events.device)
    weight = mask.float() * settings.mix
    spectrum = _spectrum(events)
    events_amplitude = spectrum.abs()
    image_amplitude = _image_amplitude(image, settings.image_amplitude)
    amplitude = (1 - weight) * events_amplitude + weight * image_amplitude.to(events_amplitude.dtype)
    rebuilt = torch.polar(amplitude, torch.angle(spectrum))
    return torch.fft.ifft2(rebuilt).real.to(events.dtype)


def top_amplitude_channels(events: torch.Tensor, count: int = 2) -> torch.Tensor:
    """(B, count) indices of the channels with the largest L1 norm of the FFT amplitude, per sample.

    Largest first; equal norms keep the lower index first (a stable sort), so the choice is
    deterministic. The choice is discrete, so it carries no gradient.
    """
    _check_maps("events", events)
    channels = events.shape[1]
    if not 1 <= count <= channels:
        raise UsageError(f"SCPG: cannot pick {count} of the events' {channels} channel(s); "
                         "count must be between 1 and the number of channels")
    norms = _spectrum(events.detach()).abs().sum(dim=(-2, -1))
    order = torch.sort(-norms, dim=1, stable=True).indices
    return order[:, :count]


def phase_maps(events: torch.Tensor, channels: torch.Tensor, scale: str = "radians") -> torch.Tensor:
    """(B, count, H, W): the FFT phase (angle of fft2, image-sized, unshifted) of the chosen channels.

    ``channels`` is (B, count) as from top_amplitude_channels; output in the events' dtype.
    """
    _check_choice("phase_scale", scale, PHASE_SCALES)
    _check_maps("events", events)
    samples = torch.arange(events.shape[0], device=events.device)[:, None]
    phase = torch.angle(_spectrum(events[samples, channels.to(events.device)]))
    if scale == "unit":
        phase = phase / math.pi
    return phase.to(events.dtype)


def spectral_prior(image: torch.Tensor, events: torch.Tensor,
                   settings: SpectralSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """SCPG: (image with the two phase maps concatenated -> (B, C+2, H, W), EAT events (B, K, H, W))."""
    _check_pair(image, events)
    if events.shape[1] < 2:
        raise UsageError(f"SCPG: events have {events.shape[1]} channel(s); IPE needs at least 2 "
                         "(AIMDepth uses a 5-bin voxel grid)")
    transferred = amplitude_transfer(image, events, settings)
    source = events if settings.ipe_source == "raw" else transferred
    phases = phase_maps(source, top_amplitude_channels(source, 2), settings.phase_scale)
    return torch.cat([image, phases.to(image.dtype)], dim=1), transferred
