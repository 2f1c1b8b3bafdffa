"""``python -m fuse compare``: several methods on the same frames, scored with one protocol, clean
and under controlled degradations (``fuse.data.conditions``), with costs from the same run.

A comparison is a small YAML file (``docs/compare.md``)::

    dataset: mvsec                    # the protocol's depth range and table columns
    protocol: e2depth
    seed: 0                           # degradations: frame k of every method sees the same draw
    methods:
      - {name: FUSE, checkpoint: runs/adapt_fuse/model.pth}
      - {name: AIMDepth, checkpoint: runs/aimdepth/model.pth}
    sequences:
      - {name: day, recording: recordings/day_test}           # raw MVSEC-format: any condition
      - {name: night, split: {3: processed/night_test.txt, 5: processed5/night_test.txt}}
    conditions: [image:low_light, events:dropout@2]           # no @: every level of ``severities``
    severities: [1, 3, 5]
    panels: {frames: 2, mp4: true, fps: 5}

Each method runs on every frame of every sequence under every condition (always also clean)
through ``fuse.evaluate.inference.predict`` at the input size its checkpoint records, as
``infer`` and ``eval --checkpoint`` run it, so a clean score equals that method's own ``eval``.
A split is read at one voxel bin count; give one split per count (``{bins: list}``) when
methods differ, or a raw recording, which is voxelized for each method. Event conditions need
raw events, so raw recordings. Paths are taken from the directory the command runs in.

The output folder holds ``results.md`` / ``results.json`` (a table per sequence, the
robustness tables, parameters / GFLOPs / images per second), ``chart.png``, ``robustness.png``,
``panels/<sequence>/<condition>/<frame>.png`` (image | events | each method | ground truth) and
``panels/<sequence>.mp4`` of the clean frames, ``predictions/<method>/<sequence>/<condition>/``
and ``targets/<sequence>/``.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from fuse.atomic import check_writable, save_npy_atomic, write_text_atomic
from fuse.data.conditions import SEVERITIES, Condition, EventWindow, condition_rng, parse_condition
from fuse.data.constants import dataset_info
from fuse.errors import ConfigError, UsageError
from fuse.evaluate import charts
from fuse.evaluate.inference import Frame, FrameSource, RecordingSource, SplitSource, network_inputs, predict
from fuse.evaluate.prediction import PredictionRequest, load_for_prediction
from fuse.evaluate.protocols import evaluate_pairs, protocol_named
from fuse.evaluate.visualize import Mp4Writer, colorize_depth, colorize_voxel, image_to_bgr, make_panel, \
    write_png_atomic
from fuse.events import voxel_grid
from fuse.events.mvsec import recording_paths
from fuse.registry import model_kind

CLEAN = "clean"
DEFAULT_SEVERITIES = (1, 3, 5)
ROBUSTNESS_METRICS = (("Abs.Rel", "abs_rel"), ("RMSE", "rmse"))
DEFAULT_BINS = 3


@dataclass(frozen=True)
class MethodSpec:
    name: str
    checkpoint: str
    size: int | None = None


@dataclass(frozen=True)
class SequenceSpec:
    """A split list per voxel bin count (key None: whatever the file holds) or a raw recording."""

    name: str
    splits: dict[int | None, str] = field(default_factory=dict)
    recording: str | None = None


@dataclass(frozen=True)
class CompareSpec:
    methods: tuple[MethodSpec, ...]
    sequences: tuple[SequenceSpec, ...]
    conditions: tuple[Condition, ...]
    dataset: str = "mvsec"
    protocol: str = "e2depth"
    seed: int = 0
    batch_size: int = 4
    limit: int | None = None
    panel_frames: int = 2
    mp4: bool = True
    fps: float = 5.0
    device: str = "auto"
    precision: str = "fp32"

    @property
    def labels(self) -> list[str]:
        return [CLEAN] + [condition.label for condition in self.conditions]


def _name(entry: dict, kind: str, path: Path) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{path}: every {kind} needs a name (a non-empty string without '/'), got {name!r}")
    return name


def _entries(data: dict, key: str, path: Path) -> list[dict]:
    entries = data.get(key)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: '{key}' must be a non-empty list of mappings (docs/compare.md)")
    return entries


def _conditions(data: dict, path: Path) -> tuple[Condition, ...]:
    severities = data.get("severities", list(DEFAULT_SEVERITIES))
    if not isinstance(severities, list) or not all(isinstance(s, int) and s in SEVERITIES[1:] for s in severities):
        raise ConfigError(f"{path}: 'severities' must be a list of levels 1..5, got {severities!r}")
    conditions: list[Condition] = []
    for text in data.get("conditions") or []:
        if not isinstance(text, str):
            raise ConfigError(f"{path}: a condition is a string like events:dropout@2, got {text!r}")
        if text.strip() == CLEAN:
            continue
        spelled = [text] if "@" in text else [f"{text}@{level}" for level in severities]
        conditions += [parse_condition(item) for item in spelled]
    labels = [condition.label for condition in conditions]
    return tuple(condition for k, condition in enumerate(conditions) if condition.label not in labels[:k])


def read_spec(path: str | Path) -> CompareSpec:
    """The comparison a YAML file describes, checked; ``ConfigError`` names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"comparison file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with methods, sequences and conditions (docs/compare.md)")
    known = {"methods", "sequences", "conditions", "severities", "dataset", "protocol", "seed", "batch_size", "limit",
             "panels", "device", "precision"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; allowed: {sorted(known)}")
    methods = []
    for entry in _entries(data, "methods", path):
        if not isinstance(entry.get("checkpoint"), str):
            raise ConfigError(f"{path}: method {entry.get('name')!r} needs a checkpoint file")
        methods.append(MethodSpec(_name(entry, "method", path), entry["checkpoint"], entry.get("size")))
    sequences = []
    for entry in _entries(data, "sequences", path):
        name, split, recording = _name(entry, "sequence", path), entry.get("split"), entry.get("recording")
        if (split is None) == (recording is None):
            raise ConfigError(f"{path}: sequence {name!r} needs exactly one of split (a processed split list, or "
                              "{bins: list}) and recording (a raw MVSEC-format DIR/NAME)")
        splits = {None: split} if isinstance(split, str) else dict(split or {})
        if not all((k is None or isinstance(k, int)) and isinstance(v, str) for k, v in splits.items()):
            raise ConfigError(f"{path}: split of sequence {name!r} must be a path or a mapping bins -> path")
        sequences.append(SequenceSpec(name, splits, recording))
    for kind, names in (("method", [m.name for m in methods]), ("sequence", [s.name for s in sequences])):
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}: {kind} names must be unique, got {names}")
    panels = data.get("panels") or {}
    options = {key: data[key] for key in ("dataset", "protocol", "seed", "batch_size", "limit", "device", "precision")
               if key in data}
    spec = CompareSpec(tuple(methods), tuple(sequences), _conditions(data, path),
                       panel_frames=int(panels.get("frames", 2)), mp4=bool(panels.get("mp4", True)),
                       fps=float(panels.get("fps", 5.0)), **options)
    protocol_named(spec.protocol).columns_for(spec.dataset)
    _check_files(spec, path)
    return spec


