"""``python -m fuse infer``: depth maps, colored depth and panels for a split list or a raw recording.

Outputs under ``--out`` (every file written to a temp name and renamed, so an interrupted run
never leaves a partial file):

* ``depth/<stem>.npy``: float32 H×W at the sensor resolution; metres for a metric head,
  relative inverse depth for a relative head (evaluate with ``--pred-format disparity``);
* ``color/<stem>.png``: the prediction colored (``fuse.engine.visualize``);
* ``panels/<stem>.png``: image | events | prediction | ground truth;
* ``panels.mp4`` with ``--mp4``.

A frame whose three files exist is skipped unless ``--overwrite``, so a rerun finishes an
interrupted one (and removes the temp files of one killed mid-write). Bad input (checkpoint,
split list, data file, recording) and an output folder that refuses writes (checked before the
first prediction) give one line naming the file and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fuse.atomic import WriteError, check_writable, remove_stale_temps
from fuse.data.constants import DATASETS, DatasetInfo, dataset_info
from fuse.data.prep import save_npy
from fuse.engine.inference import PRECISIONS, Frame, FrameRef, RecordingSource, SplitSource, predict
from fuse.engine.visualize import Mp4Writer, colorize_depth, colorize_disparity, prediction_panel, write_png_atomic
from fuse.engine.weights import load_model
from fuse.models import ModelConfig
from fuse.models.dpt import HEAD_KINDS

EXIT_BAD_INPUT = 2


class InferInputError(ValueError):
    """Input the command cannot use; the message names the culprit."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``infer`` options."""
    parser.add_argument("--checkpoint", required=True, help="this project's checkpoint, a FUSE release or a DA-V2 file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--split", help="processed split list (<image.png> <depth.npy> <voxel.npy> per line)")
    source.add_argument("--recording", help="raw MVSEC-format recording DIR/NAME (NAME_data.hdf5 + NAME_gt.hdf5)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                        help="fixes the depth color scale; required with --split, mvsec for --recording")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=266, help="network input lower bound (multiple of 14)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (faithful, default) or bf16 (a bfloat16 copy of the weights: faster, "
                             "relative depth error ~3e-3, see BENCHMARKS.md)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    parser.add_argument("--mp4", action="store_true", help="also write OUT/panels.mp4")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of panels.mp4")
    parser.add_argument("--limit", type=int, default=None, help="only the first N frames")
    parser.add_argument("--head", choices=HEAD_KINDS, default=None,
                        help="head ending for files that do not record it (upstream FUSE files: metric)")
    parser.add_argument("--max-depth", type=float, default=None,
                        help="metric head scale for files that do not record it (upstream: 80 MVSEC, 1000 DENSE)")
    parser.add_argument("--overwrite", action="store_true", help="redo frames whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


@dataclass(frozen=True)
class OutputPaths:
    """Where one frame's outputs go."""

    depth: Path
    color: Path
    panel: Path

    @classmethod
    def of(cls, out: Path, stem: str) -> "OutputPaths":
        return cls(out / "depth" / f"{stem}.npy", out / "color" / f"{stem}.png", out / "panels" / f"{stem}.png")

    def done(self) -> bool:
        return self.depth.is_file() and self.color.is_file() and self.panel.is_file()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else must be a usable torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InferInputError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InferInputError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def _check_arguments(args: argparse.Namespace) -> None:
    if args.split is not None and args.dataset is None:
        raise InferInputError("--split needs --dataset (mvsec, dense or eventscape) to fix the depth color scale")
    if args.size < 14 or args.size % 14:
        raise InferInputError(f"--size must be a positive multiple of 14, got {args.size}")
    if args.batch_size < 1:
        raise InferInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 0:
        raise InferInputError(f"--limit must not be negative, got {args.limit}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InferInputError(f"--out {args.out} exists and is not a folder")


def _load_model(args: argparse.Namespace, device: torch.device, info: DatasetInfo) -> nn.Module:
    overrides = {key: value for key, value in (("head", args.head), ("max_depth", args.max_depth)) if value is not None}
    model, report = load_model(args.checkpoint, **overrides)
    config = model.config
    print(report.summary().splitlines()[0], file=sys.stderr)
    if (not report.layout.ours and config.head == "metric" and args.max_depth is None
            and config.max_depth != info.max_depth):
        print(f"note: {args.checkpoint} does not record its depth scale; the metric head is scaled to "
              f"{config.max_depth:g} m (pass --max-depth {info.max_depth:g} for {info.name})", file=sys.stderr)
    return model.to(device).eval()


def _colorize(prediction: np.ndarray, metric: bool, info: DatasetInfo) -> np.ndarray:
    if metric:
        return colorize_depth(prediction, info.max_depth, info.reg_factor)
    return colorize_disparity(prediction)


def _write_frame(frame: Frame, prediction: np.ndarray, paths: OutputPaths, metric: bool,
                 info: DatasetInfo) -> np.ndarray:
    """Write depth, color and panel of one frame; returns the panel."""
    color = _colorize(prediction, metric, info)
    truth = None if frame.depth is None else colorize_depth(frame.depth, info.max_depth, info.reg_factor)
    panel = prediction_panel(frame.image, frame.voxel, color, truth)
    save_npy(paths.depth, prediction.astype(np.float32, copy=False))
    write_png_atomic(paths.color, color)
    write_png_atomic(paths.panel, panel)
    return panel


def _chunks(refs: list[FrameRef], todo: set[str], batch_size: int) -> Iterator[tuple[list[FrameRef], list[Frame]]]:
    """Consecutive runs of ``refs`` in order, each with the loaded frames of it still to predict.

    A run holds at most ``batch_size`` such frames, all of one original size (a batch is one
    tensor); frames already done ride along in the run so the video stays in order.
    """
    chunk: list[FrameRef] = []
    frames: list[Frame] = []
    for ref in refs:
        if ref.stem in todo:
            frame = ref.load()
            if frames and (len(frames) == batch_size or frame.image.shape != frames[0].image.shape):
                yield chunk, frames
                chunk, frames = [], []
            frames.append(frame)
        chunk.append(ref)
    if chunk:
        yield chunk, frames


def _read_panel(path: Path) -> np.ndarray:
    panel = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if panel is None:
        raise InferInputError(f"cannot read the existing panel {path} for the video; rerun with --overwrite")
    return panel


def _infer(args: argparse.Namespace) -> str:
    _check_arguments(args)
    info = dataset_info(args.dataset or "mvsec")
    device = resolve_device(args.device)
    model = _load_model(args, device, info)
    metric = model.config.head == "metric"
    out = check_writable(args.out)
    for folder in ("depth", "color", "panels", "."):
        remove_stale_temps(out / folder)
    started = time.perf_counter()
    source = (SplitSource(args.split, model.config.event_bins) if args.split is not None
              else RecordingSource(args.recording, model.config.event_bins))
    with source:
        refs = list(source)[: args.limit]
        paths = {ref.stem: OutputPaths.of(out, ref.stem) for ref in refs}
        todo = {ref.stem for ref in refs if args.overwrite or not paths[ref.stem].done()}
        video_context = Mp4Writer(out / "panels.mp4", args.fps) if args.mp4 else nullcontext()
        with video_context as video, tqdm(total=len(refs), unit="frame", desc="infer", disable=args.no_progress) as bar:
            for chunk, frames in _chunks(refs, todo, args.batch_size):
                panels = {}
                if frames:
                    predictions = predict(model, [f.image for f in frames], [f.voxel for f in frames], args.size,
                                          precision=args.precision)
                    panels = {frame.stem: _write_frame(frame, prediction, paths[frame.stem], metric, info)
                              for frame, prediction in zip(frames, predictions)}
                if video is not None:
                    for ref in chunk:
                        video.write(panels[ref.stem] if ref.stem in panels else _read_panel(paths[ref.stem].panel))
                bar.update(len(chunk))
    return _summary(args, source, out, len(refs), len(todo), model.config, time.perf_counter() - started)


def _summary(args: argparse.Namespace, source: SplitSource | RecordingSource, out: Path, frames: int, predicted: int,
             config: ModelConfig, seconds: float) -> str:
    """The final line: what was read, what was written and what the depth files hold."""
    content = (f"metric depth in metres (max {config.max_depth:g} m)" if config.head == "metric"
               else "relative inverse depth (evaluate with --pred-format disparity)")
    skipped = getattr(source, "skipped", None)
    selection = (f"; {sum(skipped.values())} depth frames not selected ({', '.join(sorted(skipped))})"
                 if skipped else "")
    video = f", {out / 'panels.mp4'}" if args.mp4 else ""
    return (f"infer: {frames} frames from {source.description} -> {out} ({predicted} predicted, "
            f"{frames - predicted} already done{selection}); {content}{video}; {seconds:.1f} s")


def run(args: argparse.Namespace) -> int:
    """Predict and write every frame; exit 2 with one message on unusable input or output."""
    try:
        print(_infer(args))
    except (ValueError, FileNotFoundError, WriteError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
