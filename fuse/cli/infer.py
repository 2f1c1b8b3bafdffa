"""``python -m fuse infer``: depth maps, colored depth and panels for a split list, a raw recording or an event file.

The command line of ``fuse.evaluate.prediction.predict_to_folder`` (outputs, ``provenance.json``,
restarts and defaults from the checkpoint are described there). Bad input (checkpoint, split
list, data file, recording, out-of-range option) and an output folder that refuses writes give
one line naming the file and exit code 2, and create nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fuse.cli.ranges import positive_float, positive_int
from fuse.data.constants import DATASETS
from fuse.errors import UsageError
from fuse.evaluate.inference import PRECISIONS, EventWindows
from fuse.evaluate.prediction import FALLBACK_SIZE, MIN_SIZE, PredictionRequest, predict_to_folder
from fuse.export.runtime import RUNTIMES
from fuse.layers.dpt import HEAD_KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``infer`` options."""
    parser.add_argument("--checkpoint", required=True, help="this project's checkpoint, a FUSE release or a DA-V2 file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--split", help="processed split list (<image.png> <depth.npy> <voxel.npy> per line)")
    source.add_argument("--recording", help="raw MVSEC-format recording DIR/NAME (NAME_data.hdf5 + NAME_gt.hdf5)")
    source.add_argument("--events", help="event file of a real camera (AEDAT 4, Prophesee RAW EVT 2/3 or DAT, DSEC "
                                         "events.h5, .npy, text); docs/event_files.md")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--window-ms", type=positive_float, default=None,
                        help="with --events: frames of this many milliseconds of events (default 50)")
    window.add_argument("--window-events", type=positive_int, default=None,
                        help="with --events: frames of this many events instead of fixed durations")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                        help="fixes the depth color scale (default: the checkpoint's training dataset; "
                             "mvsec for --recording)")
    parser.add_argument("--out", default=None,
                        help="output folder (default OUT_ROOT/<checkpoint>-<source>-<identity hash>)")
    parser.add_argument("--out-root", default=str(Path("outputs") / "infer"),
                        help="where the default --out folders are made (default outputs/infer)")
    parser.add_argument("--size", type=int, default=None,
                        help=f"network input lower bound, a multiple of 14 >= {MIN_SIZE} (default: the "
                             f"checkpoint's training input size, else {FALLBACK_SIZE})")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (faithful, default) or bf16 (a bfloat16 copy of the weights: faster, "
                             "relative depth error ~3e-3, see BENCHMARKS.md)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="torch (default); onnx: exported for the run's input size and run by onnxruntime "
                             "(CPU, fp32; docs/export.md)" + (", compile: torch.compile" if "compile" in RUNTIMES else ""))
    parser.add_argument("--mp4", action="store_true", help="also write OUT/panels.mp4")
    parser.add_argument("--fps", type=positive_float, default=10.0, help="frame rate of panels.mp4")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N frames")
    parser.add_argument("--head", choices=HEAD_KINDS, default=None,
                        help="head ending for files that do not record it (upstream FUSE files: metric)")
    parser.add_argument("--max-depth", type=positive_float, default=None,
                        help="metric head scale for files that do not record it (upstream: 80 MVSEC, 1000 DENSE)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the folder's earlier outputs and predict every frame again")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def request_from(args: argparse.Namespace) -> PredictionRequest:
    """The engine's request from the command line."""
    return PredictionRequest(
        checkpoint=args.checkpoint, split=args.split, recording=args.recording, events=event_windows(args),
        out=args.out, out_root=args.out_root,
        dataset=args.dataset, size=args.size, precision=args.precision, device=args.device, runtime=args.runtime,
        batch_size=args.batch_size, limit=args.limit, head=args.head, max_depth=args.max_depth,
        overwrite=args.overwrite, mp4=args.mp4, fps=args.fps, progress=not args.no_progress)


def event_windows(args: argparse.Namespace) -> EventWindows | None:
    """How ``--events`` is cut into frames; the window options without ``--events`` are refused."""
    if args.events is None:
        if args.window_ms is not None or args.window_events is not None:
            raise UsageError("--window-ms and --window-events cut an --events file into frames; give --events FILE")
        return None
    return EventWindows(args.events, args.window_ms or 50.0, args.window_events)


def run(args: argparse.Namespace) -> int:
    """Predict and write every frame."""
    print(predict_to_folder(request_from(args)).summary)
    return 0
