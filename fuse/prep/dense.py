"""Convert DENSE (E2Depth, CARLA) into the processed layout, re-voxelizing the raw events.

Expected input (the published release; see docs/datasets.md)::

    <root>/{train,val,test}/<seq>/rgb/frames/frame_0000000000.png  (+ timestamps.txt)
                                  depth/data/depth_0000000000.npy   metres (+ timestamps.txt)
                                  events/data/events_0000000000.npy (N, 4) t, x, y, p, p in {0, 1}
                                                                    (+ timestamps.txt)

A split folder may also be a sequence itself (the test release unpacks that way). Event
window i is paired with the depth frame whose timestamp matches the window's (E2Depth's
rule; row i of a ``timestamps.txt`` belongs to file index i); the RGB frame shares the depth
frame's index. Without timestamp files, windows and frames are paired by index.

Output: ``<out>/<split>/<seq>/{images,depths,voxels[,events]}/<frame>.{png,npy}``,
``<out>/<split>/<seq>.txt`` per sequence and ``<out>/<split>.txt`` for the whole split.

    python scripts/process_dense.py --root /data/DENSE --out /data/DENSE_processed
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from fuse.data.layout import load_npy
from fuse.errors import PrepError
from fuse.prep import common

SPLITS = ("train", "val", "test")
SUBDIRS = {"rgb": Path("rgb/frames"), "depth": Path("depth/data"), "events": Path("events/data")}
LAYOUT = common.FolderLayout("DENSE", SUBDIRS, re.compile(r"^frame_(\d+)\.png$"), re.compile(r"^depth_(\d+)\.npy$"),
                             re.compile(r"^events_(\d+)\.npy$"))


def is_sequence(folder: Path) -> bool:
    return any((folder / sub.parts[0]).is_dir() for sub in SUBDIRS.values())


def find_sequences(split_dir: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every sequence in a split folder; the folder itself may be one."""
    candidates = [split_dir] if is_sequence(split_dir) else sorted(d for d in split_dir.iterdir() if d.is_dir())
    sequences = []
    for folder in candidates:
        if not is_sequence(folder):
            continue
        missing = [str(sub) for sub in SUBDIRS.values() if not (folder / sub).is_dir()]
        if missing:
            raise PrepError(f"sequence {folder} lacks {', '.join(missing)} (see docs/datasets.md for the layout)")
        sequences.append((folder.name, folder))
    if not sequences:
        raise PrepError(f"no DENSE sequence (rgb/, depth/, events/) found in {split_dir}")
    return sequences


DENSE = common.SplitDataSet(
    layout=LAYOUT,
    description=__doc__,
    root_help="DENSE folder holding train/, val/, test/",
    split_folders={split: (split,) for split in SPLITS},
    find_sequences=find_sequences,
    load_events=functools.partial(load_npy, error=PrepError),
)


def main(argv: list[str] | None = None) -> int:
    return common.main(DENSE, argv)
