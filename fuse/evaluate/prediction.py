"""Prediction over a source into a restartable output folder: what ``infer`` and ``eval
--checkpoint`` both run.

Outputs under the folder (every file written to a temp name and renamed, so an interrupted run
never leaves a partial file): ``depth/<stem>.npy`` (float32 H×W at the sensor resolution; metres
for a metric head, relative inverse depth for a relative head), ``color/<stem>.png``,
``panels/<stem>.png`` (image | events | prediction | ground truth | colour bar) and, on request,
``panels.mp4``.

``provenance.json`` records what made the folder (checkpoint content hash, model settings, input
size, precision, dataset, source). A run with the same identity skips frames whose three files
exist, so it finishes an interrupted one; another checkpoint or other settings are refused before
anything is written, unless ``overwrite`` starts over. The default folder is named after the
checkpoint, the source and that identity, so different runs never share it. Settings the
checkpoint records (input size, dataset, head, max depth, event bins) are the defaults; an
explicit value that differs is printed.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fuse.atomic import check_writable, remove_stale_temps, save_npy_atomic
from fuse.data.constants import DatasetInfo, dataset_info
from fuse.evaluate.inference import EventWindows, Frame, FrameRef, FrameSource, open_frame_source, predict
from fuse.events.mvsec import recording_paths
from fuse.export.runtime import runtime_model
from fuse.evaluate.visualize import (
    Mp4Writer,
    colorize_depth,
    colorize_disparity,
    depth_colorbar,
    prediction_panel,
    relative_colorbar,
    write_png_atomic,
)
from fuse.weights import FileLayout, load_model
from fuse.errors import UsageError
from fuse.registry import ModelSettings
from fuse.provenance import OutputFolder, file_identity, file_sha256, identity_key

# Network input of files that do not record one (DA-V2 releases, upstream FUSE): FUSE's evaluation size.
FALLBACK_SIZE = 266
MIN_SIZE = 56  # FreDFuse halves the token grid twice (fuse.methods.fuse.models.MIN_FUSION_GRID)
OUTPUT_PATTERNS = ("depth/*.npy", "color/*.png", "panels/*.png", "panels.mp4")


@dataclass(frozen=True)
class PredictionRequest:
    """What to predict, with what, and where; None means "what the checkpoint records"."""

    checkpoint: str
    split: str | None = None
    recording: str | None = None
    events: EventWindows | None = None
    out: str | None = None
    out_root: str = str(Path("outputs") / "infer")
    dataset: str | None = None
    size: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    runtime: str = "torch"  # fuse.export.runtime.RUNTIMES
    batch_size: int = 4
    limit: int | None = None
    head: str | None = None
    max_depth: float | None = None
    overwrite: bool = False
    mp4: bool = False
    fps: float = 10.0
    progress: bool = True
    # Called with the checkpoint's layout once it is read, before anything is written (``eval``
    # refuses a model its protocol cannot score here, without reading the file twice).
    check: Callable[[FileLayout], None] | None = None


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


def _check_request(request: PredictionRequest) -> None:
    if request.size is not None and (request.size < MIN_SIZE or request.size % 14):
        raise UsageError(f"--size must be a multiple of 14 and at least {MIN_SIZE}, got {request.size}")
    if request.out is not None and Path(request.out).exists() and not Path(request.out).is_dir():
        raise UsageError(f"--out {request.out} exists and is not a folder")


@dataclass(frozen=True)
class Settings:
    """Input settings of a run: from the options, else from the checkpoint, else the fallbacks."""

    size: int
    dataset: str


def _settings(request: PredictionRequest, layout: FileLayout) -> Settings:
    """Defaults from what the checkpoint records; an explicit option that differs is printed."""
    data = (layout.run_config or {}).get("data") or {}
    recorded_size, recorded_dataset = data.get("input_size"), data.get("dataset")
    _note_override(request.checkpoint, "--size", request.size, recorded_size, "input size")
    _note_override(request.checkpoint, "--dataset", request.dataset, recorded_dataset, "dataset")
    size = request.size or recorded_size or FALLBACK_SIZE
    dataset = request.dataset or recorded_dataset
    if dataset is None:
        dataset = "mvsec"
        if request.split is not None:
            print(f"note: {request.checkpoint} does not record its dataset; depth is colored on the MVSEC scale "
                  "(pass --dataset dense or eventscape for those)", file=sys.stderr)
    return Settings(size, dataset)


def _note_override(checkpoint: str, option: str, given: object, recorded: object, what: str) -> None:
    if given is not None and recorded is not None and given != recorded:
        print(f"note: {option} {given} overrides the {what} {recorded} recorded in {checkpoint}", file=sys.stderr)


def _load_model(request: PredictionRequest, device: torch.device) -> tuple[nn.Module, FileLayout]:
    overrides = {key: value for key, value in (("head", request.head), ("max_depth", request.max_depth)) if value is not None}
    model, report = load_model(request.checkpoint, **overrides)
    layout = report.layout
    if layout.config is not None:
        for key, value in overrides.items():
            _note_override(request.checkpoint, f"--{key.replace('_', '-')}", value, getattr(layout.config, key), key)
    print(report.summary().splitlines()[0], file=sys.stderr)
    return model.to(device).eval(), layout


def load_for_prediction(request: PredictionRequest) -> tuple[nn.Module, Settings]:
    """The model of ``request.checkpoint`` in eval mode on the request's device, and its input size
    and dataset as ``infer`` decides them (option, else what the checkpoint records, else the fallback)."""
    _check_request(request)
    model, layout = _load_model(request, resolve_device(request.device))
    settings = _settings(request, layout)
    _note_unrecorded_scale(request, layout, model.config, dataset_info(settings.dataset))
    return model, settings


def _note_unrecorded_scale(request: PredictionRequest, layout: FileLayout, config: ModelSettings, info: DatasetInfo) -> None:
    if (not layout.ours and config.head == "metric" and request.max_depth is None
            and config.max_depth != info.max_depth):
        print(f"note: {request.checkpoint} does not record its depth scale; the metric head is scaled to "
              f"{config.max_depth:g} m (pass --max-depth {info.max_depth:g} for {info.name})", file=sys.stderr)


def identity(request: PredictionRequest, config: ModelSettings, settings: Settings) -> dict:
    """What determines the files of a run: checkpoint content, model, input settings, data source."""
    source = (file_identity(request.split) if request.split is not None
              else request.events.identity() if request.events is not None
              else {name: file_identity(path, content=False) for name, path in
                    zip(("data", "gt"), recording_paths(request.recording))})
    return {"checkpoint_sha256": file_sha256(request.checkpoint), "model": config.to_dict(),
            "input_size": settings.size, "precision": request.precision, "dataset": settings.dataset,
            "source": source, **({"runtime": request.runtime} if request.runtime != "torch" else {})}


def default_out(request: PredictionRequest, made_by: dict) -> Path:
    """``<out-root>/<checkpoint>-<source>-<hash>``: one folder per identity, so runs never collide."""
    source = Path(request.split if request.split is not None else request.recording if request.recording is not None
                  else request.events.path).stem
    return Path(request.out_root) / f"{Path(request.checkpoint).stem}-{source}-{identity_key(made_by)}"


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
    save_npy_atomic(paths.depth, prediction.astype(np.float32, copy=False))
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


def _start_outputs(folder: OutputFolder, outputs: ExitStack, request: PredictionRequest) -> Mp4Writer | None:
    """Create the output folder, record what makes it, drop dead writers' temp files, open the video."""
    check_writable(folder.folder)
    folder.start()
    for sub in ("depth", "color", "panels", "."):
        remove_stale_temps(folder.folder / sub)
    return outputs.enter_context(Mp4Writer(folder.folder / "panels.mp4", request.fps)) if request.mp4 else None


