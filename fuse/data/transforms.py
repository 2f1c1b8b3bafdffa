"""Geometric and photometric transforms shared by every dataset (spec §4).

The resize rule reproduces Depth Anything V2's ``Resize(keep_aspect_ratio=True,
ensure_multiple_of=14, resize_method="lower_bound")`` exactly, because the ViT only accepts
multiples of 14 and checkpoints were trained with that geometry. Images and voxels are resized
with bicubic interpolation (voxels as one multi-channel image, as upstream does), depth with
nearest neighbour so that no depth value is invented between a foreground and a background
pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fuse.data.constants import IMAGENET_MEAN, IMAGENET_STD
from fuse.events import normalize_voxel

# float32, so that standardized images stay float32.
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)

#: Keys of a sample dict and how each one is transformed.
IMAGE_KEYS = ("image", "image_clean")
VOXEL_KEY = "voxel"
DEPTH_KEY = "depth"


def constrain_to_multiple_of(x: float, multiple: int, min_val: int = 0, max_val: int | None = None) -> int:
    """Round ``x`` to a multiple, preferring the nearest one and falling back to floor/ceil.

    Uses numpy's round-half-to-even like DA-V2, so sizes match upstream bit for bit.
    """
    y = int(np.round(x / multiple) * multiple)
    if max_val is not None and y > max_val:
        y = int(np.floor(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def lower_bound_size(height: int, width: int, size: int = 266, multiple: int = 14) -> tuple[int, int]:
    """Output (height, width) keeping the aspect ratio with both sides >= ``size`` and multiples of ``multiple``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = max(size / height, size / width)
    return (
        constrain_to_multiple_of(scale * height, multiple, min_val=size),
        constrain_to_multiple_of(scale * width, multiple, min_val=size),
    )


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an H×W or H×W×C image to ``hw`` = (height, width)."""
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)


def resize_voxel(voxel: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a bins×H×W voxel grid, all bins at once as a multi-channel image."""
    hwc = np.ascontiguousarray(voxel.transpose(1, 2, 0))
    out = cv2.resize(hwc, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    if out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def resize_depth(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an H×W depth map (NaN stays NaN)."""
    return cv2.resize(depth, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """H×W×3 RGB in [0, 1] -> 3×H×W float32 standardized with the ImageNet statistics."""
    out = (image.astype(np.float32) - _MEAN) / _STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def random_crop_origin(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``size``×``size`` window."""
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from a {height}x{width} sample")
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


@dataclass(frozen=True)
class SampleTransform:
    """Resize, normalize, crop and flip one sample dict, the same way for every modality.

    A sample holds ``image`` (H×W×3 float RGB in [0, 1]; ``image_clean`` too when a degraded
    copy is kept for a teacher), ``voxel`` (bins×H×W float, not normalized) and ``depth`` (H×W
    metres). The order follows upstream FUSE: resize -> normalize (the voxel statistics are
    taken on the full resized grid) -> crop -> flip.

    In training the depth is resized with the inputs (``resize_target=True`` upstream); in
    evaluation it keeps its original resolution so metrics are computed on the sensor grid.
    With ``resize=False`` nothing is resized at all (for callers that pad to multiples of 14
    themselves).
    """

    train: bool
    size: int = 266
    multiple: int = 14
    resize: bool = True
    crop: bool = True
    flip: bool = True
    flip_prob: float = 0.5

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the network input for a sensor of the given size."""
        if not self.resize:
            return height, width
        return lower_bound_size(height, width, self.size, self.multiple)

    def __call__(self, sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = dict(sample)
        height, width = out["image"].shape[:2]
        hw = self.output_size(height, width)
        if self.resize:
            for key in IMAGE_KEYS:
                if key in out:
                    out[key] = resize_image(out[key], hw)
            if VOXEL_KEY in out:
                out[VOXEL_KEY] = resize_voxel(out[VOXEL_KEY], hw)
            if self.train and DEPTH_KEY in out:
                out[DEPTH_KEY] = resize_depth(out[DEPTH_KEY], hw)

        for key in IMAGE_KEYS:
            if key in out:
                out[key] = normalize_image(out[key])
        if VOXEL_KEY in out:
            out[VOXEL_KEY] = normalize_voxel(out[VOXEL_KEY].astype(np.float32))

        if not self.train:
            return out

        if self.crop:
            top, left = random_crop_origin(hw[0], hw[1], self.size, rng)
            rows, cols = slice(top, top + self.size), slice(left, left + self.size)
            out = {key: value[..., rows, cols] for key, value in out.items()}
        if self.flip and rng.random() < self.flip_prob:
            out = {key: value[..., ::-1] for key, value in out.items()}
        return {key: np.ascontiguousarray(value) for key, value in out.items()}
