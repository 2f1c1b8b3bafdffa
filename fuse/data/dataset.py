"""Dataset over the processed layout shared by MVSEC, DENSE and EventScape (``fuse.data.layout``).

A split list holds one sample per line: ``<image.png> <depth.npy> <voxel.npy>``, paths
relative to the folder holding the list (absolute paths are accepted too). Loading follows
upstream FUSE (``dataset/mvsec.py``, ``dense.py``, ``eventscape*.py``): the PNG is read with
OpenCV, converted BGR -> RGB (grayscale replicated to three channels) and scaled to [0, 1];
depth is loaded in metres without clipping; the voxel is the raw (un-normalized) grid. Then
``SampleTransform`` resizes, normalizes (ImageNet statistics; voxel standardized after
resizing), crops and flips (see ``fuse.data.transforms``).

Returned dict (all tensors are ``torch.Tensor``):

* ``image``: float32 3×H×W, the network's image input (degraded when a degradation is set);
* ``image_clean``: float32 3×H×W, the same image without degradation, only present when a
  degradation is set (stage 2 feeds it to the teacher);
* ``voxel``: float32 bins×H×W, normalized after resizing;
* ``depth``: float32 metres. Pixels without depth stay NaN (nothing is clipped or filled, so
  no loss or metric can mistake a hole for a real depth; always index with ``valid_mask``).
  In training it is resized and cropped with the inputs; in evaluation it keeps the sensor
  resolution, and predictions are to be upsampled to it.
* ``valid_mask``: bool, same shape as ``depth``: finite and 0 < depth <= max_depth;
* ``image_path``: str, the image path as resolved from the split list.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fuse.data.constants import DatasetInfo, dataset_info
from fuse.data.degradations import Degradation, build_degradation
from fuse.data.layout import check_files_exist, load_sample, read_split_list
from fuse.data.transforms import SampleTransform

MODES = ("train", "val", "test")


def valid_depth_mask(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Pixels with usable ground truth: finite and 0 < depth <= max_depth (spec §4, stage 3)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0) & (depth <= max_depth)


class EventDepthDataset(Dataset):
    """Image + event voxel + metric depth samples from a processed split list.

    Args:
        split_file: the split list (see module docstring).
        dataset: ``"mvsec"``, ``"dense"`` or ``"eventscape"``; picks ``max_depth`` from
            ``fuse.data.constants``.
        mode: ``"train"`` (resize, random crop, paired flip) or ``"val"``/``"test"`` (resize
            only; depth keeps the sensor resolution).
        size: network input size: the resize lower bound and the training crop side.
        resize: False keeps the original resolution (inference code then pads itself).
        crop / flip: training-only geometric augmentation (upstream flips whole batches in the
            training loop; here each sample is flipped independently with p = 0.5).
        degradation: a ``Degradation``, or a registry name (``"fuse_stage2"``, ``"low_light"``,
            ``"motion_blur"``, ``"none"``); applied in any mode, before resizing.
        num_bins: if given, voxels with another bin count are rejected.
        seed: makes every sample reproducible from (seed, epoch, index); call ``set_epoch``
            each epoch to change the draws (use non-persistent workers so the change reaches
            them). ``None`` draws fresh entropy in training; evaluation defaults to seed 0.
        check_files: verify at construction that every listed file exists.
    """

    def __init__(
        self,
        split_file: str | os.PathLike,
        dataset: str,
        mode: str = "train",
        size: int = 266,
        resize: bool = True,
        crop: bool = True,
        flip: bool = True,
        degradation: Degradation | str | None = None,
        num_bins: int | None = None,
        seed: int | None = None,
        check_files: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.split_file = Path(split_file)
        self.info: DatasetInfo = dataset_info(dataset)
        self.mode = mode
        self.num_bins = num_bins
        self.samples = read_split_list(self.split_file)
        if check_files:
            check_files_exist(self.samples, self.split_file)
        train = mode == "train"
        self.transform = SampleTransform(train=train, size=size, resize=resize, crop=crop, flip=flip)
        if degradation is None or isinstance(degradation, str):
            degradation = build_degradation(degradation)
        self.degradation = degradation
        self.seed = seed if (seed is not None or train) else 0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of a seeded dataset from one epoch to the next."""
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator that drives sample ``index`` this epoch."""
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        return self.get(index, self.rng_for(index))

    def get(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor | str]:
        """Load, degrade and transform sample ``index`` with an explicit generator."""
        paths = self.samples[index]
        image, depth, voxel = load_sample(paths, self.num_bins)

        sample: dict[str, np.ndarray] = {"depth": depth}
        if self.degradation.is_identity:
            sample["image"] = image.astype(np.float32) / 255.0
            sample["voxel"] = voxel
        else:
            degraded, voxel = self.degradation(image, voxel, rng)
            sample["image"] = degraded.astype(np.float32) / 255.0
            sample["image_clean"] = image.astype(np.float32) / 255.0
            sample["voxel"] = voxel

        sample = self.transform(sample, rng)
        out: dict[str, torch.Tensor | str] = {key: torch.from_numpy(value) for key, value in sample.items()}
        out["valid_mask"] = torch.from_numpy(valid_depth_mask(sample["depth"], self.info.max_depth))
        out["image_path"] = str(paths[0])
        return out
