"""``python -m fuse compare``: several methods on the same frames, scored with the same protocols,
clean and under controlled degradations (``fuse.data.conditions``), with costs from the same run.

A comparison is a small YAML file (``docs/compare.md``)::

    dataset: mvsec                    # the protocols' depth range and table columns
    protocol: [e2depth, derdnet_points]   # the first one draws the charts and robustness tables
    seed: 0                           # degradations: frame k of every method sees the same draw
    methods:
      - {name: FUSE, checkpoint: runs/adapt_fuse/model.pth}
      - {name: DERD-Net, predictions: {room: outputs/derdnet/room/depth}}   # run by its own commands
    sequences:
      - {name: day, recording: recordings/day_test}           # raw MVSEC-format: any condition
      - {name: night, split: {3: processed/night_test.txt, 5: processed5/night_test.txt}}
      - {name: room, targets: outputs/derdnet/room/gt}         # ground truth only
    conditions: [image:low_light, events:dropout@2]           # no @: every level of ``severities``
    severities: [1, 3, 5]
    panels: {frames: 2, mp4: true, fps: 5}

Each checkpoint runs on every frame of every split / recording sequence under every condition
(always also clean) through ``fuse.evaluate.inference.predict`` at the input size it records,
as ``infer`` and ``eval --checkpoint`` run it, so a clean score equals that method's own
``eval``. Methods whose inputs are not an image and a voxel grid (DERD-Net's Sub-DSIs, FCFR-Net's
sparse depth) come as prediction folders written by their own commands, scored clean. Every
protocol scores each method on its own pixels; when some maps are sparse, also on the pixels
every method predicts ("common pixels"). A split is read at one voxel bin count (``{bins:
list}`` when methods differ); a raw recording is voxelized for each method; event conditions
need raw events. Paths are taken from the directory the command runs in.

The output folder holds ``results.md`` / ``results.json`` (tables per sequence and protocol, the
robustness tables, parameters / GFLOPs / images per second), ``chart.png``, ``robustness.png``,
``panels/<sequence>/<condition>/<frame>.png`` (image | events | each method | ground truth) and
``panels/<sequence>.mp4`` of the clean frames, ``predictions/<method>/<sequence>/<condition>/``,
``targets/<sequence>/`` and ``targets_common/``.
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
from fuse.errors import ConfigError, EvalInputError, UsageError
from fuse.evaluate import charts
from fuse.evaluate.inference import Frame, FrameSource, RecordingSource, SplitSource, network_inputs, predict
from fuse.evaluate.metrics import median_depth
from fuse.evaluate.prediction import PredictionRequest, load_for_prediction, resolve_device
from fuse.evaluate.protocols import evaluate_pairs, protocol_named
from fuse.evaluate.visualize import Mp4Writer, colorize_depth, colorize_voxel, image_to_bgr, make_panel, \
    write_png_atomic
from fuse.events.mvsec import recording_paths
from fuse.registry import model_kind

CLEAN = "clean"
DEFAULT_SEVERITIES = (1, 3, 5)
ROBUSTNESS_METRICS = (("Abs.Rel", "abs_rel"), ("RMSE", "rmse"))
METRES = {"metric_depth", "point_depth"}  # outputs compare scores
COMMON = "common pixels"
DEFAULT_BINS = 3


@dataclass(frozen=True)
class MethodSpec:
    """A checkpoint compare runs, the prediction folders of a method run by its own commands
    (``predictions``: sequence name -> folder of ``<frame>.npy`` depth maps, NaN = no depth), or
    the constant baseline: the median valid depth of a training split (``median_of``) everywhere."""

    name: str
    checkpoint: str | None = None
    size: int | None = None
    predictions: dict[str, str] = field(default_factory=dict)
    median_of: str | None = None


@dataclass(frozen=True)
class SequenceSpec:
    """A split list per voxel bin count (key None: whatever the file holds), a raw recording, or
    only a folder of ground-truth ``<frame>.npy`` maps (``targets``) for prediction-folder methods."""

    name: str
    splits: dict[int | None, str] = field(default_factory=dict)
    recording: str | None = None
    targets: str | None = None
    degrade: bool = True  # False: clean frames only (e.g. a sequence that is degraded already)

    @property
    def runnable(self) -> bool:
        """Whether checkpoints can run on it (it holds images and events)."""
        return self.targets is None

    @property
    def swept(self) -> bool:
        """Whether the conditions are run on it."""
        return self.runnable and self.degrade


@dataclass(frozen=True)
class CompareSpec:
    methods: tuple[MethodSpec, ...]
    sequences: tuple[SequenceSpec, ...]
    conditions: tuple[Condition, ...]
    dataset: str = "mvsec"
    protocols: tuple[str, ...] = ("e2depth",)
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

    @property
    def protocol(self) -> str:
        """The protocol of the charts and robustness tables: the first listed."""
        return self.protocols[0]


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


def _method(entry: dict, path: Path) -> MethodSpec:
    name, checkpoint, predictions = _name(entry, "method", path), entry.get("checkpoint"), entry.get("predictions")
    given = [key for key in ("checkpoint", "predictions", "median_of") if entry.get(key) is not None]
    if len(given) != 1:
        raise ConfigError(f"{path}: method {name!r} needs exactly one of checkpoint (a model compare runs), "
                          "predictions ({sequence: folder of <frame>.npy depth maps}) and median_of (a training "
                          f"split: the constant baseline); got {given or 'none'}")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ConfigError(f"{path}: checkpoint of method {name!r} must be a file path")
    if predictions is not None and not (isinstance(predictions, dict) and predictions
                                        and all(isinstance(v, str) for v in predictions.values())):
        raise ConfigError(f"{path}: predictions of method {name!r} must map sequence names to folders")
    return MethodSpec(name, checkpoint, entry.get("size"), dict(predictions or {}), entry.get("median_of"))


def _sequence(entry: dict, path: Path) -> SequenceSpec:
    name = _name(entry, "sequence", path)
    given = [key for key in ("split", "recording", "targets") if entry.get(key) is not None]
    if len(given) != 1:
        raise ConfigError(f"{path}: sequence {name!r} needs exactly one of split (a processed split list, or "
                          "{bins: list}), recording (a raw MVSEC-format DIR/NAME) and targets (a folder of "
                          f"ground-truth <frame>.npy maps); got {given or 'none'}")
    split = entry.get("split")
    splits = {None: split} if isinstance(split, str) else dict(split or {})
    if not all((k is None or isinstance(k, int)) and isinstance(v, str) for k, v in splits.items()):
        raise ConfigError(f"{path}: split of sequence {name!r} must be a path or a mapping bins -> path")
    degrade = entry.get("degrade", True)
    if not isinstance(degrade, bool):
        raise ConfigError(f"{path}: degrade of sequence {name!r} must be true or false, got {degrade!r}")
    return SequenceSpec(name, splits, entry.get("recording"), entry.get("targets"), degrade)


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
    methods = [_method(entry, path) for entry in _entries(data, "methods", path)]
    sequences = [_sequence(entry, path) for entry in _entries(data, "sequences", path)]
    for kind, names in (("method", [m.name for m in methods]), ("sequence", [s.name for s in sequences])):
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}: {kind} names must be unique, got {names}")
    protocols = data.get("protocol", "e2depth")
    protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
    panels = data.get("panels") or {}
    options = {key: data[key] for key in ("dataset", "seed", "batch_size", "limit", "device", "precision")
               if key in data}
    spec = CompareSpec(tuple(methods), tuple(sequences), _conditions(data, path), protocols=protocols,
                       panel_frames=int(panels.get("frames", 2)), mp4=bool(panels.get("mp4", True)),
                       fps=float(panels.get("fps", 5.0)), **options)
    for name in spec.protocols:
        protocol = protocol_named(name)
        protocol.columns_for(spec.dataset)
        if not set(protocol.scores) & METRES:
            raise ConfigError(f"{path}: the {name} protocol does not score depth in metres; compare needs one "
                              f"that scores {sorted(METRES)}")
    _check_files(spec, path)
    return spec


def _check_files(spec: CompareSpec, path: Path) -> None:
    """Every file named exists and every method and condition can be applied, before anything runs."""
    sequences = {sequence.name: sequence for sequence in spec.sequences}
    for method in spec.methods:
        if method.checkpoint is not None and not Path(method.checkpoint).is_file():
            raise ConfigError(f"{path}: checkpoint {method.checkpoint} of method {method.name!r} not found")
        if method.median_of is not None and not Path(method.median_of).is_file():
            raise ConfigError(f"{path}: split list {method.median_of} of method {method.name!r} not found")
        for name, folder in method.predictions.items():
            if name not in sequences:
                raise ConfigError(f"{path}: method {method.name!r} has predictions for {name!r}, which is not a "
                                  f"sequence of this comparison ({sorted(sequences)})")
            if not Path(folder).is_dir():
                raise ConfigError(f"{path}: prediction folder {folder} of method {method.name!r} not found")
    events = [condition.label for condition in spec.conditions if condition.target == "events"]
    for sequence in spec.sequences:
        if sequence.targets is not None:
            if not Path(sequence.targets).is_dir():
                raise ConfigError(f"{path}: targets folder {sequence.targets} of sequence {sequence.name!r} not found")
        elif sequence.recording is not None:
            missing = [str(file) for file in recording_paths(sequence.recording) if not file.is_file()]
            if missing:
                raise ConfigError(f"{path}: recording {missing[0]} of sequence {sequence.name!r} not found "
                                  "(recording: DIR/NAME names NAME_data.hdf5 and NAME_gt.hdf5)")
        else:
            for split in sequence.splits.values():
                if not Path(split).is_file():
                    raise ConfigError(f"{path}: split list {split} of sequence {sequence.name!r} not found")
            if events and sequence.swept:
                raise UsageError(f"{path}: condition {events[0]} degrades raw events, but sequence {sequence.name!r} "
                                 "is a processed split of voxel grids: give it as recording: DIR/NAME (the raw "
                                 "MVSEC-format file), or degrade: false")


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

    def _inputs(self, index: int, image: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.condition is None:
            return image, events
        rng = condition_rng(self.seed, index)
        if self.condition.target == "image":
            return self.condition.apply(image, rng), events
        info = self.kept[index]
        window = EventWindow(events, *image.shape[:2], info.depth_ts - self.recording.window_s, info.depth_ts)
        return image, self.condition.apply(window, rng).events


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


# ----------------------------------------------------------------------------- predictions


Files = dict[str, Path]  # frame stem -> depth map (.npy)


@dataclass
class MethodRun:
    """One method's prediction files, scores and costs (costs only for checkpoints compare ran)."""

    name: str
    kind: str
    source: str
    size: int | None = None
    bins: int | None = None
    parameters: int | None = None
    gflops: float | None = None
    predict_seconds: float = 0.0
    predicted_frames: int = 0
    files: dict[tuple[str, str], Files] = field(default_factory=dict)  # (sequence, condition) -> files
    scores: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)  # sequence -> condition -> protocol

    @property
    def images_per_s(self) -> float | None:
        return self.predicted_frames / self.predict_seconds if self.predict_seconds > 0 else None

    def score(self, sequence: str, condition: str = CLEAN, protocol: str = "e2depth") -> dict | None:
        return self.scores.get(sequence, {}).get(condition, {}).get(protocol)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "input_size": self.size, "bins": self.bins,
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


