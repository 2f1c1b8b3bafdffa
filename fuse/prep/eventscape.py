"""Convert EventScape (RAM-Net, CARLA) into the processed layout, re-voxelizing the raw events.

Expected input: the three published zips unpacked each into a folder of its own name (see
docs/datasets.md)::

    <root>/Town01-03_train/Town01/sequence_0/rgb/data/01_000_0000_image.png (+ timestamps.txt)
                                             depth/data/01_000_0000_depth.npy  (+ timestamps.txt)
                                             events/data/01_000_0000_events.npz  keys x, y, t, p
                                                                 (+ timestamps.txt, boundary_timestamps.txt)
    <root>/Town05_val/Town05/sequence_*/...
    <root>/Town05_test/Town05/sequence_*/...

(a split folder may also be named plainly ``train``, ``val``, ``test``). Files are paired by
the frame index in their names, or through ``timestamps.txt`` like RAM-Net's loader (row i
belongs to file index i; the RGB frame shares the depth frame's index).

Depth: spec §7 describes EventScape depth as normalized log depth n = log(d/D_max)/α + 1,
while the RAM-Net and FUSE loaders clip the stored maps to 1000 and log-normalize them
themselves, i.e. treat them as metres. ``--depth-format auto`` (default) therefore decides per
file: a map whose finite values all lie in [0, 1] is normalized log depth and is converted
with d = D_max·exp(α(n − 1)); anything else is taken as metres. Output is always metres.

Output: ``<out>/<split>/<Town>_<sequence>/{images,depths,voxels[,events]}/<frame>.{png,npy}``,
``<out>/<split>/<Town>_<sequence>.txt`` and ``<out>/<split>.txt``.

    python scripts/process_eventscape.py --root /data/EventScape --out /data/EventScape_processed
"""
from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

import numpy as np

from fuse.cli.ranges import positive_float
from fuse.data.constants import dataset_info
from fuse.errors import PrepError
from fuse.prep import common

SPLIT_FOLDERS = {"train": ("Town01-03_train", "train"), "val": ("Town05_val", "val"), "test": ("Town05_test", "test")}
SUBDIRS = {"rgb": Path("rgb/data"), "depth": Path("depth/data"), "events": Path("events/data")}
LAYOUT = common.FolderLayout("EventScape", SUBDIRS, re.compile(r"^(.+)_(\d+)_image\.png$"),
                             re.compile(r"^(.+)_(\d+)_depth\.npy$"), re.compile(r"^(.+)_(\d+)_events\.npz$"))
EVENT_KEYS = ("t", "x", "y", "p")


def normalized_log_to_metres(depth: np.ndarray, max_depth: float, reg_factor: float) -> np.ndarray:
    """Invert n = log(d / D_max) / α + 1 (clipped to [0, 1]): d = D_max·exp(α(n − 1)); NaN stays NaN."""
    with np.errstate(invalid="ignore"):
        clipped = np.clip(depth.astype(np.float64), 0.0, 1.0)
    return (max_depth * np.exp(reg_factor * (clipped - 1.0))).astype(np.float32)


def is_normalized_log(depth: np.ndarray) -> bool:
    """Heuristic of ``--depth-format auto``: every finite value in [0, 1] (no CARLA scene is
    entirely within 1 m, and the sky alone sits at the 1000 m far plane)."""
    finite = depth[np.isfinite(depth)]
    return finite.size > 0 and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0


def depth_in_metres(depth: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    log = args.depth_format == "log" or (args.depth_format == "auto" and is_normalized_log(depth))
    if log:
        return normalized_log_to_metres(depth, args.max_depth, args.reg_factor)
    return depth


def load_events_npz(path: Path) -> np.ndarray:
    """(N, 4) t, x, y, p from an EventScape ``*_events.npz``."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            raise PrepError(f"{path} is a single .npy array, not an .npz archive with keys t, x, y, p")
        with data:
            missing = [key for key in EVENT_KEYS if key not in data.files]
            if missing:
                raise PrepError(f"{path} lacks key(s) {', '.join(missing)} (has {', '.join(data.files)})")
            columns = [np.asarray(data[key], dtype=np.float64).ravel() for key in EVENT_KEYS]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PrepError(f"cannot read {path}: {exc}") from exc
    if len({len(column) for column in columns}) != 1:
        raise PrepError(f"{path}: keys t, x, y, p have different lengths")
    return np.stack(columns, axis=1)


def find_sequences(split_dir: Path) -> list[tuple[str, Path]]:
    """(``<Town>_<sequence>``, folder) of every sequence under ``<split>/<Town>/``."""
    sequences = []
    for town in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        for folder in sorted(d for d in town.iterdir() if d.is_dir()):
            missing = [str(sub) for sub in SUBDIRS.values() if not (folder / sub).is_dir()]
            if len(missing) == len(SUBDIRS):
                continue
            if missing:
                raise PrepError(f"sequence {folder} lacks {', '.join(missing)} (see docs/datasets.md)")
            sequences.append((f"{town.name}_{folder.name}", folder))
    if not sequences:
        raise PrepError(f"no EventScape sequence (<Town>/<sequence>/rgb,depth,events) found in {split_dir}")
    return sequences


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The depth encoding options (after the shared ones)."""
    info = dataset_info("eventscape")
    parser.add_argument(
        "--depth-format",
        choices=("auto", "log", "metric"),
        default="auto",
        help="stored depth: normalized log depth, metres, or decide per file (default)",
    )
    parser.add_argument("--max-depth", type=positive_float, default=info.max_depth, help="D_max of the log encoding")
    parser.add_argument(
        "--reg-factor",
        type=positive_float,
        default=info.reg_factor,
        help="alpha of the log encoding (FUSE uses 5.7, RAM-Net's README 5.70378)",
    )


EVENTSCAPE = common.SplitDataSet(
    layout=LAYOUT,
    description=__doc__,
    root_help="folder holding the unpacked zips",
    split_folders=SPLIT_FOLDERS,
    find_sequences=find_sequences,
    load_events=load_events_npz,
    to_metres=depth_in_metres,
    add_arguments=add_arguments,
)


def main(argv: list[str] | None = None) -> int:
    return common.main(EVENTSCAPE, argv)
