"""DERD-Net's training samples: the Sub-DSIs of ``derdnet-prepare`` folders, one selected pixel each.

A sample is the Sub-DSI ``(D, 7, 7)`` float32 of one selected pixel with ground truth at its
centre (spec §3), its target(s) in normalized depth, linear in depth (§5.1:
``(z - z_min) / (z_max - z_min)``), and the GT in metres for the validation MAE. Training
targets are clipped to [z_min, z_max] first, validation and test targets are not (§5.1, §7).
Single-pixel: one target, the centre; multi-pixel: the nine of the 3 x 3 neighbourhood in the
output order (``model.OFFSETS``), NaN where there is no GT (the loss masks them).

Windows are split by the parity of their index (even / odd: the two ensemble members, §7).
Augmentation (off by default, as the authors'): random vertical and horizontal flips of the
Sub-DSI and, for the multi-pixel model, of its 3 x 3 targets alike (the notebook flips the
Sub-DSI; flipping the targets with it keeps each output on its own pixel). The draws depend on
(seed, epoch, sample) only, so a resumed run sees the same flips (``set_epoch``).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fuse.errors import DataFormatError, MissingDataError
from fuse.methods.derdnet.model import CENTRE, NEIGHBOURHOOD, DepthRange
from fuse.methods.derdnet.prepare import FORMAT, record_path, sub_dsi_path, window_done, window_stem
from fuse.provenance import MANIFEST, read_manifest

SPLITS = ("even", "odd", "all")
OPEN_WINDOWS = 64  # memory-mapped Sub-DSI files kept open per process (one file descriptor each)


class PreparedFolder:
    """A ``derdnet-prepare`` output: its settings (``provenance.json``) and its windows' files."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        settings = read_manifest(self.folder / MANIFEST)
        if settings is None or settings.get("format") != FORMAT:
            what = "does not exist" if not self.folder.is_dir() else "is not a derdnet-prepare output"
            raise MissingDataError(f"prepared folder {self.folder} {what} (no {MANIFEST} of {FORMAT}); make it with "
                                   "python -m fuse derdnet-prepare --recording DIR/NAME --out FOLDER")
        self.settings = settings
        self.stems = [window_stem(index) for index in range(settings["windows"]["count"])]
        missing = [stem for stem in self.stems if not window_done(self.folder, stem)]
        if missing:
            raise DataFormatError(f"prepared folder {self.folder} is incomplete: {len(missing)} of {len(self.stems)} "
                                  f"windows missing (first {missing[0]}); rerun derdnet-prepare with the same options "
                                  "to finish it")

    def split(self, split: str) -> list[str]:
        """The window stems of ``split``: even or odd window index, or all."""
        if split == "all":
            return list(self.stems)
        return [stem for stem in self.stems if int(stem) % 2 == (split == "odd")]

    def record(self, stem: str, *keys: str) -> tuple[np.ndarray, ...]:
        """Arrays of one window's record (only those named are read)."""
        path = record_path(self.folder, stem)
        try:
            with np.load(path, allow_pickle=False) as record:
                return tuple(record[key] for key in keys)
        except (OSError, ValueError, KeyError) as error:
            raise DataFormatError(f"{path}: unreadable window record ({error}); rerun derdnet-prepare with "
                                  "--overwrite") from None

    def sub_dsi(self, stem: str, mmap: bool = False) -> np.ndarray:
        """The window's Sub-DSIs ``(N, D, 7, 7)`` (float16 or float32 as prepared)."""
        path = sub_dsi_path(self.folder, stem)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataFormatError(f"{path}: unreadable Sub-DSIs ({error}); rerun derdnet-prepare with "
                                  "--overwrite") from None

    def describe(self) -> str:
        """The folder and what it was prepared from and with (for messages)."""
        s = self.settings
        return (f"{self.folder} ({s['sequence']}, {s['dataset']}, {'stereo' if s['stereo'] else 'mono'}, "
                f"F_{s['filter']}, {s['planes']} planes)")


def check_alike(folders: Sequence[PreparedFolder], keys: Sequence[str] = ("dataset", "stereo", "filter", "planes",
                                                                         "radius", "depth_range")) -> None:
    """Folders trained or validated together must share what shapes a sample."""
    for folder in folders[1:]:
        differ = [key for key in keys if folder.settings[key] != folders[0].settings[key]]
        if differ:
            raise DataFormatError(f"prepared folders {folders[0].describe()} and {folder.describe()} differ in "
                                  f"{', '.join(differ)}; use folders prepared alike")


class SubDsiDataset(torch.utils.data.Dataset):
    """Every selected pixel with GT at its centre in the ``split`` windows of some prepared folders."""

    def __init__(self, folders: Sequence[PreparedFolder], split: str, depth: DepthRange, multi_pixel: bool,
                 clip_targets: bool, augment: bool = False, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        check_alike(folders)
        self.depth, self.multi_pixel, self.clip_targets = depth, multi_pixel, clip_targets
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.windows: list[tuple[PreparedFolder, str]] = []
        points, gts = [], []
        for folder in folders:
            for stem in folder.split(split):
                (gt,) = folder.record(stem, "gt")
                keep = np.flatnonzero(np.isfinite(gt[:, CENTRE]))
                points.append(np.stack([np.full(len(keep), len(self.windows)), keep], axis=1))
                gts.append(gt[keep])
                self.windows.append((folder, stem))
        self.points = np.concatenate(points).astype(np.int64) if points else np.zeros((0, 2), np.int64)
        self.gt = np.concatenate(gts).astype(np.float32) if gts else np.zeros((0, NEIGHBOURHOOD ** 2), np.float32)
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.points)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _blocks(self, window: int) -> np.ndarray:
        """The window's Sub-DSIs, memory-mapped; the least recently used file is closed beyond OPEN_WINDOWS."""
        if window not in self._open:
            folder, stem = self.windows[window]
            self._open[window] = folder.sub_dsi(stem, mmap=True)
            if len(self._open) > OPEN_WINDOWS:
                self._open.popitem(last=False)
        self._open.move_to_end(window)
        return self._open[window]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window, point = self.points[index]
        block = np.array(self._blocks(int(window))[point], dtype=np.float32)
        gt = self.gt[index].reshape(NEIGHBOURHOOD, NEIGHBOURHOOD)
        if self.augment:
            block, gt = self._flipped(index, block, gt)
        depth = torch.from_numpy(np.ascontiguousarray(gt).reshape(-1))
        clipped = depth.clamp(self.depth.z_min, self.depth.z_max) if self.clip_targets else depth
        target = self.depth.normalize(clipped)  # NaN stays NaN: no GT
        if not self.multi_pixel:
            depth, target = depth[CENTRE], target[CENTRE]
        return {"sub_dsi": torch.from_numpy(block), "target": target, "depth": depth}

    def _flipped(self, index: int, block: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vertical and horizontal flips, each with probability 1/2, of the block and its targets."""
        vertical, horizontal = np.random.default_rng([self.seed, self.epoch, index]).random(2) < 0.5
        axes = [axis for axis, flip in ((-2, vertical), (-1, horizontal)) if flip]
        if not axes:
            return block, gt
        return np.ascontiguousarray(np.flip(block, axis=axes)), np.flip(gt, axis=axes)