def _batches(source: FrameSource, limit: int | None, batch_size: int) -> Iterator[list[Frame]]:
    frames: list[Frame] = []
    for ref in list(source)[:limit]:
        frame = ref.load()
        if frames and (len(frames) == batch_size or frame.image.shape != frames[0].image.shape):
            yield frames
            frames = []
        frames.append(frame)
    if frames:
        yield frames


def _check_scorable(name: str, model: nn.Module) -> None:
    kind = model_kind(model.config.kind)
    output = kind.outputs.get(model.config.head)
    if output not in METRES:
        raise UsageError(f"method {name!r}: a {model.config.kind} model with a {model.config.head} head gives "
                         f"{output}; compare scores depth in metres (use a metric-head checkpoint, e.g. a stage-3 "
                         "adapt run)")
    unsupported = [item for item in kind.inputs if item not in ("image", "events")]
    if unsupported:
        raise UsageError(f"method {name!r}: compare runs models on images and event voxel grids; a "
                         f"{model.config.kind} model also takes {unsupported}: run it with its own commands and "
                         "give its folders as predictions: {sequence: folder}")


def _target(out: Path, sequence: str, frame: Frame) -> Path:
    path = out / "targets" / sequence / f"{frame.stem}.npy"
    if not path.is_file():
        save_npy_atomic(path, frame.depth.astype(np.float32, copy=False))
    return path


