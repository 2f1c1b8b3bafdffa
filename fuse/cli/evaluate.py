"""``python -m fuse eval``: score predicted depths with the published protocol.

Either two folders (``--pred DIR --target DIR``, matched by sorted name) or a model on a split
(``--checkpoint CKPT --split LIST``): the model's predictions are written with ``infer`` into
``--pred`` (restartable) and scored against the split's depth maps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fuse.atomic import WriteError, write_text_atomic
from fuse.data.constants import DATASETS, dataset_info
from fuse.engine.metrics import (
    PRED_FORMATS,
    EvalInputError,
    depth_settings,
    evaluate_folders,
    evaluate_pairs,
    format_table,
    write_json,
)
from fuse.engine.published import SEQUENCES, SIZES, PublishedRow, fuse_row, peer_rows

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval`` options."""
    parser.add_argument("--pred", help="folder of predicted depth .npy files (with --checkpoint: infer's output folder)")
    parser.add_argument("--target", help="folder of ground-truth metric depth .npy files")
    parser.add_argument("--checkpoint", help="run this model on --split first (instead of reading --pred/--target)")
    parser.add_argument("--split", help="processed split list whose depth maps are the targets (with --checkpoint)")
    parser.add_argument("--size", type=int, default=266, help="network input size for --checkpoint (default 266)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="precision of the network for --checkpoint (bf16: faster, not the published protocol)")
    parser.add_argument("--max-depth", type=float, default=None,
                        help="metric head scale of an upstream --checkpoint (it is not recorded in such files)")
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
    """Evaluate, print the table, write the requested reports; exit 2 on unusable input or output."""
    try:
        rows = published_rows(args.dataset, args.compare_published, args.sequence)
        if args.checkpoint or args.split:
            return _evaluate_model(args, rows)
        if not (args.pred and args.target):
            raise EvalInputError("give --pred and --target folders, or --checkpoint and --split")
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
        return _report(args, metrics, rows)
    except (EvalInputError, ValueError, FileNotFoundError, WriteError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _evaluate_model(args: argparse.Namespace, rows: list[PublishedRow]) -> int:
    """Predict the split with ``infer`` (into ``--pred``), then score against its depth maps."""
    from fuse.cli import infer
    from fuse.engine.inference import SplitSource

    if not (args.checkpoint and args.split):
        raise EvalInputError("--checkpoint and --split go together")
    args.pred = args.pred or str(Path("outputs") / "eval" / Path(args.checkpoint).stem)
    infer_parser = argparse.ArgumentParser()
    infer.add_arguments(infer_parser)
    infer_argv = ["--checkpoint", args.checkpoint, "--split", args.split, "--dataset", args.dataset,
                  "--out", args.pred, "--size", str(args.size), "--precision", args.precision]
    if args.max_depth is not None:
        infer_argv += ["--max-depth", str(args.max_depth)]
    if args.no_progress:
        infer_argv.append("--no-progress")
    status = infer.run(infer_parser.parse_args(infer_argv))
    if status:
        return status
    source = SplitSource(args.split)
    pairs = [(Path(args.pred) / "depth" / f"{stem}.npy", depth) for stem, (_, depth, _) in zip(source.stems, source.samples)]
    args.target = args.split
    metrics = evaluate_pairs(pairs, args.dataset, pred_format=args.pred_format, max_depth=args.clip_distance,
                             reg_factor=args.reg_factor, rescale_target=args.rescale_target,
                             progress=not args.no_progress)
    return _report(args, metrics, rows)


def _report(args: argparse.Namespace, metrics: dict, rows: list[PublishedRow]) -> int:
    table = format_table(metrics, args.dataset, rows)
    print(table, end="")
    if args.markdown:
        write_text_atomic(args.markdown, table)
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
