"""Controlled degradations with a severity level, for robustness comparisons (issue 17).

A *condition* is one degradation of one input at a severity from 0 (the input, unchanged) to 5;
a comparison reports each method's metric against the severity of each condition. Unlike the
training degradations (``fuse.data.degradations``), whose parameters are drawn at random per
sample, a condition's parameters are fixed by its severity, so severity is the only knob and
two runs of one condition degrade every frame in the same way.

* images: uint8 RGB ``H x W x 3``; the result is uint8 of the same shape. The conditions reuse
  the transforms of ``fuse.data.degradations`` (``LowLight``, ``MotionBlur``,
  ``change_brightness``, ``ImageCorruption``'s mask rectangles).
* events: an :class:`EventWindow`, the ``(N, 4)`` float64 rows ``t, x, y, p`` of one time
  window as ``MvsecRecording.read_events`` returns them (t in seconds, x and y integer pixel
  coordinates, polarity p in {-1, +1}; the on-disk MVSEC and synthetic files store
  ``x, y, t, p`` and 0 may stand for -1 there, the reader converts both), with the sensor size
  and the window's bounds, which hot pixels and background noise need to place events where
  there are none.

Reproducibility: every condition draws from the ``np.random.Generator`` it is given, and
:func:`condition_rng` makes that generator from (seed, frame index) alone, so a frame is
degraded identically whatever the order of frames or the number of workers. The generator
does not depend on the condition or its severity: levels of one condition share their random
numbers (common random numbers), so e.g. the events dropped at level 2 are also dropped at
level 3, and a metric's curve against severity is not blurred by independent draws per level.

Parameters per level are the ``table`` of each class; ``docs/robustness.md`` lists them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Generic, TypeVar

import numpy as np

from fuse.data.degradations import ImageCorruption, LowLight, MotionBlur, change_brightness
from fuse.errors import UsageError

__all__ = ["CONDITIONS", "SEVERITIES", "TARGETS", "Condition", "EventWindow", "condition_rng",
           "parse_condition"]

SEVERITIES = range(6)
TARGETS = ("image", "events")

X = TypeVar("X")


def condition_rng(seed: int, frame_index: int) -> np.random.Generator:
    """The generator a condition draws from for one frame: a function of (seed, frame) only.

    The frame is numpy's spawn key (the frame's stream is child ``frame_index`` of ``seed``),
    not a second entropy word: ``default_rng([seed, 0])`` is the same generator as
    ``default_rng(seed)`` (entropy is zero-padded), so frame 0 would repeat any other stream
    seeded with the plain seed, such as a test input's.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(frame_index,)))


