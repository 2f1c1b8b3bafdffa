"""Dataset over the processed layout shared by MVSEC, DENSE and EventScape.

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
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from fuse.data.constants import DatasetInfo, dataset_info
from fuse.data.degradations import Degradation, build_degradation
from fuse.data.transforms import SampleTransform
from fuse.errors import DataFormatError, FuseError, MissingDataError

MODES = ("train", "val", "test")
_MAX_LISTED_MISSING = 5


def read_split_list(split_file: str | os.PathLike) -> list[tuple[Path, Path, Path]]:
    """Parse a split list into (image, depth, voxel) paths, resolving relative ones.

    Blank lines are skipped; any other line must have exactly three fields.
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise MissingDataError(f"split list not found: {split_file}")
    base = split_file.parent
    try:
        text = split_file.read_text()
    except UnicodeDecodeError:
        raise DataFormatError(f"split list {split_file} is not a text file (lines <image.png> <depth.npy> "
                              "<voxel.npy>); check the path") from None
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataFormatError(
                f"{split_file}:{number}: expected 3 paths (image depth voxel), got {len(fields)}: {line!r}"
            )
        image, depth, voxel = (Path(f) if os.path.isabs(f) else base / f for f in fields)
        samples.append((image, depth, voxel))
    if not samples:
        raise DataFormatError(f"split list is empty: {split_file}")
    return samples


def check_files_exist(samples: Sequence[tuple[Path, ...]], split_file: str | os.PathLike) -> None:
    """Raise one error listing the first few missing files and how many are missing."""
    missing = [str(path) for sample in samples for path in sample if not path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:_MAX_LISTED_MISSING])
        more = f"\n  ... and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
        raise MissingDataError(f"{len(missing)} file(s) named in {split_file} do not exist:\n  {shown}{more}")


def load_image_rgb(path: Path) -> np.ndarray:
    """uint8 H×W×3 RGB; grayscale is replicated, alpha dropped (upstream reads BGR and converts)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataFormatError(f"cannot decode image (corrupt, truncated or not an image): {path}")
    if image.dtype != np.uint8:
        raise DataFormatError(f"image must be 8-bit, got {image.dtype}: {path}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DataFormatError(f"image must have 1, 3 or 4 channels, got shape {image.shape}: {path}")


def load_npy(path: Path, error: type[FuseError] = DataFormatError, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` without pickles; every read failure is ``error`` naming the file (the project's
    one ``.npy`` reader: training data, predictions, preparation inputs)."""
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise error(f"cannot read npy file (corrupt or truncated?): {path}: {exc}") from exc
    if not isinstance(array, np.ndarray):  # np.load opens any zip (.npz, a checkpoint) as an archive
        array.close()
        raise error(f"not an npy file (a zip archive such as .npz or a checkpoint): {path}")
    return array


def load_depth(path: Path, height: int, width: int) -> np.ndarray:
    """float32 H×W metres; NaN (no depth) is kept."""
    depth = load_npy(path)
    if depth.ndim != 2 or depth.shape != (height, width):
        raise DataFormatError(f"depth must have shape ({height}, {width}) like its image, got {depth.shape}: {path}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise DataFormatError(f"depth must be floating point metres, got {depth.dtype}: {path}")
    return depth.astype(np.float32, copy=False)


def load_voxel(path: Path, height: int, width: int, num_bins: int | None) -> np.ndarray:
    """float32 bins×H×W grid, checked for shape, dtype and finiteness."""
    voxel = load_npy(path)
    if voxel.ndim != 3 or voxel.shape[1:] != (height, width):
        raise DataFormatError(
            f"voxel must have shape (bins, {height}, {width}) like its image, got {voxel.shape}: {path}"
        )
    if num_bins is not None and voxel.shape[0] != num_bins:
        raise DataFormatError(f"voxel has {voxel.shape[0]} bins, expected {num_bins}: {path}")
    if not np.issubdtype(voxel.dtype, np.floating):
        raise DataFormatError(f"voxel must be floating point, got {voxel.dtype}: {path}")
    if not np.isfinite(voxel).all():
        raise DataFormatError(f"voxel contains NaN or inf: {path}")
    return voxel.astype(np.float32, copy=False)


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
        image_path, depth_path, voxel_path = self.samples[index]
        image = load_image_rgb(image_path)
        height, width = image.shape[:2]
        depth = load_depth(depth_path, height, width)
        voxel = load_voxel(voxel_path, height, width, self.num_bins)

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
        out["image_path"] = str(image_path)
        return out
