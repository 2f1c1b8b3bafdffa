"""``python -m fuse eval``: score a folder of predicted depths with the published protocol."""
from __future__ import annotations

import argparse
import sys

from fuse.data.constants import DATASETS, dataset_info
from fuse.engine.metrics import (
    PRED_FORMATS,
    EvalInputError,
    depth_settings,
    evaluate_folders,
    format_table,
    write_atomic,
    write_json,
)
from fuse.engine.published import SEQUENCES, SIZES, PublishedRow, fuse_row, peer_rows

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval`` options."""
    parser.add_argument("--pred", required=True, help="folder of predicted depth .npy files")
    parser.add_argument("--target", required=True, help="folder of ground-truth metric depth .npy files")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument(
        "--pred-format",
        choices=PRED_FORMATS,
        default="metric",
        help="how predictions are stored: metric depth (what the published tables used), "
        "normalized log depth, or disparity (inverted and clipped to the evaluated range)",
    )
    parser.add_argument("--clip-distance", type=float, default=None, help="D_max in metres (default: the dataset's)")
    parser.add_argument("--reg-factor", type=float, default=None, help="alpha of the log encoding (default: the dataset's)")
    parser.add_argument(
        "--rescale-target",
        action="store_true",
        help="rescale each frame's kept targets so their maximum is D_max, as the published "
        "script does when run without --metric",
    )
    parser.add_argument("--json", default=None, help="write every metric to this JSON file")
    parser.add_argument("--markdown", default=None, help="write the table to this Markdown file")
    parser.add_argument(
        "--compare-published",
        choices=SIZES,
        default=None,
        metavar="SIZE",
        help=f"show the published FUSE row of this encoder size ({', '.join(SIZES)}) and peers",
    )
    parser.add_argument(
        "--sequence",
        default=None,
        choices=sorted({name for names in SEQUENCES.values() for name in names}),
        help="test sequence the published rows refer to (MVSEC: outdoor_day1 or outdoor_night1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def published_rows(dataset: str, size: str | None, sequence: str | None) -> list[PublishedRow]:
    """The FUSE row and peer rows to print beside a run, or none when no size is asked for."""
    if size is None:
        return []
    return [fuse_row(dataset, size, sequence), *peer_rows(dataset, sequence)]


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the requested reports; exit 2 on unusable input."""
    try:
        rows = published_rows(args.dataset, args.compare_published, args.sequence)
        metrics = evaluate_folders(
            args.pred,
            args.target,
            args.dataset,
            pred_format=args.pred_format,
            max_depth=args.clip_distance,
            reg_factor=args.reg_factor,
            rescale_target=args.rescale_target,
            progress=not args.no_progress,
        )
    except (EvalInputError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    table = format_table(metrics, args.dataset, rows)
    print(table, end="")
    if args.markdown:
        write_atomic(args.markdown, table)
    if args.json:
        settings = {
            "dataset": dataset_info(args.dataset).name,
            "pred": str(args.pred),
            "target": str(args.target),
            "pred_format": args.pred_format,
            "rescale_target": args.rescale_target,
            **depth_settings(args.dataset, args.clip_distance, args.reg_factor),
        }
        write_json(args.json, {**metrics, "settings": settings})
    return 0