@dataclass(frozen=True)
class InferResult:
    """What a finished ``infer`` produced (``eval --checkpoint`` scores it)."""

    out: Path
    stems: list[str]
    config: ModelSettings
    dataset: str
    summary: str


def predict_to_folder(request: PredictionRequest) -> InferResult:
    """Check everything, then predict every frame still to do; nothing is created before the checks pass."""
    _check_request(request)
    device = resolve_device(request.device)
    model, layout = _load_model(request, device)
    if request.check is not None:
        request.check(layout)
    settings = _settings(request, layout)
    info = dataset_info(settings.dataset)
    _note_unrecorded_scale(request, layout, model.config, info)
    metric = model.config.head == "metric"
    network = runtime_model(model, request.runtime, device, request.precision)
    started = time.perf_counter()
    with ExitStack() as stack:
        source = stack.enter_context(open_frame_source(request.split, request.recording, request.events,
                                                       model.config.kind, model.config.event_bins))
        made_by = identity(request, model.config, settings)
        out = Path(request.out) if request.out is not None else default_out(request, made_by)
        folder = OutputFolder(out, "infer", made_by, OUTPUT_PATTERNS, overwrite=request.overwrite)
        folder.check()
        check_writable(out, create=False)
        refs = list(source)[: request.limit]
        paths = {ref.stem: OutputPaths.of(out, ref.stem) for ref in refs}
        todo = {ref.stem for ref in refs if request.overwrite or not paths[ref.stem].done()}
        bar = stack.enter_context(tqdm(total=len(refs), unit="frame", desc="infer", disable=not request.progress))
        video = None
        for index, (chunk, frames) in enumerate(_chunks(refs, todo, request.batch_size)):
            if index == 0:  # the first frames loaded: only now is anything created
                video = _start_outputs(folder, stack, request)
            panels = {}
            if frames:
                predictions = predict(network, [f.image for f in frames], [f.voxel for f in frames], settings.size,
                                      precision=request.precision)
                panels = {frame.stem: _write_frame(frame, prediction, paths[frame.stem], metric, info)
                          for frame, prediction in zip(frames, predictions)}
            if video is not None:
                for ref in chunk:
                    video.write(panels[ref.stem] if ref.stem in panels else _read_panel(paths[ref.stem].panel))
            bar.update(len(chunk))
    summary = _summary(request, source, out, len(refs), len(todo), model.config, settings,
                       time.perf_counter() - started)
    return InferResult(out, [ref.stem for ref in refs], model.config, settings.dataset, summary)


def _summary(request: PredictionRequest, source: FrameSource, out: Path, frames: int, predicted: int,
             config: ModelSettings, settings: Settings, seconds: float) -> str:
    """The final line: what was read, what was written and what the depth files hold."""
    content = (f"metric depth in metres (max {config.max_depth:g} m)" if config.head == "metric"
               else "relative inverse depth (evaluate with --pred-format disparity)")
    skipped = getattr(source, "skipped", None)
    selection = (f"; {sum(skipped.values())} depth frames not selected ({', '.join(sorted(skipped))})"
                 if skipped else "")
    video = f", {out / 'panels.mp4'}" if request.mp4 else ""
    return (f"infer: {frames} frames from {source.description} -> {out} ({predicted} predicted, "
            f"{frames - predicted} already done{selection}); {content}, input {settings.size} px{video}; "
            f"{seconds:.1f} s")
