"""Rebuild voxel grids with another number of bins from the stored raw event windows.

For every line of each split list, the raw window ``<seq>/events/<frame>.npy`` (written by the
preparation scripts; ``--save-events`` for DENSE / EventScape) is re-voxelized into a new
sibling folder ``<seq>/<voxels-dir>/<frame>.npy``, and a new list with the voxel column
pointing there is written next to the original (``<list>_<N>bins.txt`` by default). Images and
depths are shared with the original list.

    python scripts/change_bins.py /data/MVSEC_processed/outdoor_day2.txt --numbins 5
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath

from tqdm import tqdm

from fuse.atomic import save_npy_atomic
from fuse.cli.ranges import positive_int
from fuse.data.layout import (FOLDERS, load_npy, moved_field, npy_header, read_split_fields, resolve_field,
                              save_split_list)
from fuse.errors import PrepError
from fuse.prep import common as prep
from fuse.provenance import MANIFEST, OutputFolder, read_manifest

_MAX_LISTED_MISSING = 5


@dataclass(frozen=True)
class Job:
    events: Path
    depth: Path
    voxel: Path


def plan_list(list_path: Path, voxels_dir: str, suffix: str) -> tuple[list[Job], Path, list[str]]:
    """Jobs of one split list, the new list's path and its lines."""
    base = list_path.parent
    jobs, lines = [], []
    for image, depth, voxel in read_split_fields(list_path, PrepError):
        new_voxel = moved_field(voxel, voxels_dir)
        if new_voxel == PurePath(voxel).as_posix():
            raise PrepError(f"--voxels-dir {voxels_dir!r} would overwrite the original voxels of {list_path}")
        raw_window = moved_field(voxel, FOLDERS["events"])  # the window that produced the voxel
        jobs.append(Job(resolve_field(raw_window, base), resolve_field(depth, base), resolve_field(new_voxel, base)))
        lines.append(f"{image} {depth} {new_voxel}")
    return jobs, base / f"{list_path.stem}{suffix}.txt", lines


def check_inputs(jobs: list[Job]) -> None:
    missing = [str(path) for job in jobs for path in (job.events, job.depth) if not path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:_MAX_LISTED_MISSING])
        raise PrepError(
            f"{len(missing)} input file(s) missing (raw windows are only stored with --save-events):\n  {shown}"
        )


def rebuild(job: Job, num_bins: int, folder: OutputFolder, started: set[Path]) -> bool:
    """Write one re-binned voxel; False if it already existed with the right bin count.

    A voxel folder is created (and its provenance recorded) only when its first grid is ready,
    so bad input leaves no folder behind.
    """
    done = npy_header(job.voxel)
    if not folder.overwrite and done is not None and done[0][:1] == (num_bins,):
        return False
    shape = load_npy(job.depth, PrepError, mmap_mode="r").shape
    if len(shape) != 2:
        raise PrepError(f"depth must be (H, W), got {shape}: {job.depth}")
    height, width = shape
    events = prep.standardize_events(load_npy(job.events, PrepError), height, width, job.events)
    voxel = prep.events_to_voxel(events, num_bins, height, width)
    if folder.folder not in started:
        folder.start()
        started.add(folder.folder)
    save_npy_atomic(job.voxel, voxel)
    return True


def voxel_folders(jobs: list[Job], num_bins: int, overwrite: bool) -> dict[Path, OutputFolder]:
    """Each new voxel folder with what makes its files: the bin count and the preparation that wrote
    the sequence's raw windows (its ``provenance.json``), so voxels of re-prepared events are never reused."""
    folders = {}
    for voxel_dir in sorted({job.voxel.parent for job in jobs}):
        prepared = read_manifest(voxel_dir.parent / MANIFEST)
        folders[voxel_dir] = OutputFolder(voxel_dir, "change_bins",
                                          {"num_bins": num_bins, "events_prepared_by": prepared}, ("*.npy",),
                                          overwrite=overwrite)
    return folders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lists", nargs="+", type=Path, help="split list(s) of the processed layout")
    parser.add_argument("--numbins", type=positive_int, required=True, help="new number of voxel bins")
    parser.add_argument("--voxels-dir", help="name of the new voxel folder (default voxels_<N>bins)")
    parser.add_argument("--suffix", help="appended to each list's name for the new list (default _<N>bins)")
    prep.add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.numbins < 1:
        raise PrepError(f"--numbins must be >= 1, got {args.numbins}")
    voxels_dir = args.voxels_dir or f"voxels_{args.numbins}bins"
    suffix = args.suffix if args.suffix is not None else f"_{args.numbins}bins"
    if not suffix:
        raise PrepError("--suffix must not be empty: the original list would be overwritten")
    planned = [plan_list(path, voxels_dir, suffix) for path in args.lists]
    all_jobs = [job for jobs, _, _ in planned for job in jobs]
    check_inputs(all_jobs)
    folders = voxel_folders(all_jobs, args.numbins, args.overwrite)
    for folder in folders.values():
        folder.check()
    written, started = 0, set()
    for job in tqdm(all_jobs, desc=f"voxels -> {args.numbins} bins", unit="frame"):
        written += rebuild(job, args.numbins, folders[job.voxel.parent], started)
    for _, new_list, lines in planned:
        save_split_list(new_list, lines)
        print(f"wrote {new_list}")
    print(f"{len(all_jobs)} voxel grid(s), {written} written, {len(all_jobs) - written} already there")
    return 0


def main(argv: list[str] | None = None) -> int:
    return prep.run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