def _check_files(spec: CompareSpec, path: Path) -> None:
    """Every file named exists and every condition can be applied, before anything runs."""
    for method in spec.methods:
        if not Path(method.checkpoint).is_file():
            raise ConfigError(f"{path}: checkpoint {method.checkpoint} of method {method.name!r} not found")
    events = [condition.label for condition in spec.conditions if condition.target == "events"]
    for sequence in spec.sequences:
        if sequence.recording is not None:
            missing = [str(file) for file in recording_paths(sequence.recording) if not file.is_file()]
            if missing:
                raise ConfigError(f"{path}: recording {missing[0]} of sequence {sequence.name!r} not found "
                                  "(recording: DIR/NAME names NAME_data.hdf5 and NAME_gt.hdf5)")
            continue
        for split in sequence.splits.values():
            if not Path(split).is_file():
                raise ConfigError(f"{path}: split list {split} of sequence {sequence.name!r} not found")
        if events:
            raise UsageError(f"{path}: condition {events[0]} degrades raw events, but sequence {sequence.name!r} is "
                             "a processed split of voxel grids: give it as recording: DIR/NAME (the raw "
                             "MVSEC-format file)")


# ----------------------------------------------------------------------------- degraded frames


class DegradedSplit(SplitSource):
    """A split's frames with an image condition applied (frame k draws from ``condition_rng(seed, k)``)."""

    def __init__(self, split: str, bins: int | None, condition: Condition | None, seed: int) -> None:
        super().__init__(split, bins)
        self.condition, self.seed = condition, seed

    def _load(self, index: int) -> Frame:
        frame = super()._load(index)
        if self.condition is None:
            return frame
        image = self.condition.apply(frame.image, condition_rng(self.seed, index))
        return Frame(frame.stem, image, frame.voxel, frame.depth)


