"""``python -m fuse eval``: score predicted depths with the published protocol.

Either two folders (``--pred DIR --target DIR``, matched by sorted name) or a model on a split
(``--checkpoint CKPT --split LIST``): the model's predictions are written with ``infer`` into
``--pred`` (restartable; reused only when ``provenance.json`` says the same checkpoint and
settings made them) and scored against the split's depth maps. Input size and dataset default
to what the checkpoint records. Predictions of a relative-depth model are never scored as
metric depth.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from fuse.atomic import write_text_atomic
from fuse.cli.ranges import positive_float, positive_int
from fuse.errors import EvalInputError, ProvenanceError, UsageError
from fuse.evaluate.inference import SplitSource
from fuse.evaluate.metrics import PRED_FORMATS, pair_files, write_json
from fuse.evaluate.prediction import PredictionRequest, predict_to_folder
from fuse.evaluate.protocols import PROTOCOLS, evaluate_pairs, given_options, known_datasets, protocol_named
from fuse.evaluate.published import SIZES, PublishedRow, all_rows, method_row, peer_rows
from fuse.provenance import MANIFEST, read_manifest
from fuse.registry import model_kind
from fuse.weights import FileLayout

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval`` options."""
    parser.add_argument("--pred", help="folder of predicted depth .npy files (with --checkpoint: infer's output folder)")
    parser.add_argument("--target", help="folder of ground-truth metric depth .npy files")
    parser.add_argument("--checkpoint", help="run this model on --split first (instead of reading --pred/--target)")
    parser.add_argument("--split", help="processed split list whose depth maps are the targets (with --checkpoint)")
    parser.add_argument("--size", type=int, default=None,
                        help="network input size for --checkpoint (default: the checkpoint's training size, else 266)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="precision of the network for --checkpoint (bf16: faster, not the published protocol)")
    parser.add_argument("--max-depth", type=positive_float, default=None,
                        help="metric head scale of an upstream --checkpoint (it is not recorded in such files)")
    parser.add_argument("--dataset", choices=known_datasets(), default=None,
                        help="depth range and log encoding of the protocol (default with --checkpoint: the "
                             "checkpoint's training dataset)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N frames")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --checkpoint: delete earlier predictions in --pred and predict again")
    parser.add_argument(
        "--pred-format",
        choices=PRED_FORMATS,
        default=None,
        help="e2depth: how predictions are stored: metric depth (the default, what the published tables used), "
        "normalized log depth, or disparity (inverted and clipped to the evaluated range)",
    )
    parser.add_argument("--clip-distance", type=positive_float, default=None,
                        help="e2depth: D_max in metres (default: the dataset's)")
    parser.add_argument("--reg-factor", type=positive_float, default=None,
                        help="e2depth: alpha of the log encoding (default: the dataset's)")
    parser.add_argument(
        "--rescale-target",
        action="store_true",
        default=None,
        help="e2depth: rescale each frame's kept targets so their maximum is D_max, as the published "
        "script does when run without --metric",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS.names(), default="e2depth",
                        help="evaluation protocol (fuse.evaluate.protocols; default: E2Depth per-frame, the FUSE tables')")
    parser.add_argument("--json", default=None, help="write every metric to this JSON file")
    parser.add_argument("--markdown", default=None, help="write the table to this Markdown file")
    parser.add_argument(
        "--compare-published",
        choices=SIZES,
        default=None,
        metavar="SIZE",
        help=f"show the published row of --method of this encoder size ({', '.join(SIZES)}) and its peers",
    )
    parser.add_argument("--method", default="FUSE", choices=sorted({row.method for row in all_rows()}),
                        help="whose published row --compare-published shows (default FUSE)")
    parser.add_argument(
        "--sequence",
        default=None,
        choices=sorted({row.sequence for row in all_rows()}),
        help="test sequence the published rows refer to (MVSEC: outdoor_day1 or outdoor_night1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def published_rows(args: argparse.Namespace) -> list[PublishedRow]:
    """The method's row and its peers' rows to print beside a run, or none when no size is asked for."""
    if args.compare_published is None:
        return []
    where = dict(dataset=args.dataset, sequence=args.sequence, protocol=args.protocol)
    return [method_row(args.method, size=args.compare_published, **where), *peer_rows(args.method, **where)]


def _check_arguments(args: argparse.Namespace) -> None:
    if not (args.checkpoint or args.split) and args.dataset is None:
        raise UsageError(f"--dataset is required when scoring folders ({', '.join(known_datasets())})")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the requested reports."""
    _check_arguments(args)
    if args.checkpoint or args.split:
        return _evaluate_model(args)
    if not (args.pred and args.target):
        raise UsageError("give --pred and --target folders, or --checkpoint and --split")
    _check_recorded_predictions(Path(args.pred), args)
    pairs = pair_files(args.pred, args.target, protocol_named(args.protocol).target_suffixes)[: args.limit]
    metrics = evaluate_pairs(pairs, args.dataset, args.protocol, **_protocol_options(args))
    return _report(args, metrics)


def _protocol_options(args: argparse.Namespace) -> dict:
    """The options given on the command line; the protocol refuses those it does not take."""
    return given_options(protocol_named(args.protocol), pred_format=args.pred_format, max_depth=args.clip_distance,
                         reg_factor=args.reg_factor, rescale_target=args.rescale_target,
                         progress=False if args.no_progress else None)


def _check_prediction_kind(kind: str, head: str, where: str, args: argparse.Namespace) -> None:
    """A model's output is scored only by a protocol made for it; relative inverse depth scored as
    metric depth gives numbers without meaning."""
    output = model_kind(kind).output(head)
    protocol = protocol_named(args.protocol)
    if output not in protocol.scores:
        raise EvalInputError(f"{where} predicts {output.replace('_', ' ')}, which the {protocol.name} protocol does "
                             f"not score; it scores {', '.join(protocol.scores)}")
    if output == "relative_inverse_depth" and args.pred_format != "disparity":
        raise EvalInputError(
            f"{where} holds relative inverse depth (a relative-head model: a DA-V2 release, a stage-1/2 output or "
            f"the stand-in teacher), which has no metric scale; --pred-format {args.pred_format or 'metric'} would score it as "
            "metric depth. Evaluate a stage-3 (adapt) checkpoint, or pass --pred-format disparity")


def _check_recorded_predictions(pred: Path, args: argparse.Namespace) -> None:
    """Folder mode: when ``infer`` recorded what made the predictions, check that they fit the protocol."""
    for manifest in (pred / MANIFEST, pred.parent / MANIFEST):
        if manifest.is_file():
            try:
                made_by = read_manifest(manifest)
                model, dataset = made_by["model"], made_by["dataset"]
                kind, head = model["kind"], model["head"]
            except (ProvenanceError, KeyError, TypeError):
                return
            _check_prediction_kind(kind, head, f"{pred} (see {manifest})", args)
            if dataset != args.dataset:
                print(f"note: {pred} was predicted for {dataset} (see {manifest}); scoring with the "
                      f"{args.dataset} protocol", file=sys.stderr)
            return


def _evaluate_model(args: argparse.Namespace) -> int:
    """Predict the split with ``infer`` (into ``--pred``), then score against its depth maps."""
    if not (args.checkpoint and args.split):
        raise UsageError("--checkpoint and --split go together")
    request = PredictionRequest(
        checkpoint=args.checkpoint, split=args.split, out=args.pred, out_root=str(Path("outputs") / "eval"),
        dataset=args.dataset, size=args.size, precision=args.precision, limit=args.limit, max_depth=args.max_depth,
        overwrite=args.overwrite, progress=not args.no_progress, check=partial(_check_checkpoint, args))
    result = predict_to_folder(request)
    print(result.summary, file=sys.stderr)
    args.pred, args.dataset = str(result.out), result.dataset
    source = SplitSource(args.split)
    targets = dict(zip(source.stems, (depth for _, depth, _ in source.samples)))
    pairs = [(result.out / "depth" / f"{stem}.npy", targets[stem]) for stem in result.stems]
    args.target = args.split
    metrics = evaluate_pairs(pairs, args.dataset, args.protocol, **_protocol_options(args))
    return _report(args, metrics)


def _check_checkpoint(args: argparse.Namespace, layout: FileLayout) -> None:
    """Before spending time on predictions: the protocol's dataset is known, and a relative-head
    checkpoint is not scored as metric depth."""
    head = getattr(layout.config, "head", None) or model_kind(layout.kind).default_head
    _check_prediction_kind(layout.kind, head, f"checkpoint {args.checkpoint} ({layout.describe()})", args)
    if args.dataset is None and not ((layout.run_config or {}).get("data") or {}).get("dataset"):
        raise EvalInputError(f"checkpoint {args.checkpoint} does not record its dataset; pass --dataset (mvsec, "
                             "dense or eventscape): it fixes the evaluated depth range")


def _report(args: argparse.Namespace, metrics: dict) -> int:
    table = protocol_named(args.protocol).table(metrics, args.dataset, published_rows(args))
    print(table, end="")
    if args.markdown:
        write_text_atomic(args.markdown, table)
    if args.json:
        options = _protocol_options(args)
        settings = {"dataset": args.dataset.lower(), "pred": str(args.pred), "target": str(args.target),
                    "protocol": args.protocol, **protocol_named(args.protocol).settings(args.dataset, **options)}
        write_json(args.json, {**metrics, "settings": settings})
    return 0
