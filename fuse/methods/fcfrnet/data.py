"""KITTI depth-completion samples for training STD and FCFRNet (spec fcfrnet.md §4).

A sample is one frame of a split (``kitti.py``) cut to the bottom ``crop`` (352 x 1216, spec §4).
Training samples are augmented as the Paddle port's ``train_transform`` does: a horizontal flip
with probability 1/2 of image, input depth and ground truth together, and a colour jitter of the
image alone, brightness, contrast and saturation with factors from U[1 - jitter, 1 + jitter]
(jitter 0.1) applied in a random order. ``window`` adds a random window of the crop, which the
port does not have: a smaller input for CPU runs. Every draw comes from (seed, epoch, index), so a
resumed run sees the samples an uninterrupted one would (``set_epoch``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fuse.errors import UsageError
from fuse.methods.fcfrnet.kitti import CROP, KittiFrame, read_frame

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, PIL's "L": the port's gray image


def gray(image: np.ndarray) -> np.ndarray:
    """Luma of an H x W x 3 image in [0, 1]."""
    return image @ LUMA


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with black, as PIL's ``ImageEnhance.Brightness``."""
    return np.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean luma, as PIL's ``ImageEnhance.Contrast``."""
    mean = gray(image).mean()
    return np.clip(mean + factor * (image - mean), 0.0, 1.0)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the luma image, as PIL's ``ImageEnhance.Color``."""
    luma = gray(image)[..., None]
    return np.clip(luma + factor * (image - luma), 0.0, 1.0)


JITTERS = (adjust_brightness, adjust_contrast, adjust_saturation)


def network_image(image: torch.Tensor, input_mode: str) -> torch.Tensor | None:
    """The image a network of ``input_mode`` takes from (B, 3, H, W) RGB: itself (rgbd), its luma
    (gd; the port converts the jittered RGB) or none (d)."""
    if input_mode == "gd":
        return (image * torch.from_numpy(LUMA).to(image).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return None if input_mode == "d" else image


@dataclass(frozen=True)
class Augmentation:
    """The training draws: ``flip`` (p = 1/2), ``jitter`` strength, and an optional random
    ``window`` (height, width) of the crop."""

    flip: bool = True
    jitter: float = 0.1
    window: tuple[int, int] | None = None


class CompletionDataset(torch.utils.data.Dataset):
    """Frames as tensors: ``image`` (3, H, W) in [0, 1], ``depth`` (1, H, W) the input in metres
    (LiDAR points for STD, the coarse map for FCFRNet: the folder the frames were listed with) and
    ``gt`` (H, W) metres, 0 = no depth. Without ``augment``: the bottom crop as it is (validation)."""

    def __init__(self, frames: Sequence[KittiFrame], crop: tuple[int, int] = CROP,
                 augment: Augmentation | None = None, seed: int = 0) -> None:
        window = augment.window if augment else None
        if window is not None and (window[0] > crop[0] or window[1] > crop[1]):
            raise UsageError(f"the random window {window[0]}x{window[1]} does not fit in the {crop[0]}x{crop[1]} "
                             "bottom crop; choose a smaller window or a larger crop")
        self.frames, self.crop, self.augment, self.seed, self.epoch = list(frames), tuple(crop), augment, seed, 0

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = read_frame(self.frames[index], self.crop)
        image = sample.image.astype(np.float32) / np.float32(255.0)
        depth, gt = sample.sparse, sample.groundtruth
        if self.augment is not None:
            image, depth, gt = self._augmented(index, image, depth, gt)
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "depth": torch.from_numpy(np.ascontiguousarray(depth)[None]),
                "gt": torch.from_numpy(np.ascontiguousarray(gt))}

    def _augmented(self, index: int, image: np.ndarray, depth: np.ndarray,
                   gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window, flip (the three maps alike), then the jitter (the image only). The same draws
        are made whatever is switched off, so turning one off leaves the others as they were."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flip = rng.random() < 0.5
        rows, columns = depth.shape
        height, width = self.augment.window or (rows, columns)
        top, left = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, columns - width + 1))
        factors = rng.uniform(1.0 - self.augment.jitter, 1.0 + self.augment.jitter, len(JITTERS))
        order = rng.permutation(len(JITTERS))
        maps = [array[top:top + height, left:left + width] for array in (image, depth, gt)]
        if flip and self.augment.flip:
            maps = [array[:, ::-1] for array in maps]
        image, depth, gt = maps
        if self.augment.jitter:
            for which in order:
                image = JITTERS[which](image, float(factors[which]))
        return image, depth, gt