class DegradedRecording(RecordingSource):
    """A raw recording's frames with an image or event condition applied before voxelization."""

    def __init__(self, recording: str, bins: int, condition: Condition | None, seed: int) -> None:
        super().__init__(recording, bins)
        self.condition, self.seed = condition, seed

    def _load(self, index: int) -> Frame:
        info = self.kept[index]
        sample = self.recording.load(info)
        height, width = sample.image.shape
        image, events = np.repeat(sample.image[:, :, None], 3, axis=2), sample.events
        if self.condition is not None:
            rng = condition_rng(self.seed, index)
            if self.condition.target == "image":
                image = self.condition.apply(image, rng)
            else:
                window = EventWindow(events, height, width, info.depth_ts - self.recording.window_s, info.depth_ts)
                events = self.condition.apply(window, rng).events
        return Frame(self.stems[index], image, voxel_grid(events, self.num_bins, height, width), sample.depth)


def open_sequence(sequence: SequenceSpec, bins: int, condition: Condition | None, seed: int) -> FrameSource:
    """The sequence's frames as a method with ``bins``-bin voxels sees them under ``condition``."""
    if sequence.recording is not None:
        return DegradedRecording(sequence.recording, bins, condition, seed)
    if condition is not None and condition.target == "events":
        raise UsageError(f"condition {condition.label} degrades raw events, but sequence {sequence.name!r} is a "
                         "processed split of voxel grids: give it as recording: DIR/NAME (the raw MVSEC-format file)")
    if bins in sequence.splits:
        return DegradedSplit(sequence.splits[bins], bins, condition, seed)
    if None in sequence.splits:
        return DegradedSplit(sequence.splits[None], bins, condition, seed)
    raise UsageError(f"sequence {sequence.name!r} has no split with {bins}-bin voxels (it has "
                     f"{sorted(sequence.splits)}); add split: {{{bins}: LIST}} or give the raw recording")


# ----------------------------------------------------------------------------- one method


@dataclass
class MethodRun:
    """One method's scores and costs."""

    name: str
    kind: str
    checkpoint: str
    size: int
    bins: int
    parameters: int
    gflops: float | None = None
    predict_seconds: float = 0.0
    predicted_frames: int = 0
    scores: dict[str, dict[str, dict]] = field(default_factory=dict)  # sequence -> condition -> metrics

    @property
    def images_per_s(self) -> float | None:
        return self.predicted_frames / self.predict_seconds if self.predict_seconds > 0 else None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "checkpoint": self.checkpoint, "input_size": self.size, "bins": self.bins,
                "parameters": self.parameters, "gflops": self.gflops, "images_per_s": self.images_per_s,
                "scores": self.scores}


def count_gflops(model: nn.Module, image: np.ndarray, voxel: np.ndarray, size: int) -> float | None:
    """Forward GFLOPs of one frame at the evaluated input size (torch's flop counter: matmuls and
    convolutions, 2 FLOPs per multiply-add; element-wise operations are not counted)."""
    inputs = model_kind(model.config.kind).inputs
    image_tensor, voxel_tensor = network_inputs([image], [voxel], size)
    tensors = {"image": image_tensor, "events": voxel_tensor}
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*(tensors[name].to(device) for name in inputs))
    return counter.get_total_flops() / 1e9


def _batches(source: FrameSource, limit: int | None, batch_size: int) -> Iterator[list]:
    frames = []
    for ref in list(source)[:limit]:
        frame = ref.load()
        if frames and (len(frames) == batch_size or frame.image.shape != frames[0].image.shape):
            yield frames
            frames = []
        frames.append(frame)
    if frames:
        yield frames


def _check_scorable(name: str, model: nn.Module, protocol: str) -> None:
    kind = model_kind(model.config.kind)
    output = kind.outputs.get(model.config.head)
    if output not in protocol_named(protocol).scores or model.config.head != "metric":
        raise UsageError(f"method {name!r}: a {model.config.kind} model with a {model.config.head} head gives "
                         f"{output}; compare scores metric depth with the {protocol} protocol (use a metric-head "
                         "checkpoint, e.g. a stage-3 adapt run)")
    unsupported = [item for item in kind.inputs if item not in ("image", "events")]
    if unsupported:
        raise UsageError(f"method {name!r}: compare feeds images and event voxel grids; a {model.config.kind} "
                         f"model also takes {unsupported}")