def run_checkpoint(spec: CompareSpec, method: MethodSpec, out: Path, targets: dict[str, Files],
                   progress: bool = True) -> MethodRun:
    """Predict every frame of every runnable sequence under every condition into ``out/predictions``."""
    request = PredictionRequest(checkpoint=method.checkpoint, size=method.size, dataset=spec.dataset,
                                device=spec.device, precision=spec.precision, batch_size=spec.batch_size)
    model, settings = load_for_prediction(request)
    _check_scorable(method.name, model)
    config = model.config
    bins = getattr(config, "event_bins", None) or DEFAULT_BINS
    run = MethodRun(method.name, config.kind, method.checkpoint, settings.size, bins,
                    sum(p.numel() for p in model.parameters()))
    sequences = [sequence for sequence in spec.sequences if sequence.runnable]
    bar = tqdm(total=sum(len(spec.labels) if s.swept else 1 for s in sequences), desc=f"compare {method.name}",
               unit="run", disable=not progress)
    for sequence in sequences:
        for label, condition in list(zip(spec.labels, (None, *spec.conditions)))[:None if sequence.swept else 1]:
            folder = out / "predictions" / method.name / sequence.name / label
            files = run.files.setdefault((sequence.name, label), {})
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
                        targets.setdefault(sequence.name, {})[frame.stem] = _target(out, sequence.name, frame)
                        files[frame.stem] = save_npy_atomic(folder / f"{frame.stem}.npy", depth)
            bar.update()
    bar.close()
    return run