@dataclass(frozen=True, eq=False)
class EventWindow:
    """The events of one time window on a ``height x width`` sensor.

    ``events`` holds rows ``t, x, y, p`` (float64, p in {-1, +1}) with ``start <= t <= stop``;
    conditions that add events need the window's bounds, not just the span of the events in it
    (a window may be nearly empty, which is when added noise matters most). Compared by
    identity (``eq=False``): field-wise equality of arrays has no single truth value.
    """

    events: np.ndarray
    height: int
    width: int
    start: float
    stop: float

    def __post_init__(self) -> None:
        if self.events.ndim != 2 or self.events.shape[1] != 4:
            raise ValueError(f"events must have shape (N, 4) with columns t, x, y, p; got {self.events.shape}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"sensor size must be positive, got {self.height}x{self.width}")
        if not np.isfinite(self.start) or not self.stop > self.start:
            raise ValueError(f"window must satisfy start < stop, got [{self.start}, {self.stop}]")
        if not np.all(np.abs(self.events[:, 3]) == 1):
            raise ValueError("event polarity must be -1 or +1 (convert 0/1 polarities first)")

    @property
    def duration(self) -> float:
        return self.stop - self.start

    def with_events(self, events: np.ndarray) -> "EventWindow":
        return replace(self, events=events)


@dataclass(frozen=True)
class Condition(ABC, Generic[X]):
    """One degradation at one severity; ``apply`` at severity 0 returns its input itself.

    Subclasses set ``name``, ``target`` and ``table`` (severity 1..5 -> the parameter of that
    level) and implement ``_degrade`` for one level's parameter.
    """

    name: ClassVar[str]
    target: ClassVar[str]
    table: ClassVar[dict[int, object]]

    severity: int

    def __post_init__(self) -> None:
        if not isinstance(self.severity, int) or self.severity not in SEVERITIES:
            raise UsageError(f"severity of {self.target}:{self.name} must be 0..5, got {self.severity!r}")

    @property
    def label(self) -> str:
        """The spelling :func:`parse_condition` reads, e.g. ``events:dropout@3``."""
        return f"{self.target}:{self.name}@{self.severity}"

    @property
    def parameter(self) -> object:
        """This level's entry of ``table``; ``None`` at severity 0."""
        return self.table.get(self.severity)

    def apply(self, x: X, rng: np.random.Generator) -> X:
        """``x`` degraded at this severity; the input is never modified."""
        self._check(x)
        if self.severity == 0:
            return x
        return self._degrade(x, self.parameter, rng)

    @abstractmethod
    def _check(self, x: X) -> None:
        """Refuse an input of the wrong kind before anything is drawn."""

    @abstractmethod
    def _degrade(self, x: X, parameter: object, rng: np.random.Generator) -> X:
        """``x`` degraded with one level's ``parameter``."""


class ImageCondition(Condition[np.ndarray]):
    target = "image"

    def _check(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"{self.label} expects a uint8 H x W x 3 image, got {image.dtype} {image.shape}")


class EventCondition(Condition[EventWindow]):
    target = "events"

    def _check(self, window: EventWindow) -> None:
        if not isinstance(window, EventWindow):
            raise TypeError(f"{self.label} expects an EventWindow, got {type(window).__name__}")


# ----------------------------------------------------------------------------- images


class LowLightCondition(ImageCondition):
    """A dim, photon-limited exposure: ``LowLight`` with its signal scaled by ``darken``
    (400 photons at white and 2 DN read noise, its defaults, so noise grows as light drops)."""

    name = "low_light"
    table = {1: 0.5, 2: 0.3, 3: 0.2, 4: 0.1, 5: 0.05}

    def _degrade(self, image: np.ndarray, darken: float, rng: np.random.Generator) -> np.ndarray:
        return LowLight(darken=darken)(image, rng)


class MotionBlurCondition(ImageCondition):
    """Camera-motion blur: ``MotionBlur`` of this many pixels, at an angle drawn uniformly
    in [0, 180) degrees per frame (the direction of motion is not part of the severity)."""

    name = "motion_blur"
    table = {1: 3, 2: 7, 3: 11, 4: 17, 5: 25}

    def _degrade(self, image: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
        return MotionBlur(length=length)(image, rng)


class OverexposureCondition(ImageCondition):
    """A too-long exposure: every pixel times this gain, clipped at 255 (``change_brightness``).
    Deterministic: it draws nothing, since a fixed gain is the whole effect."""

    name = "overexposure"
    table = {1: 1.5, 2: 2.0, 3: 3.0, 4: 4.0, 5: 6.0}

    def _degrade(self, image: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
        return change_brightness(image, gain)


class GaussianNoiseCondition(ImageCondition):
    """Additive Gaussian noise of this standard deviation (DN of 255), independent per pixel
    and channel, rounded and clipped to uint8 like the other image transforms."""

    name = "gaussian_noise"
    table = {1: 5.0, 2: 10.0, 3: 20.0, 4: 35.0, 5: 50.0}

    def _degrade(self, image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        noisy = image + rng.normal(0.0, sigma, size=image.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


class OcclusionCondition(ImageCondition):
    """Black occluding rectangles: ``ImageCorruption``'s mask effect, always applied, with
    (count, ratio) = this many rectangles of int(ratio*H)+1 rows x int(ratio*W)+1 columns at
    uniform positions (they may overlap)."""

    name = "occlusion"
    table = {1: (1, 0.1), 2: (2, 0.15), 3: (3, 0.2), 4: (4, 0.25), 5: (5, 0.3)}

    def _degrade(self, image: np.ndarray, level: tuple[int, float], rng: np.random.Generator) -> np.ndarray:
        count, ratio = level
        corruption = ImageCorruption(brightness_range=None, region_prob=1.0, num_regions=count,
                                     region_ratio=ratio, effects=("mask",))
        return corruption(image, rng)


# ----------------------------------------------------------------------------- events


def _random_polarities(count: int, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(count) < 0.5, -1.0, 1.0)


def _add_events(window: EventWindow, pixels: np.ndarray, times: np.ndarray, polarities: np.ndarray) -> EventWindow:
    """``window`` with events at flat pixel indices ``pixels`` added, sorted by time; on equal
    times the window's own events come first and keep their order (stable sort)."""
    added = np.stack([times, pixels % window.width, pixels // window.width, polarities], axis=1)
    events = np.concatenate([window.events, added.astype(np.float64)])
    return window.with_events(events[np.argsort(events[:, 0], kind="stable")])


class DropoutCondition(EventCondition):
    """Each event is lost with this probability (independently), the rest keep their order."""

    name = "dropout"
    table = {1: 0.1, 2: 0.2, 3: 0.4, 4: 0.6, 5: 0.8}

    def _degrade(self, window: EventWindow, p: float, rng: np.random.Generator) -> EventWindow:
        return window.with_events(window.events[rng.random(len(window.events)) >= p])


class HotPixelsCondition(EventCondition):
    """(share, rate): round(share * H * W) distinct pixels, drawn per frame, each firing as a
    Poisson process of ``rate`` events per second over the window with one polarity per pixel
    (a leaky pixel crosses its threshold in one direction)."""

    name = "hot_pixels"
    table = {1: (0.0005, 100.0), 2: (0.001, 200.0), 3: (0.002, 500.0), 4: (0.005, 1000.0), 5: (0.01, 2000.0)}

    def _degrade(self, window: EventWindow, level: tuple[float, float], rng: np.random.Generator) -> EventWindow:
        share, rate = level
        size = window.height * window.width
        hot = rng.choice(size, round(share * size), replace=False)
        counts = rng.poisson(rate * window.duration, len(hot))
        polarity = _random_polarities(len(hot), rng)
        times = rng.uniform(window.start, window.stop, counts.sum())
        return _add_events(window, np.repeat(hot, counts), times, np.repeat(polarity, counts))


class BackgroundNoiseCondition(EventCondition):
    """Background activity: events at this rate per pixel per second, uniform over the sensor
    and the window, polarity ±1 with equal odds (Poisson count, as the demo's simulator)."""

    name = "background_noise"
    table = {1: 0.1, 2: 0.3, 3: 1.0, 4: 3.0, 5: 10.0}

    def _degrade(self, window: EventWindow, rate: float, rng: np.random.Generator) -> EventWindow:
        size = window.height * window.width
        count = rng.poisson(rate * size * window.duration)
        pixels = rng.integers(0, size, count)
        times = rng.uniform(window.start, window.stop, count)
        return _add_events(window, pixels, times, _random_polarities(count, rng))


def _fold(times: np.ndarray, start: float, stop: float) -> np.ndarray:
    """``times`` reflected at the window's bounds (as often as needed) back into [start, stop]."""
    span = stop - start
    folded = stop - np.abs(np.mod(times - start, 2.0 * span) - span)
    return np.clip(folded, start, stop)  # stop - span may miss start by a rounding step


class TimeJitterCondition(EventCondition):
    """Timestamps plus Gaussian noise of this standard deviation (seconds), reflected back into
    the window, then sorted by time (stable). Reflection rather than clipping or dropping keeps
    every event, the window's span and an even event density at its ends, so only the timing
    changes; x, y and p travel with their event."""

    name = "time_jitter"
    table = {1: 1e-4, 2: 3e-4, 3: 1e-3, 4: 3e-3, 5: 1e-2}

    def _degrade(self, window: EventWindow, sigma: float, rng: np.random.Generator) -> EventWindow:
        events = window.events.copy()
        jittered = events[:, 0] + rng.normal(0.0, sigma, len(events))
        events[:, 0] = _fold(jittered, window.start, window.stop)
        return window.with_events(events[np.argsort(events[:, 0], kind="stable")])


class PolarityFlipCondition(EventCondition):
    """Each event's polarity is flipped with this probability (independently); 0.5 at level 5
    leaves no polarity information at all."""

    name = "polarity_flip"
    table = {1: 0.05, 2: 0.1, 3: 0.2, 4: 0.3, 5: 0.5}

    def _degrade(self, window: EventWindow, p: float, rng: np.random.Generator) -> EventWindow:
        events = window.events.copy()
        flip = rng.random(len(events)) < p
        events[flip, 3] = -events[flip, 3]
        return window.with_events(events)


CONDITIONS: dict[str, type[Condition]] = {
    cls.name: cls
    for cls in (LowLightCondition, MotionBlurCondition, OverexposureCondition, GaussianNoiseCondition,
                OcclusionCondition, DropoutCondition, HotPixelsCondition, BackgroundNoiseCondition,
                TimeJitterCondition, PolarityFlipCondition)
}


def parse_condition(text: str) -> Condition:
    """The condition spelled ``<target>:<name>@<severity>``, e.g. ``events:dropout@3``."""
    spelling = text.strip()
    target, colon, rest = spelling.partition(":")
    name, at, level = rest.partition("@")
    if not colon or not at:
        raise UsageError(f"condition {text!r} must be written target:name@severity, e.g. events:dropout@3")
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} in condition {text!r}; expected one of {', '.join(TARGETS)}")
    names = sorted(key for key, cls in CONDITIONS.items() if cls.target == target)
    if name not in names:
        raise UsageError(f"unknown {target} condition {name!r} in {text!r}; expected one of {', '.join(names)}")
    if level not in [str(severity) for severity in SEVERITIES]:
        raise UsageError(f"severity {level!r} in condition {text!r} must be an integer 0..5")
    return CONDITIONS[name](int(level))