def run_method(spec: CompareSpec, method: MethodSpec, out: Path, progress: bool = True) -> MethodRun:
    """Predict every frame of every sequence under every condition; write and score the predictions."""
    request = PredictionRequest(checkpoint=method.checkpoint, size=method.size, dataset=spec.dataset,
                                device=spec.device, precision=spec.precision, batch_size=spec.batch_size)
    model, settings = load_for_prediction(request)
    _check_scorable(method.name, model, spec.protocol)
    config = model.config
    bins = getattr(config, "event_bins", None) or DEFAULT_BINS
    run = MethodRun(method.name, config.kind, method.checkpoint, settings.size, bins,
                    sum(p.numel() for p in model.parameters()))
    total = len(spec.sequences) * len(spec.labels)
    bar = tqdm(total=total, desc=f"compare {method.name}", unit="run", disable=not progress)
    for sequence in spec.sequences:
        for label, condition in zip(spec.labels, (None, *spec.conditions)):
            folder = out / "predictions" / method.name / sequence.name / label
            pairs = []
            with open_sequence(sequence, bins, condition, spec.seed) as source:
                for frames in _batches(source, spec.limit, spec.batch_size):
                    if run.gflops is None:
                        run.gflops = count_gflops(model, frames[0].image, frames[0].voxel, settings.size)
                    started = time.perf_counter()
                    depths = predict(model, [f.image for f in frames], [f.voxel for f in frames], settings.size,
                                     precision=spec.precision)
                    if condition is None:
                        run.predict_seconds += time.perf_counter() - started
                        run.predicted_frames += len(frames)
                    for frame, depth in zip(frames, depths):
                        target = out / "targets" / sequence.name / f"{frame.stem}.npy"
                        if not target.is_file():
                            save_npy_atomic(target, frame.depth.astype(np.float32, copy=False))
                        pairs.append((save_npy_atomic(folder / f"{frame.stem}.npy", depth), target))
            run.scores.setdefault(sequence.name, {})[label] = evaluate_pairs(pairs, spec.dataset, spec.protocol,
                                                                             progress=False)
            bar.update()
    bar.close()
    return run


# ----------------------------------------------------------------------------- report