def _npy_files(folder: str | Path) -> Files:
    return {path.stem: path for path in sorted(Path(folder).glob("*.npy"))}


def prediction_folders(spec: CompareSpec, method: MethodSpec) -> MethodRun:
    """A method run by its own commands: its folders, as the clean condition of their sequences."""
    files = {(sequence, CLEAN): _npy_files(folder) for sequence, folder in method.predictions.items()}
    for (sequence, _), found in files.items():
        if not found:
            raise EvalInputError(f"no .npy depth maps in {method.predictions[sequence]} (predictions of method "
                                 f"{method.name!r} for sequence {sequence!r})")
    return MethodRun(method.name, "predictions", ", ".join(method.predictions.values()), files=files)


def constant_maps(spec: CompareSpec, method: MethodSpec, targets: dict[str, Files], out: Path) -> MethodRun:
    """The constant baseline: the training split's median depth at every pixel of every frame of the
    split and recording sequences (a ground-truth folder may be another scene)."""
    median = median_depth(method.median_of, spec.dataset)
    runnable = [sequence.name for sequence in spec.sequences if sequence.runnable]
    files = {(name, CLEAN): {stem: save_npy_atomic(out / "predictions" / method.name / name / CLEAN / f"{stem}.npy",
                                                   np.full(np.load(target).shape, median, np.float32))
                             for stem, target in targets[name].items()} for name in runnable}
    return MethodRun(method.name, "constant", f"median {median:.2f} m of {method.median_of}", parameters=0, files=files)


def sequence_targets(spec: CompareSpec, sequence: SequenceSpec, out: Path) -> Files:
    """Ground truth of a sequence no checkpoint ran on: its targets folder, or read from its frames."""
    if sequence.targets is not None:
        return _npy_files(sequence.targets)
    with open_sequence(sequence, DEFAULT_BINS, None, spec.seed) as source:
        return {ref.stem: _target(out, sequence.name, ref.load()) for ref in list(source)[:spec.limit]}


