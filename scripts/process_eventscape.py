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
import sys
import zipfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from fuse.cli.ranges import positive_float  # noqa: E402
from fuse.prep import common as prep  # noqa: E402
from fuse.data.constants import dataset_info  # noqa: E402

SPLIT_FOLDERS = {"train": "Town01-03_train", "val": "Town05_val", "test": "Town05_test"}
IMAGE_RE = re.compile(r"^(.+)_(\d+)_image\.png$")
DEPTH_RE = re.compile(r"^(.+)_(\d+)_depth\.npy$")
EVENTS_RE = re.compile(r"^(.+)_(\d+)_events\.npz$")
SUBDIRS = {"rgb": Path("rgb/data"), "depth": Path("depth/data"), "events": Path("events/data")}
LAYOUT = prep.FolderLayout("EventScape", SUBDIRS, IMAGE_RE, DEPTH_RE, EVENTS_RE)
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


def load_events_npz(path: Path) -> np.ndarray:
    """(N, 4) t, x, y, p from an EventScape ``*_events.npz``."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            raise prep.PrepError(f"{path} is a single .npy array, not an .npz archive with keys t, x, y, p")
        with data:
            missing = [key for key in EVENT_KEYS if key not in data.files]
            if missing:
                raise prep.PrepError(f"{path} lacks key(s) {', '.join(missing)} (has {', '.join(data.files)})")
            columns = [np.asarray(data[key], dtype=np.float64).ravel() for key in EVENT_KEYS]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise prep.PrepError(f"cannot read {path}: {exc}") from exc
    if len({len(column) for column in columns}) != 1:
        raise prep.PrepError(f"{path}: keys t, x, y, p have different lengths")
    return np.stack(columns, axis=1)


def split_folder(root: Path, split: str) -> Path | None:
    """The folder of a split (its release name, or the split's own name), None when absent."""
    for name in (SPLIT_FOLDERS[split], split):
        if (root / name).is_dir():
            return root / name
    return None


def find_sequences(split_dir: Path) -> list[tuple[str, Path]]:
    """(``<Town>_<sequence>``, folder) of every sequence under ``<split>/<Town>/``."""
    sequences = []
    for town in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        for folder in sorted(d for d in town.iterdir() if d.is_dir()):
            missing = [str(sub) for sub in SUBDIRS.values() if not (folder / sub).is_dir()]
            if len(missing) == len(SUBDIRS):
                continue
            if missing:
                raise prep.PrepError(f"sequence {folder} lacks {', '.join(missing)} (see docs/datasets.md)")
            sequences.append((f"{town.name}_{folder.name}", folder))
    if not sequences:
        raise prep.PrepError(f"no EventScape sequence (<Town>/<sequence>/rgb,depth,events) found in {split_dir}")
    return sequences


def depth_in_metres(depth: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    log = args.depth_format == "log" or (args.depth_format == "auto" and is_normalized_log(depth))
    if log:
        return normalized_log_to_metres(depth, args.max_depth, args.reg_factor)
    return depth


def convert_sample(sample: prep.SourceSample, seq_dir: Path, stem: str, args: argparse.Namespace) -> None:
    image = prep.load_rgb(sample.image)
    shape = image.shape[:2]
    depth = depth_in_metres(prep.check_depth(prep.load_npy(sample.depth), shape, sample.depth), args)
    events = prep.standardize_events(load_events_npz(sample.events), shape[0], shape[1], sample.events)
    prep.write_sample(seq_dir, stem, image, depth, events, args.numbins, args.save_events)


def process_split(split: str, args: argparse.Namespace) -> int:
    split_dir = split_folder(args.root, split)
    return prep.process_split(split, split_dir, find_sequences(split_dir), LAYOUT,
                              lambda sample, seq_out, stem: convert_sample(sample, seq_out, stem, args), args)


def build_parser() -> argparse.ArgumentParser:
    info = dataset_info("eventscape")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    prep.add_split_dataset_arguments(parser, "folder holding the unpacked zips", SPLIT_FOLDERS)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    def run(args: argparse.Namespace) -> int:
        return prep.run_splits(args, "EventScape", tuple(SPLIT_FOLDERS), lambda split: split_folder(args.root, split),
                               process_split)

    return prep.run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
