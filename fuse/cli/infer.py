"""``python -m fuse infer``: depth maps, colored depth and panels for a split list or a raw recording.

Outputs under ``--out`` (every file written to a temp name and renamed, so an interrupted run
never leaves a partial file):

* ``depth/<stem>.npy``: float32 H×W at the sensor resolution; metres for a metric head,
  relative inverse depth for a relative head (evaluate with ``--pred-format disparity``);
* ``color/<stem>.png``: the prediction colored (``fuse.engine.visualize``);
* ``panels/<stem>.png``: image | events | prediction | ground truth;
* ``panels.mp4`` with ``--mp4``.

``provenance.json`` records what made the folder (checkpoint content hash, model settings,
input size, precision, dataset, source). A rerun with the same identity skips frames whose three
files exist, so it finishes an interrupted run (and removes the temp files of one killed
mid-write); a rerun of another checkpoint or other settings into the same folder is refused
before anything is written, unless ``--overwrite`` starts over. The default ``--out`` is named
after the checkpoint, the source and that identity, so different runs never share it.

Settings the checkpoint records (input size, dataset, head, max depth, event bins) are the
defaults; an option that overrides one of them with another value is printed. Bad input
(checkpoint, split list, data file, recording, out-of-range option) and an output folder that
refuses writes give one line naming the file and exit code 2, and create nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fuse.atomic import check_writable, remove_stale_temps
from fuse.data.constants import DATASETS, DatasetInfo, dataset_info
from fuse.data.prep import save_npy
from fuse.engine.inference import (
    PRECISIONS,
    Frame,
    FrameRef,
    RecordingSource,
    SplitSource,
    predict,
    recording_paths,
)
from fuse.engine.visualize import (
    Mp4Writer,
    colorize_depth,
    colorize_disparity,
    depth_colorbar,
    prediction_panel,
    relative_colorbar,
    write_png_atomic,
)
from fuse.engine.weights import FileLayout, load_model
from fuse.models import ModelConfig
from fuse.models.dpt import HEAD_KINDS
from fuse.cli.ranges import positive_float, positive_int
from fuse.errors import UsageError
from fuse.provenance import OutputFolder, file_identity, file_sha256, identity_key

# Network input of files that do not record one (DA-V2 releases, upstream FUSE): FUSE's evaluation size.
FALLBACK_SIZE = 266
MIN_SIZE = 56  # FreDFuse halves the token grid twice (fuse.models.depth_models.MIN_FUSION_GRID)
OUTPUT_PATTERNS = ("depth/*.npy", "color/*.png", "panels/*.png", "panels.mp4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``infer`` options."""
    parser.add_argument("--checkpoint", required=True, help="this project's checkpoint, a FUSE release or a DA-V2 file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--split", help="processed split list (<image.png> <depth.npy> <voxel.npy> per line)")
    source.add_argument("--recording", help="raw MVSEC-format recording DIR/NAME (NAME_data.hdf5 + NAME_gt.hdf5)")
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
        raise UsageError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def _check_arguments(args: argparse.Namespace) -> None:
    if args.size is not None and (args.size < MIN_SIZE or args.size % 14):
        raise UsageError(f"--size must be a multiple of 14 and at least {MIN_SIZE}, got {args.size}")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")


@dataclass(frozen=True)
class Settings:
    """Input settings of a run: from the options, else from the checkpoint, else the fallbacks."""

    size: int
    dataset: str


def _settings(args: argparse.Namespace, layout: FileLayout) -> Settings:
    """Defaults from what the checkpoint records; an explicit option that differs is printed."""
    data = (layout.run_config or {}).get("data") or {}
    recorded_size, recorded_dataset = data.get("input_size"), data.get("dataset")
    _note_override(args.checkpoint, "--size", args.size, recorded_size, "input size")
    _note_override(args.checkpoint, "--dataset", args.dataset, recorded_dataset, "dataset")
    size = args.size or recorded_size or FALLBACK_SIZE
    dataset = args.dataset or recorded_dataset
    if dataset is None:
        dataset = "mvsec"
        if args.split is not None:
            print(f"note: {args.checkpoint} does not record its dataset; depth is colored on the MVSEC scale "
                  "(pass --dataset dense or eventscape for those)", file=sys.stderr)
    return Settings(size, dataset)


def _note_override(checkpoint: str, option: str, given: object, recorded: object, what: str) -> None:
    if given is not None and recorded is not None and given != recorded:
        print(f"note: {option} {given} overrides the {what} {recorded} recorded in {checkpoint}", file=sys.stderr)


def _load_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, FileLayout]:
    overrides = {key: value for key, value in (("head", args.head), ("max_depth", args.max_depth)) if value is not None}
    model, report = load_model(args.checkpoint, **overrides)
    layout = report.layout
    if layout.config is not None:
        for key, value in overrides.items():
            _note_override(args.checkpoint, f"--{key.replace('_', '-')}", value, getattr(layout.config, key), key)
    print(report.summary().splitlines()[0], file=sys.stderr)
    return model.to(device).eval(), layout


def _note_unrecorded_scale(args: argparse.Namespace, layout: FileLayout, config: ModelConfig, info: DatasetInfo) -> None:
    if (not layout.ours and config.head == "metric" and args.max_depth is None
            and config.max_depth != info.max_depth):
        print(f"note: {args.checkpoint} does not record its depth scale; the metric head is scaled to "
              f"{config.max_depth:g} m (pass --max-depth {info.max_depth:g} for {info.name})", file=sys.stderr)