# ----------------------------------------------------------------------------- scores


def _pairs(run: MethodRun, sequence: str, files: Files, targets: Files) -> list[tuple[Path, Path]]:
    missing = sorted(set(files) - set(targets))
    if missing:
        raise EvalInputError(f"method {run.name!r} has a prediction {files[missing[0]]} for frame {missing[0]!r}, "
                             f"which sequence {sequence!r} has no ground truth for ({len(missing)} such frames)")
    return [(files[stem], targets[stem]) for stem in sorted(files)]


def common_targets(runs: Sequence[MethodRun], sequence: str, label: str, targets: Files, out: Path) -> Files | None:
    """Ground truth kept only where every method predicts a depth, when some method's maps have holes
    (sparse maps); None when every map is dense, as the common pixels are then all pixels."""
    present = [run.files[(sequence, label)] for run in runs if (sequence, label) in run.files]
    if len(present) < 2:
        return None
    stems = sorted(set.intersection(*(set(files) for files in present)) & set(targets))
    masks = {stem: np.logical_and.reduce([np.isfinite(np.load(files[stem])) for files in present]) for stem in stems}
    if all(mask.all() for mask in masks.values()):
        return None
    common = {}
    for stem, mask in masks.items():
        target = np.load(targets[stem]).astype(np.float32)
        common[stem] = save_npy_atomic(out / "targets_common" / sequence / label / f"{stem}.npy",
                                       np.where(mask, target, np.nan))
    return common


def score(spec: CompareSpec, runs: Sequence[MethodRun], targets: dict[str, Files], out: Path) -> None:
    """Every run's predictions with every protocol, on their own pixels and (sparse maps present)
    on the pixels every method predicts."""
    for sequence in spec.sequences:
        for label in spec.labels:
            common = common_targets(runs, sequence.name, label, targets[sequence.name], out)
            for run in runs:
                files = run.files.get((sequence.name, label))
                if not files:
                    continue
                scores = run.scores.setdefault(sequence.name, {}).setdefault(label, {})
                for protocol in spec.protocols:
                    pairs = _pairs(run, sequence.name, files, targets[sequence.name])
                    scores[protocol] = evaluate_pairs(pairs, spec.dataset, protocol, progress=False)
                    if common is not None:
                        shared = {stem: path for stem, path in files.items() if stem in common}
                        scores[f"{protocol} ({COMMON})"] = evaluate_pairs(
                            _pairs(run, sequence.name, shared, common), spec.dataset, protocol, progress=False)


# ----------------------------------------------------------------------------- report