def _cell(value: float | int | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def markdown(spec: CompareSpec, runs: Sequence[MethodRun]) -> str:
    columns = protocol_named(spec.protocol).columns_for(spec.dataset)
    lines = [f"# Comparison ({spec.protocol} protocol, {spec.dataset} depth range)", ""]
    for sequence in spec.sequences:
        frames = runs[0].scores[sequence.name][CLEAN].get("frames")
        lines += [f"## {sequence.name} ({frames} frames)", "",
                  "| method | " + " | ".join(h for h, _ in columns) + " | params (M) | GFLOPs | images/s |",
                  "|---|" + "---:|" * (len(columns) + 3)]
        for run in runs:
            metrics = run.scores[sequence.name][CLEAN]
            lines.append(f"| {run.name} | " + " | ".join(_cell(metrics.get(key)) for _, key in columns)
                         + f" | {run.parameters / 1e6:.2f} | {_cell(run.gflops, 2)} | {_cell(run.images_per_s, 1)} |")
        lines.append("")
    sweeps = _sweeps(spec)
    if sweeps:
        lines += ["## Robustness", "", f"Each frame is degraded the same way for every method (seed {spec.seed}); "
                  "severity 0 is the clean input.", ""]
        for name, levels in sweeps.items():
            for sequence in spec.sequences:
                for header, key in ROBUSTNESS_METRICS:
                    lines += [f"**{name}, {sequence.name}: {header}**", "",
                              "| method | " + " | ".join(str(level) for level, _ in levels) + " |",
                              "|---|" + "---:|" * len(levels)]
                    lines += [f"| {run.name} | " + " | ".join(
                        _cell(run.scores[sequence.name][label].get(key)) for _, label in levels) + " |" for run in runs]
                    lines.append("")
    lines += ["Costs: parameters of the network; GFLOPs of one forward pass at the evaluated input size "
              "(torch.utils.flop_counter: matmuls and convolutions); images/s of the clean runs' forward passes "
              f"on {spec.device} (batch {spec.batch_size}, {spec.precision}), in this run."]
    return "\n".join(lines) + "\n"


def _sweeps(spec: CompareSpec) -> dict[str, list[tuple[int, str]]]:
    """Each degraded input's levels in this run, with severity 0 = clean: name -> [(level, label)]."""
    sweeps: dict[str, list[tuple[int, str]]] = {}
    for condition in spec.conditions:
        sweeps.setdefault(f"{condition.target}:{condition.name}", [(0, CLEAN)]).append(
            (condition.severity, condition.label))
    return {name: sorted(levels) for name, levels in sweeps.items()}


def chart_images(spec: CompareSpec, runs: Sequence[MethodRun]) -> tuple[np.ndarray, np.ndarray | None]:
    """Bars of the clean metrics per sequence, and robustness lines (mean over sequences)."""
    colors = charts.method_colors([run.name for run in runs])
    groups = [sequence.name for sequence in spec.sequences]
    bars = [charts.bar_chart(f"{header} (lower is better)", groups, {
        run.name: [run.scores[g][CLEAN].get(key) for g in groups] for run in runs}, colors)
        for header, key in ROBUSTNESS_METRICS]
    bars.append(charts.bar_chart("delta1 (higher is better)", groups, {
        run.name: [run.scores[g][CLEAN].get("a1") for g in groups] for run in runs}, colors))
    lines = []
    for name, levels in _sweeps(spec).items():
        lines.append(charts.line_chart(f"{name}: Abs.Rel, mean of {len(groups)} sequence(s)", [lv for lv, _ in levels], {
            run.name: [float(np.mean([run.scores[g][label]["abs_rel"] for g in groups])) for _, label in levels]
            for run in runs}, colors))
    return charts.side_by_side(bars), charts.side_by_side(lines) if lines else None


def write_panels(spec: CompareSpec, runs: Sequence[MethodRun], out: Path) -> list[Path]:
    """image | events | each method | ground truth, for every clean frame (and its MP4) and for the
    first ``panel_frames`` frames of each degraded condition."""
    info = dataset_info(spec.dataset)
    bins = next((run.bins for run in runs if "events" in model_kind(run.kind).inputs), runs[0].bins)
    written = []
    for sequence in spec.sequences:
        for label, condition in zip(spec.labels, (None, *spec.conditions)):
            limit = spec.limit if condition is None else spec.panel_frames
            video = Mp4Writer(out / "panels" / f"{sequence.name}.mp4", spec.fps) if condition is None and spec.mp4 \
                else None
            with open_sequence(sequence, bins, condition, spec.seed) as source:
                for ref in list(source)[:limit]:
                    frame = ref.load()
                    tiles = [("image", image_to_bgr(frame.image)), ("events", colorize_voxel(frame.voxel))]
                    tiles += [(run.name, colorize_depth(np.load(out / "predictions" / run.name / sequence.name / label
                                                                / f"{frame.stem}.npy"), info.max_depth, info.reg_factor))
                              for run in runs]
                    tiles.append(("ground truth", colorize_depth(frame.depth, info.max_depth, info.reg_factor)))
                    panel = make_panel(tiles)
                    written.append(write_png_atomic(out / "panels" / sequence.name / label / f"{frame.stem}.png", panel))
                    if video is not None:
                        video.write(panel)
            if video is not None:
                written.append(video.close())
    return written


def compare(spec: CompareSpec, out: str | Path, progress: bool = True) -> list[MethodRun]:
    """Run the comparison into ``out`` and write its report; returns each method's scores."""
    out = Path(out)
    check_writable(out)
    runs = [run_method(spec, method, out, progress) for method in spec.methods]
    bars, lines = chart_images(spec, runs)
    write_png_atomic(out / "chart.png", bars)
    if lines is not None:
        write_png_atomic(out / "robustness.png", lines)
    write_panels(spec, runs, out)
    settings = {"dataset": spec.dataset, "protocol": spec.protocol, "seed": spec.seed, "conditions": spec.labels,
                "device": spec.device, "precision": spec.precision, "batch_size": spec.batch_size}
    write_text_atomic(out / "results.json", json.dumps(
        {"settings": settings, "methods": {run.name: run.to_dict() for run in runs}}, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown(spec, runs))
    return runs