def identity(args: argparse.Namespace, config: ModelConfig, settings: Settings) -> dict:
    """What determines the files of a run: checkpoint content, model, input settings, data source."""
    source = (file_identity(args.split) if args.split is not None
              else {name: file_identity(path, content=False) for name, path in
                    zip(("data", "gt"), recording_paths(args.recording))})
    return {"checkpoint_sha256": file_sha256(args.checkpoint), "model": config.to_dict(),
            "input_size": settings.size, "precision": args.precision, "dataset": settings.dataset,
            "source": source}


def default_out(args: argparse.Namespace, made_by: dict) -> Path:
    """``<out-root>/<checkpoint>-<source>-<hash>``: one folder per identity, so runs never collide."""
    source = Path(args.split if args.split is not None else args.recording).stem
    return Path(args.out_root) / f"{Path(args.checkpoint).stem}-{source}-{identity_key(made_by)}"


def _colorize(prediction: np.ndarray, metric: bool, info: DatasetInfo) -> np.ndarray:
    if metric:
        return colorize_depth(prediction, info.max_depth, info.reg_factor)
    return colorize_disparity(prediction)


def _write_frame(frame: Frame, prediction: np.ndarray, paths: OutputPaths, metric: bool,
                 info: DatasetInfo) -> np.ndarray:
    """Write depth, color and panel of one frame; returns the panel (with a color bar of the prediction's scale)."""
    color = _colorize(prediction, metric, info)
    truth = None if frame.depth is None else colorize_depth(frame.depth, info.max_depth, info.reg_factor)
    height = color.shape[0]
    colorbar = depth_colorbar(height, info.max_depth, info.reg_factor) if metric else relative_colorbar(height)
    panel = prediction_panel(frame.image, frame.voxel, color, truth, colorbar=colorbar)
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
        raise UsageError(f"cannot read the existing panel {path} for the video; rerun with --overwrite")
    return panel


def _start_outputs(folder: OutputFolder, outputs: ExitStack, args: argparse.Namespace) -> Mp4Writer | None:
    """Create the output folder, record what makes it, drop dead writers' temp files, open the video."""
    check_writable(folder.folder)
    folder.start()
    for sub in ("depth", "color", "panels", "."):
        remove_stale_temps(folder.folder / sub)
    return outputs.enter_context(Mp4Writer(folder.folder / "panels.mp4", args.fps)) if args.mp4 else None


@dataclass(frozen=True)
class InferResult:
    """What a finished ``infer`` produced (``eval --checkpoint`` scores it)."""

    out: Path
    stems: list[str]
    config: ModelConfig
    dataset: str
    summary: str


def infer(args: argparse.Namespace) -> InferResult:
    """Check everything, then predict every frame still to do; nothing is created before the checks pass."""
    _check_arguments(args)
    device = resolve_device(args.device)
    model, layout = _load_model(args, device)
    settings = _settings(args, layout)
    info = dataset_info(settings.dataset)
    _note_unrecorded_scale(args, layout, model.config, info)
    metric = model.config.head == "metric"
    started = time.perf_counter()
    with ExitStack() as stack:
        source = stack.enter_context(SplitSource(args.split, model.config.event_bins) if args.split is not None
                                     else RecordingSource(args.recording, model.config.event_bins))
        made_by = identity(args, model.config, settings)
        out = Path(args.out) if args.out is not None else default_out(args, made_by)
        folder = OutputFolder(out, "infer", made_by, OUTPUT_PATTERNS, overwrite=args.overwrite)
        folder.check()
        check_writable(out, create=False)
        refs = list(source)[: args.limit]
        paths = {ref.stem: OutputPaths.of(out, ref.stem) for ref in refs}
        todo = {ref.stem for ref in refs if args.overwrite or not paths[ref.stem].done()}
        bar = stack.enter_context(tqdm(total=len(refs), unit="frame", desc="infer", disable=args.no_progress))
        video = None
        for index, (chunk, frames) in enumerate(_chunks(refs, todo, args.batch_size)):
            if index == 0:  # the first frames loaded: only now is anything created
                video = _start_outputs(folder, stack, args)
            panels = {}
            if frames:
                predictions = predict(model, [f.image for f in frames], [f.voxel for f in frames], settings.size,
                                      precision=args.precision)
                panels = {frame.stem: _write_frame(frame, prediction, paths[frame.stem], metric, info)
                          for frame, prediction in zip(frames, predictions)}
            if video is not None:
                for ref in chunk:
                    video.write(panels[ref.stem] if ref.stem in panels else _read_panel(paths[ref.stem].panel))
            bar.update(len(chunk))
    summary = _summary(args, source, out, len(refs), len(todo), model.config, settings,
                       time.perf_counter() - started)
    return InferResult(out, [ref.stem for ref in refs], model.config, settings.dataset, summary)


def _summary(args: argparse.Namespace, source: SplitSource | RecordingSource, out: Path, frames: int, predicted: int,
             config: ModelConfig, settings: Settings, seconds: float) -> str:
    """The final line: what was read, what was written and what the depth files hold."""
    content = (f"metric depth in metres (max {config.max_depth:g} m)" if config.head == "metric"
               else "relative inverse depth (evaluate with --pred-format disparity)")
    skipped = getattr(source, "skipped", None)
    selection = (f"; {sum(skipped.values())} depth frames not selected ({', '.join(sorted(skipped))})"
                 if skipped else "")
    video = f", {out / 'panels.mp4'}" if args.mp4 else ""
    return (f"infer: {frames} frames from {source.description} -> {out} ({predicted} predicted, "
            f"{frames - predicted} already done{selection}); {content}, input {settings.size} px{video}; "
            f"{seconds:.1f} s")


def run(args: argparse.Namespace) -> int:
    """Predict and write every frame."""
    print(infer(args).summary)
    return 0