def _cell(value: float | int | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _protocol_keys(spec: CompareSpec, runs: Sequence[MethodRun], sequence: str) -> list[tuple[str, str]]:
    """(table key, protocol name) of the tables a sequence has: each protocol, then its common-pixel variant."""
    keys = []
    for protocol in spec.protocols:
        keys.append((protocol, protocol))
        variant = f"{protocol} ({COMMON})"
        if any(run.score(sequence, CLEAN, variant) for run in runs):
            keys.append((variant, protocol))
    return keys


def markdown(spec: CompareSpec, runs: Sequence[MethodRun]) -> str:
    lines = [f"# Comparison ({', '.join(spec.protocols)}; {spec.dataset} depth range)", ""]
    for sequence in spec.sequences:
        scored = [run for run in runs if run.score(sequence.name, CLEAN, spec.protocol)]
        if not scored:
            continue
        frames = max(run.score(sequence.name, CLEAN, spec.protocol).get("frames") or 0 for run in scored)
        lines += [f"## {sequence.name} ({frames} frames)", ""]
        for key, protocol in _protocol_keys(spec, runs, sequence.name):
            columns = protocol_named(protocol).columns_for(spec.dataset)
            costs = key == spec.protocol
            lines += [f"**{key}**", "", "| method | " + " | ".join(h for h, _ in columns)
                      + (" | params (M) | GFLOPs | images/s |" if costs else " |"),
                      "|---|" + "---:|" * (len(columns) + 3 * costs)]
            for run in scored:
                metrics = run.score(sequence.name, CLEAN, key) or {}
                row = f"| {run.name} | " + " | ".join(_cell(metrics.get(k)) for _, k in columns) + " |"
                if costs:
                    parameters = None if run.parameters is None else run.parameters / 1e6
                    row += f" {_cell(parameters, 2)} | {_cell(run.gflops, 2)} | {_cell(run.images_per_s, 1)} |"
                lines.append(row)
            lines.append("")
    sweeps = _sweeps(spec)
    if sweeps:
        lines += ["## Robustness", "", f"{spec.protocol} protocol. Each frame is degraded the same way for every "
                  f"method (seed {spec.seed}); severity 0 is the clean input.", ""]
        for name, levels in sweeps.items():
            for sequence in (s for s in spec.sequences if s.swept):
                swept = [run for run in runs if run.score(sequence.name, levels[-1][1], spec.protocol)]
                for header, key in ROBUSTNESS_METRICS:
                    lines += [f"**{name}, {sequence.name}: {header}**", "",
                              "| method | " + " | ".join(str(level) for level, _ in levels) + " |",
                              "|---|" + "---:|" * len(levels)]
                    lines += [f"| {run.name} | " + " | ".join(
                        _cell((run.score(sequence.name, label, spec.protocol) or {}).get(key)) for _, label in levels)
                        + " |" for run in swept]
                    lines.append("")
    lines += ["Costs: parameters of the network; GFLOPs of one forward pass at the evaluated input size "
              "(torch.utils.flop_counter: matmuls and convolutions); images/s of the clean runs' forward passes "
              f"on {resolve_device(spec.device)} (batch {spec.batch_size}, {spec.precision}), in this run. Methods "
              "given as prediction folders were run by their own commands: no costs, no degraded conditions; the "
              f"constant baseline runs on the split and recording sequences. '{COMMON}': scored only where every "
              "method has a depth (when some maps are sparse)."]
    return "\n".join(lines) + "\n"


def _sweeps(spec: CompareSpec) -> dict[str, list[tuple[int, str]]]:
    """Each degraded input's levels in this run, with severity 0 = clean: name -> [(level, label)]."""
    sweeps: dict[str, list[tuple[int, str]]] = {}
    for condition in spec.conditions:
        sweeps.setdefault(f"{condition.target}:{condition.name}", [(0, CLEAN)]).append(
            (condition.severity, condition.label))
    return {name: sorted(levels) for name, levels in sweeps.items()}


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def chart_images(spec: CompareSpec, runs: Sequence[MethodRun]) -> tuple[np.ndarray, np.ndarray | None]:
    """Bars of the clean metrics per sequence, and robustness lines (mean over runnable sequences)."""
    colors = charts.method_colors([run.name for run in runs])
    groups = [sequence.name for sequence in spec.sequences]

    def metric(run: MethodRun, sequence: str, key: str, label: str = CLEAN) -> float | None:
        return (run.score(sequence, label, spec.protocol) or {}).get(key)

    keys = ROBUSTNESS_METRICS + (("delta1", "a1"),) if spec.protocol == "e2depth" else ROBUSTNESS_METRICS
    columns = dict((key, header) for header, key in protocol_named(spec.protocol).columns_for(spec.dataset))
    bars = [charts.bar_chart(f"{columns.get(key, header)} ({spec.protocol})", groups,
                             {run.name: [metric(run, g, key) for g in groups] for run in runs}, colors)
            for header, key in keys if any(metric(run, g, key) is not None for run in runs for g in groups)]
    runnable = [sequence.name for sequence in spec.sequences if sequence.swept]
    lines = []
    for name, levels in _sweeps(spec).items():
        swept = [run for run in runs if any(metric(run, g, "abs_rel", levels[-1][1]) is not None for g in runnable)]
        lines.append(charts.line_chart(f"{name}: Abs.Rel, mean of {len(runnable)} sequence(s)",
                                       [level for level, _ in levels],
                                       {run.name: [_mean([metric(run, g, "abs_rel", label) for g in runnable])
                                                   for _, label in levels] for run in swept}, colors))
    return charts.side_by_side(bars), charts.side_by_side(lines) if lines else None


def _depth_tile(path: Path | None, shape: tuple[int, int], max_depth: float, reg_factor: float) -> np.ndarray:
    depth = np.load(path) if path is not None else np.full(shape, np.nan, np.float32)
    return colorize_depth(depth, max_depth, reg_factor)


def write_panels(spec: CompareSpec, runs: Sequence[MethodRun], targets: dict[str, Files], out: Path) -> list[Path]:
    """image | events | each method | ground truth, for every clean frame (and its MP4) and for the
    first ``panel_frames`` frames of each degraded condition; without images and events for a
    sequence given only as ground truth."""
    info = dataset_info(spec.dataset)
    bins = next((run.bins for run in runs if run.bins and "events" in model_kind(run.kind).inputs), DEFAULT_BINS)
    written = []
    for sequence in spec.sequences:
        for label, condition in zip(spec.labels, (None, *spec.conditions)):
            shown = [run for run in runs if (sequence.name, label) in run.files]
            if not shown:
                continue
            limit = spec.limit if condition is None else spec.panel_frames
            video = Mp4Writer(out / "panels" / f"{sequence.name}.mp4", spec.fps) if condition is None and spec.mp4 \
                else None
            for stem, depth, inputs in _panel_frames(spec, sequence, bins, condition, targets, limit):
                tiles = list(inputs) + [(run.name, _depth_tile(run.files[(sequence.name, label)].get(stem), depth.shape,
                                                               info.max_depth, info.reg_factor)) for run in shown]
                tiles.append(("ground truth", colorize_depth(depth, info.max_depth, info.reg_factor)))
                panel = make_panel(tiles)
                written.append(write_png_atomic(out / "panels" / sequence.name / label / f"{stem}.png", panel))
                if video is not None:
                    video.write(panel)
            if video is not None:
                written.append(video.close())
    return written


def _panel_frames(spec: CompareSpec, sequence: SequenceSpec, bins: int, condition: Condition | None,
                  targets: dict[str, Files], limit: int | None) -> Iterator[tuple[str, np.ndarray, list]]:
    """(stem, ground truth, input tiles) of the frames a sequence's panels show."""
    if not sequence.runnable:
        for stem in sorted(targets[sequence.name])[:limit]:
            yield stem, np.load(targets[sequence.name][stem]), []
        return
    with open_sequence(sequence, bins, condition, spec.seed) as source:
        for ref in list(source)[:limit]:
            frame = ref.load()
            inputs = [("image", image_to_bgr(frame.image)), ("events", colorize_voxel(frame.voxel))]
            yield frame.stem, frame.depth, inputs


def compare(spec: CompareSpec, out: str | Path, progress: bool = True) -> list[MethodRun]:
    """Run the comparison into ``out`` and write its report; returns each method's scores."""
    out = Path(out)
    check_writable(out)
    targets: dict[str, Files] = {}
    runs = {method.name: run_checkpoint(spec, method, out, targets, progress) if method.checkpoint is not None
            else prediction_folders(spec, method) for method in spec.methods if method.median_of is None}
    for sequence in spec.sequences:
        if sequence.name not in targets:
            targets[sequence.name] = sequence_targets(spec, sequence, out)
    runs |= {method.name: constant_maps(spec, method, targets, out) for method in spec.methods
             if method.median_of is not None}
    runs = [runs[method.name] for method in spec.methods]
    score(spec, runs, targets, out)
    bars, lines = chart_images(spec, runs)
    write_png_atomic(out / "chart.png", bars)
    if lines is not None:
        write_png_atomic(out / "robustness.png", lines)
    write_panels(spec, runs, targets, out)
    settings = {"dataset": spec.dataset, "protocols": list(spec.protocols), "seed": spec.seed,
                "conditions": spec.labels, "device": spec.device, "precision": spec.precision,
                "batch_size": spec.batch_size}
    write_text_atomic(out / "results.json", json.dumps(
        {"settings": settings, "methods": {run.name: run.to_dict() for run in runs}}, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown(spec, runs))
    return runs
