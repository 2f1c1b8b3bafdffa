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
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from fuse.cli.ranges import positive_int  # noqa: E402
from fuse.prep import common as prep  # noqa: E402
from fuse.provenance import MANIFEST, OutputFolder, read_manifest  # noqa: E402

_MAX_LISTED_MISSING = 5


@dataclass(frozen=True)
class Job:
    events: Path
    depth: Path
    voxel: Path


def resolve(field: str, base: Path) -> Path:
    return Path(field) if os.path.isabs(field) else base / field


def rebinned_field(voxel_field: str, voxels_dir: str) -> str:
    """The voxel column with its folder replaced by ``voxels_dir`` (relative stays relative)."""
    voxel = PurePath(voxel_field)
    return (voxel.parent.parent / voxels_dir / voxel.name).as_posix()


def events_field(voxel_field: str) -> str:
    """The raw-window file that produced a voxel: the sibling ``events`` folder, same name."""
    voxel = PurePath(voxel_field)
    return (voxel.parent.parent / "events" / voxel.name).as_posix()


def plan_list(list_path: Path, voxels_dir: str, suffix: str) -> tuple[list[Job], Path, list[str]]:
    """Jobs of one split list, the new list's path and its lines."""
    if not list_path.is_file():
        raise prep.PrepError(f"split list not found: {list_path}")
    base = list_path.parent
    try:
        text = list_path.read_text()
    except UnicodeDecodeError:
        raise prep.PrepError(f"split list {list_path} is not a text file (lines <image.png> <depth.npy> "
                             "<voxel.npy>); check the path") from None
    jobs, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise prep.PrepError(f"{list_path}:{number}: expected 3 paths (image depth voxel), got {len(fields)}")
        image, depth, voxel = fields
        new_voxel = rebinned_field(voxel, voxels_dir)
        if new_voxel == PurePath(voxel).as_posix():
            raise prep.PrepError(f"--voxels-dir {voxels_dir!r} would overwrite the original voxels of {list_path}")
        jobs.append(Job(resolve(events_field(voxel), base), resolve(depth, base), resolve(new_voxel, base)))
        lines.append(f"{image} {depth} {new_voxel}")
    if not jobs:
        raise prep.PrepError(f"split list is empty: {list_path}")
    return jobs, base / f"{list_path.stem}{suffix}.txt", lines


def check_inputs(jobs: list[Job]) -> None:
    missing = [str(path) for job in jobs for path in (job.events, job.depth) if not path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:_MAX_LISTED_MISSING])
        raise prep.PrepError(
            f"{len(missing)} input file(s) missing (raw windows are only stored with --save-events):\n  {shown}"
        )


def rebuild(job: Job, num_bins: int, folder: OutputFolder, started: set[Path]) -> bool:
    """Write one re-binned voxel; False if it already existed with the right bin count.

    A voxel folder is created (and its provenance recorded) only when its first grid is ready,
    so bad input leaves no folder behind.
    """
    if not folder.overwrite and job.voxel.is_file() and prep.npy_shape(job.voxel)[:1] == (num_bins,):
        return False
    shape = prep.npy_shape(job.depth)
    if len(shape) != 2:
        raise prep.PrepError(f"depth must be (H, W), got {shape}: {job.depth}")
    height, width = shape
    events = prep.standardize_events(prep.load_npy(job.events), height, width, job.events)
    voxel = prep.events_to_voxel(events, num_bins, height, width)
    if folder.folder not in started:
        folder.start()
        started.add(folder.folder)
    prep.save_npy(job.voxel, voxel)
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
        raise prep.PrepError(f"--numbins must be >= 1, got {args.numbins}")
    voxels_dir = args.voxels_dir or f"voxels_{args.numbins}bins"
    suffix = args.suffix if args.suffix is not None else f"_{args.numbins}bins"
    if not suffix:
        raise prep.PrepError("--suffix must not be empty: the original list would be overwritten")
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
        prep.save_text(new_list, lines)
        print(f"wrote {new_list}")
    print(f"{len(all_jobs)} voxel grid(s), {written} written, {len(all_jobs) - written} already there")
    return 0


def main(argv: list[str] | None = None) -> int:
    return prep.run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
