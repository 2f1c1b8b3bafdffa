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

import argparse
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuse.prep import common as prep  # noqa: E402

SPLITS = ("train", "val", "test")
FRAME_RE = re.compile(r"^frame_(\d+)\.png$")
DEPTH_RE = re.compile(r"^depth_(\d+)\.npy$")
EVENTS_RE = re.compile(r"^events_(\d+)\.npy$")
SUBDIRS = {"rgb": Path("rgb/frames"), "depth": Path("depth/data"), "events": Path("events/data")}
LAYOUT = prep.FolderLayout("DENSE", SUBDIRS, FRAME_RE, DEPTH_RE, EVENTS_RE)


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
            raise prep.PrepError(f"sequence {folder} lacks {', '.join(missing)} (see docs/datasets.md for the layout)")
        sequences.append((folder.name, folder))
    if not sequences:
        raise prep.PrepError(f"no DENSE sequence (rgb/, depth/, events/) found in {split_dir}")
    return sequences


def convert_sample(sample: prep.SourceSample, seq_dir: Path, stem: str, args: argparse.Namespace) -> None:
    image = prep.load_rgb(sample.image)
    shape = image.shape[:2]
    depth = prep.check_depth(prep.load_npy(sample.depth), shape, sample.depth)
    events = prep.standardize_events(prep.load_npy(sample.events), shape[0], shape[1], sample.events)
    prep.write_sample(seq_dir, stem, image, depth, events, args.numbins, args.save_events)


def process_split(split: str, args: argparse.Namespace) -> int:
    split_dir = args.root / split
    return prep.process_split(split, split_dir, find_sequences(split_dir), LAYOUT,
                              lambda sample, seq_out, stem: convert_sample(sample, seq_out, stem, args), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    prep.add_split_dataset_arguments(parser, "DENSE folder holding train/, val/, test/", SPLITS)
    return parser


def main(argv: list[str] | None = None) -> int:
    def run(args: argparse.Namespace) -> int:
        return prep.run_splits(args, "DENSE", SPLITS,
                               lambda split: args.root / split if (args.root / split).is_dir() else None, process_split)

    return prep.run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
