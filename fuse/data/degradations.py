"""Input degradations: the stage-2 corruptions of upstream FUSE (spec §5) plus two extras.

Every transform takes an explicit ``np.random.Generator`` so a (seed, epoch, index) triple
reproduces a sample exactly, whatever the number of data-loader workers.

Upstream FUSE (``dataset/transform.py::Image_Corruption``, used by
``dataset/eventscape_fuse.py``) does, per sample and before any resize:

* image (uint8 RGB): brightness × U(0.5, 1.5), rounded and clipped; then with p = 0.5 three
  rectangles of int(0.2·W) × int(0.2·H) at uniform positions, each one of Gaussian blur
  (kernel 25, σ 2), black mask or over-exposure (``cv2.convertScaleAbs``, α 2.5, β 200);
* voxel: with p = 0.5 three such rectangles, each blur or mask.

All rectangle positions are drawn first, then one effect per rectangle, each applied to the
result of the previous one. Upstream draws them with ``cv2.rectangle(..., thickness=-1)``
from (x, y) to (x + w, y + h), which paints both corners, so a rectangle spans w + 1 columns
and h + 1 rows (fewer where it is clipped at the border); that is reproduced here.

``LowLight`` and ``MotionBlur`` are NOT part of upstream FUSE; they are extra evaluation /
training degradations of this project and are off unless named.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

IMAGE_EFFECTS = ("blur", "mask", "overexpose")
VOXEL_EFFECTS = ("blur", "mask")


def change_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale a uint8 image, rounding and clipping back to uint8 (upstream ``change_brightness``)."""
    return np.clip(np.round(image.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def random_regions(
    height: int, width: int, count: int, ratio: float, rng: np.random.Generator
) -> list[tuple[slice, slice]]:
    """``count`` rectangles of int(ratio·H)+1 rows × int(ratio·W)+1 columns at uniform positions."""
    h, w = int(height * ratio), int(width * ratio)
    regions = []
    for _ in range(count):
        x = int(rng.integers(0, width - w + 1)) if width > w else 0
        y = int(rng.integers(0, height - h + 1)) if height > h else 0
        regions.append((slice(y, min(y + h + 1, height)), slice(x, min(x + w + 1, width))))
    return regions


def gaussian_blur_region(array: np.ndarray, region: tuple[slice, slice], ksize: int, sigma: float) -> np.ndarray:
    """Blur ``array`` (H×W or H×W×C) inside ``region`` as if the whole array had been blurred.

    Only a window of the region plus the kernel radius is filtered; inside the region the
    result equals blurring the full array (same reflect-101 border at the array edges).
    """
    rows, cols = region
    radius = ksize // 2
    height, width = array.shape[:2]
    top, left = max(rows.start - radius, 0), max(cols.start - radius, 0)
    bottom, right = min(rows.stop + radius, height), min(cols.stop + radius, width)
    window = np.ascontiguousarray(array[top:bottom, left:right])
    blurred = cv2.GaussianBlur(window, (ksize, ksize), sigma).reshape(window.shape)
    out = array.copy()
    out[rows, cols] = blurred[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
    return out


@dataclass(frozen=True, kw_only=True)
class RegionCorruption:
    """The rectangle step upstream's image and voxel corruptions share, on an H×W×C array.

    With probability ``region_prob``, ``num_regions`` rectangles are drawn (positions first, then
    one of ``effects`` per rectangle, as upstream draws them); subclasses add their own effects.
    """

    allowed_effects: ClassVar[tuple[str, ...]] = VOXEL_EFFECTS

    region_prob: float = 0.5
    num_regions: int = 3
    region_ratio: float = 0.2
    effects: tuple[str, ...] = VOXEL_EFFECTS
    blur_ksize: int = 25
    blur_sigma: float = 2.0

    def __post_init__(self) -> None:
        if not self.effects or set(self.effects) - set(self.allowed_effects):
            raise ValueError(f"effects must be a non-empty subset of {self.allowed_effects}, got {self.effects}")
        if self.blur_ksize % 2 != 1:
            raise ValueError(f"blur_ksize must be odd, got {self.blur_ksize}")

    def corrupt_regions(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``array`` with the rectangles applied; draws from ``rng`` in upstream's order (seeded runs repeat)."""
        if rng.random() >= self.region_prob:
            return array
        regions = random_regions(array.shape[0], array.shape[1], self.num_regions, self.region_ratio, rng)
        for region in regions:
            effect = self.effects[int(rng.integers(len(self.effects)))]
            array = self._apply(array, region, effect)
        return array

    def _apply(self, array: np.ndarray, region: tuple[slice, slice], effect: str) -> np.ndarray:
        if effect == "blur":
            return gaussian_blur_region(array, region, self.blur_ksize, self.blur_sigma)
        out = array.copy()
        out[region] = 0
        return out


@dataclass(frozen=True, kw_only=True)
class ImageCorruption(RegionCorruption):
    """Upstream ``Image_Corruption``: brightness change, then corrupted rectangles.

    The defaults are the stage-2 image settings. Works on any H×W×C array;
    ``brightness_range=None`` skips the brightness step. Brightness and ``overexpose`` need
    uint8 input.
    """

    allowed_effects: ClassVar[tuple[str, ...]] = IMAGE_EFFECTS

    brightness_range: tuple[float, float] | None = (0.5, 1.5)
    effects: tuple[str, ...] = IMAGE_EFFECTS
    exposure_alpha: float = 2.5
    exposure_beta: float = 200.0

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.brightness_range is not None:
            if array.dtype != np.uint8:
                raise TypeError(f"brightness change expects uint8, got {array.dtype}")
            array = change_brightness(array, rng.uniform(*self.brightness_range))
        return self.corrupt_regions(array, rng)

    def _apply(self, array: np.ndarray, region: tuple[slice, slice], effect: str) -> np.ndarray:
        if effect != "overexpose":
            return super()._apply(array, region, effect)
        if array.dtype != np.uint8:
            raise TypeError(f"over-exposure expects uint8, got {array.dtype}")
        out = array.copy()
        out[region] = cv2.convertScaleAbs(
            np.ascontiguousarray(array[region]), alpha=self.exposure_alpha, beta=self.exposure_beta
        ).reshape(array[region].shape)
        return out


@dataclass(frozen=True, kw_only=True)
class VoxelCorruption(RegionCorruption):
    """Upstream stage-2 voxel corruption on a bins×H×W float grid: blur or mask rectangles.

    Upstream passes the voxel through the same class as the image with brightness factor 1,
    whose ``round().clip(0, 255).astype(uint8)`` silently turns the float voxel into uint8
    (negative polarities become 0) before the rectangles. That is a bug, not part of the
    method described in the paper or spec §5, and is deliberately not reproduced: the voxel
    stays float and only the rectangles are applied.
    """

    def __call__(self, voxel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        hwc = np.ascontiguousarray(voxel.transpose(1, 2, 0))
        return np.ascontiguousarray(self.corrupt_regions(hwc, rng).transpose(2, 0, 1))


def _sample(value: float | tuple[float, float], rng: np.random.Generator) -> float:
    """A fixed value, or a uniform draw from a (low, high) range."""
    if isinstance(value, tuple):
        return float(rng.uniform(*value))
    return float(value)


@dataclass(frozen=True)
class LowLight:
    """Extra (not upstream): a dim exposure on a photon-limited sensor, on uint8 images.

    The linear signal is scaled by ``darken``, photon shot noise is drawn as Poisson with
    ``photons_at_white`` expected photons for a full-scale pixel, then Gaussian read noise of
    ``read_noise`` digital numbers (of 255) is added; the result is rounded and clipped.
    ``darken`` may be a (low, high) range sampled per call.
    """

    darken: float | tuple[float, float] = 0.2
    photons_at_white: float = 400.0
    read_noise: float = 2.0

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if image.dtype != np.uint8:
            raise TypeError(f"low-light degradation expects uint8, got {image.dtype}")
        expected = image.astype(np.float64) / 255.0 * _sample(self.darken, rng) * self.photons_at_white
        signal = rng.poisson(expected) / self.photons_at_white * 255.0
        noisy = signal + rng.normal(0.0, self.read_noise, size=image.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def motion_blur_kernel(length: int, angle_deg: float) -> np.ndarray:
    """Normalized linear blur kernel: a ``length``-pixel segment through the centre at ``angle_deg``."""
    if length < 1:
        raise ValueError(f"motion blur length must be >= 1, got {length}")
    size = length if length % 2 == 1 else length + 1
    centre = (size - 1) / 2.0
    kernel = np.zeros((size, size), dtype=np.float32)
    theta = np.deg2rad(angle_deg)
    t = np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, 4 * length)
    cols = np.rint(centre + t * np.cos(theta)).astype(int)
    rows = np.rint(centre - t * np.sin(theta)).astype(int)
    kernel[rows, cols] = 1.0
    return kernel / kernel.sum()


@dataclass(frozen=True)
class MotionBlur:
    """Extra (not upstream): linear camera-motion blur of a uint8 image.

    ``length`` (pixels) and ``angle`` (degrees, counter-clockwise from the x axis) may each be
    a fixed value or a (low, high) range sampled per call; the length is rounded to an int.
    Events are not blurred: that is the point of the event camera.
    """

    length: float | tuple[float, float] = 15
    angle: float | tuple[float, float] = (0.0, 180.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        length = max(1, int(round(_sample(self.length, rng))))
        kernel = motion_blur_kernel(length, _sample(self.angle, rng))
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


ArrayTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Chain:
    """Apply ``transforms`` one after the other."""

    transforms: tuple[ArrayTransform, ...]

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            array = transform(array, rng)
        return array


@dataclass(frozen=True)
class RandomApply:
    """Apply ``transform`` with probability ``p``."""

    p: float
    transform: ArrayTransform

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.transform(array, rng) if rng.random() < self.p else array


def _chain(first: ArrayTransform | None, second: ArrayTransform | None) -> ArrayTransform | None:
    if first is None or second is None:
        return first or second
    return Chain((first, second))


@dataclass(frozen=True)
class Degradation:
    """A pair of optional transforms applied to one sample: uint8 RGB image and float voxel.

    The image transform runs before the voxel transform, each drawing from the same generator.
    """

    image: ArrayTransform | None = None
    voxel: ArrayTransform | None = None

    def __call__(
        self, image: np.ndarray, voxel: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.image is not None:
            image = self.image(image, rng)
        if self.voxel is not None:
            voxel = self.voxel(voxel, rng)
        return image, voxel

    @property
    def is_identity(self) -> bool:
        return self.image is None and self.voxel is None

    def then(self, other: "Degradation") -> "Degradation":
        """This degradation followed by ``other`` (image after image, voxel after voxel)."""
        return Degradation(_chain(self.image, other.image), _chain(self.voxel, other.voxel))


def _fuse_stage2(image: dict | None = None, voxel: dict | None = None) -> Degradation:
    """Stage-2 corruptions; ``image`` / ``voxel`` override the dataclass defaults."""
    return Degradation(image=ImageCorruption(**(image or {})), voxel=VoxelCorruption(**(voxel or {})))


DEGRADATIONS: dict[str, Callable[..., Degradation]] = {
    "none": lambda: Degradation(),
    "fuse_stage2": _fuse_stage2,
    "low_light": lambda **kw: Degradation(image=LowLight(**kw)),
    "motion_blur": lambda **kw: Degradation(image=MotionBlur(**kw)),
    # Extra (not upstream): half of the images become a dim, noisy, shaken night exposure.
    "night": lambda p=0.5: Degradation(image=RandomApply(p, Chain((LowLight(darken=(0.05, 0.4)),
                                                                    MotionBlur(length=(1, 15)))))),
}


def build_degradation(name: str | None, **kwargs: object) -> Degradation:
    """Degradation named in a config (``None`` or ``"none"`` means no degradation).

    Names joined by ``+`` apply one after the other, e.g. ``"fuse_stage2+night"``.

    ``kwargs`` go to the named factory, e.g. ``build_degradation("low_light", darken=(0.1, 0.3))``
    or ``build_degradation("fuse_stage2", image={"region_prob": 1.0})``. Tuple-valued options
    may come from YAML as lists; they are converted.
    """
    if name is None:
        name = "none"
    if not isinstance(name, str):
        raise TypeError(f"degradation name must be a string, got {type(name).__name__}")
    if "+" in name:
        if kwargs:
            raise ValueError(f"options cannot be given to the combined degradation {name!r}")
        combined = Degradation()
        for part in name.split("+"):
            combined = combined.then(build_degradation(part))
        return combined
    try:
        factory = DEGRADATIONS[name]
    except KeyError:
        raise ValueError(f"unknown degradation {name!r}; expected one of {sorted(DEGRADATIONS)} "
                         "or several joined by '+'") from None
    return factory(**_tuples(kwargs))


def _tuples(options: dict[str, object]) -> dict[str, object]:
    """Turn lists (as YAML gives them) into tuples, recursively into nested option dicts."""
    out: dict[str, object] = {}
    for key, value in options.items():
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = _tuples(value)
        out[key] = value
    return out
