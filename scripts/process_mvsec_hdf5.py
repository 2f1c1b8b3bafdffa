"""Prepare MVSEC sequences for training and evaluation: images, depth maps, event voxels and
a split list per sequence (layout in fuse/data/layout.py).

    python scripts/process_mvsec_hdf5.py --root /data/mvsec --out /data/mvsec_processed
    python scripts/process_mvsec_hdf5.py --root /data/mvsec --out OUT outdoor_day2 --save-events

Exit status: 0 on success, 2 when an input recording is missing or bad (one message per
sequence naming the file and the problem; other sequences are still processed) or when the
output folder refuses writes (full disk, read-only: checked before the first sequence).
"""
from __future__ import annotations

import argparse
import sys

from fuse.atomic import check_writable
from fuse.cli import run_command
from fuse.cli.ranges import positive_int
from fuse.errors import ProvenanceError, RecordingError, WriteError
from fuse.prep.mvsec import DEFAULT_SEQUENCES, ExportSummary, export_sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequences", nargs="*", default=list(DEFAULT_SEQUENCES),
                        help="sequence names, e.g. outdoor_day1 (default: the five outdoor sequences)")
    parser.add_argument("--root", required=True, help="folder holding <seq>_data.hdf5 and <seq>_gt.hdf5")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--numbins", type=positive_int, default=3, help="voxel grid bins (default 3)")
    parser.add_argument("--save-events", action="store_true", help="also store each raw event window")
    parser.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    parser.add_argument("--chunk-size", type=positive_int, default=1 << 20,
                        help="events per hdf5 read when searching the time column (default 1048576)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Export every sequence; a bad one is reported and the others go on (exit 2 at the end)."""
    failed = []
    check_writable(args.out, create=False)
    for sequence in args.sequences:
        try:
            summary = _export(args, sequence, failed)
        except WriteError as err:
            raise WriteError(err.errno, f"{err} (finished files are kept; rerun to continue)", err.filename) from None
        if summary is not None:
            print(summary)
    if failed:
        print(f"failed: {', '.join(failed)} (files created for them by this run were removed)", file=sys.stderr)
        return 2
    return 0


def _export(args: argparse.Namespace, sequence: str, failed: list[str]) -> ExportSummary | None:
    """Export one sequence; a bad recording is reported, added to ``failed`` and gives None."""
    try:
        return export_sequence(
            args.root, args.out, sequence, num_bins=args.numbins, save_events=args.save_events,
            overwrite=args.overwrite, chunk_size=args.chunk_size,
        )
    except (RecordingError, ProvenanceError) as err:  # reported here: the other sequences go on
        if args.debug:
            raise
        print(f"error: sequence {sequence}: {err}", file=sys.stderr)
        failed.append(sequence)
        return None


if __name__ == "__main__":
    sys.exit(main())
