"""The E2Depth per-frame protocol: depth metrics exactly as the published FUSE tables compute
them (spec §8); registered as ``e2depth`` in ``fuse.evaluate.protocols``.

The protocol is E2Depth's ``evaluation.py`` in the variant FUSE ships (run with ``--metric``):

1. per frame, keep pixels with ``min_depth <= target <= max_depth`` (NaN falls out here);
2. of those, keep ``0 < pred <= top`` and ``0 < target <= top`` where ``top`` is the largest
   target left by step 1;
3. the cut-off sets add ``target < c`` (c = 10, 20, 30 m) to step 2, with ``top`` still taken
   from the whole frame;
4. every metric is a per-frame value averaged over frames, never over pixels.

Numerics follow the published run (NumPy 1.x): per-frame values are computed in the arrays'
own precision (float32 for float32 files, range bounds rounded to it), ``SILog`` subtracts the
squared mean in float64, and frame values are summed in float64. Run under NumPy 1.26 this
reproduces the published script bit for bit; NumPy 2's float32 kernels differ in the last bits
(a few 1e-7 absolute on random folders). Where the published script has no defined answer this
module chooses one, documented at :class:`MetricAccumulator`.

The torch helper :func:`batch_metric_sums` applies the same protocol to a batch of tensors
(in float64) and returns sums and counts that can be all-reduced across ranks.
"""
from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from fuse.atomic import write_text_atomic
from fuse.data.constants import dataset_info
from fuse.data.layout import load_depth, read_split_list
from fuse.errors import EvalInputError

if TYPE_CHECKING:
    import torch

EPS = 1e-5
CUTOFFS: tuple[int, ...] = (10, 20, 30)
METRIC_NAMES: tuple[str, ...] = ("a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "mae")
PRED_FORMATS: tuple[str, ...] = ("metric", "normalized_log", "disparity")
# What the published script substitutes for a zero disparity before inverting it.
ZERO_DISPARITY = 1e-6
_DELTA_BASE = 1.25

FrameMetrics = dict[str, float]
Sums = dict[str, float]


def suffix(cutoff: int | None) -> str:
    """Key suffix of a pixel set: ``""`` for all valid pixels, ``"@10"`` for targets < 10 m."""
    return "" if cutoff is None else f"@{cutoff}"


def frames_key(cutoff: int | None) -> str:
    """Key holding how many frames contributed to a pixel set."""
    return "frames" + suffix(cutoff)


def metric_keys(cutoffs: Sequence[int] = CUTOFFS) -> list[str]:
    """All metric keys: the plain set first, then each cut-off set."""
    return [name + suffix(c) for c in (None, *cutoffs) for name in METRIC_NAMES]


def depth_range(max_depth: float, reg_factor: float) -> tuple[float, float]:
    """``(D_max·e^(−α), D_max)``: the targets the protocol evaluates."""
    return float(np.exp(-reg_factor)) * max_depth, float(max_depth)


def depth_settings(dataset: str, max_depth: float | None = None, reg_factor: float | None = None) -> dict[str, float]:
    """``min_depth``, ``max_depth`` and ``reg_factor`` for a dataset, with optional overrides."""
    info = dataset_info(dataset)
    max_depth = info.max_depth if max_depth is None else max_depth
    reg_factor = info.reg_factor if reg_factor is None else reg_factor
    min_depth, max_depth = depth_range(max_depth, reg_factor)
    return {"min_depth": min_depth, "max_depth": max_depth, "reg_factor": float(reg_factor)}


def _float_array(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def prediction_to_depth(
    pred: np.ndarray, pred_format: str, max_depth: float, reg_factor: float
) -> np.ndarray:
    """Metric depth from a saved network output, in the output's own precision.

    ``normalized_log`` inverts n = log(d/D_max)/α + 1; ``disparity`` is inverted (zeros become
    1e-6 first) and clipped to the evaluated range, as the published script's ``--disparity``.
    """
    pred = _float_array(pred)
    if pred_format == "metric":
        return pred
    if pred_format == "normalized_log":
        return np.exp(float(reg_factor) * (pred - 1.0)) * pred.dtype.type(max_depth)
    if pred_format == "disparity":
        min_depth, max_depth = depth_range(max_depth, reg_factor)
        disparity = np.where(pred == 0, pred.dtype.type(ZERO_DISPARITY), pred)
        return np.clip(1 / disparity, pred.dtype.type(min_depth), pred.dtype.type(max_depth))
    raise ValueError(f"unknown prediction format {pred_format!r}; expected one of {list(PRED_FORMATS)}")


def _set_metrics(pred: np.ndarray, target: np.ndarray, key_suffix: str) -> FrameMetrics:
    """The nine metrics of one non-empty pixel set (1-D arrays of one dtype)."""
    count = target.size
    ratio = np.maximum(target / (pred + EPS), pred / (target + EPS))
    log_diff = np.log(pred + EPS) - np.log(target + EPS)
    abs_diff = np.abs(target - pred)
    sq_diff = abs_diff**2
    mean_sq_log = (log_diff**2).mean()
    values = {
        "a1": np.count_nonzero(ratio <= _DELTA_BASE) / count,
        "a2": np.count_nonzero(ratio <= _DELTA_BASE**2) / count,
        "a3": np.count_nonzero(ratio <= _DELTA_BASE**3) / count,
        "abs_rel": float((abs_diff / (target + EPS)).mean()),
        "sq_rel": float((sq_diff / (target + EPS)).mean()),
        "rmse": float(np.sqrt(sq_diff.mean())),
        "rmse_log": float(np.sqrt(mean_sq_log)),
        "silog": float(mean_sq_log) - float(log_diff.mean()) ** 2,
        "mae": float(abs_diff.mean()),
    }
    return {name + key_suffix: value for name, value in values.items()}


def frame_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    min_depth: float,
    max_depth: float,
    cutoffs: Sequence[int] = CUTOFFS,
    rescale_target: bool = False,
) -> FrameMetrics:
    """Metrics of one frame of metric depths; a pixel set with no pixel has no keys.

    An empty result means the frame has no valid pixel. ``rescale_target`` reproduces the
    published script run without ``--metric``, which rescales the kept targets so that their
    maximum becomes ``max_depth``.
    """
    pred, target = _float_array(pred), _float_array(target)
    if pred.shape != target.shape:
        raise EvalInputError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    # Each array keeps its own precision and scalar bounds are rounded to it, as NumPy 1.x did
    # in the published run; mixed float32/float64 pixels are combined in float64.
    target_type, pred_type = target.dtype.type, pred.dtype.type

    in_range = (target >= target_type(min_depth)) & (target <= target_type(max_depth))
    target, pred = target[in_range], pred[in_range]
    if target.size == 0:
        return {}
    if rescale_target:
        target = target / target.max() * target_type(max_depth)
    top = target.max()
    keep = (pred > 0) & (pred <= pred_type(top)) & (target > 0) & (target <= top)

    result: FrameMetrics = {}
    for cutoff in (None, *cutoffs):
        selected = keep if cutoff is None else keep & (target < cutoff)
        if selected.any():
            result.update(_set_metrics(pred[selected], target[selected], suffix(cutoff)))
    return result


def empty_sums(cutoffs: Sequence[int] = CUTOFFS) -> Sums:
    """Zeroed sums: one per metric key, a frame count per pixel set, and ``skipped``."""
    sums = dict.fromkeys(metric_keys(cutoffs), 0.0)
    sums.update({frames_key(c): 0.0 for c in (None, *cutoffs)})
    sums["skipped"] = 0.0
    return sums


def _cutoffs_of(sums: Mapping[str, object]) -> list[int]:
    return sorted(int(k.split("@")[1]) for k in sums if k.startswith("frames@"))


def finalize_sums(sums: Mapping[str, float | torch.Tensor]) -> dict[str, float | int | None]:
    """Per-frame averages from sums (plain floats or 0-d tensors, e.g. after an all-reduce).

    Each set is averaged over the frames that had pixels in it; a set no frame had is None.
    """
    plain = {k: float(v) for k, v in sums.items()}
    result: dict[str, float | int | None] = {}
    for cutoff in (None, *_cutoffs_of(plain)):
        frames = plain[frames_key(cutoff)]
        for name in METRIC_NAMES:
            key = name + suffix(cutoff)
            result[key] = plain[key] / frames if frames else None
    for cutoff in (None, *_cutoffs_of(plain)):
        result[frames_key(cutoff)] = int(plain[frames_key(cutoff)])
    result["skipped"] = int(plain["skipped"])
    return result


class MetricAccumulator:
    """Averages per-frame metrics over frames, as the published tables do.

    Frames with no valid pixel are skipped and counted in ``skipped`` (the published script
    stops with an error on them). A frame with valid pixels but none below a cut-off does not
    enter that cut-off's average, and ``frames@c`` counts the frames that did (the published
    script turns the whole column into NaN then); when every frame has such pixels both agree.
    """

    def __init__(self, cutoffs: Sequence[int] = CUTOFFS) -> None:
        self.cutoffs = tuple(cutoffs)
        self.sums = empty_sums(self.cutoffs)

    def add(self, metrics: Mapping[str, float]) -> None:
        """Add one frame's :func:`frame_metrics` result."""
        if not metrics:
            self.sums["skipped"] += 1
            return
        for cutoff in (None, *self.cutoffs):
            if "abs_rel" + suffix(cutoff) not in metrics:
                continue
            self.sums[frames_key(cutoff)] += 1
            for name in METRIC_NAMES:
                self.sums[name + suffix(cutoff)] += metrics[name + suffix(cutoff)]

    def result(self) -> dict[str, float | int | None]:
        """Averages so far; see :func:`finalize_sums`."""
        return finalize_sums(self.sums)


def batch_metric_sums(
    pred: torch.Tensor,
    target: torch.Tensor,
    min_depth: float,
    max_depth: float,
    cutoffs: Sequence[int] = CUTOFFS,
) -> dict[str, torch.Tensor]:
    """Per-frame metrics of a batch of metric depths, summed over its frames (float64).

    ``pred`` and ``target`` are ``(B, ...)`` with one frame per leading index. The result has
    the layout of :func:`empty_sums` as 0-d tensors on the input's device: add it over batches,
    all-reduce it over ranks (:func:`all_reduce_sums`) and turn it into averages with
    :func:`finalize_sums`.
    """
    import torch

    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    p = pred.detach().reshape(pred.shape[0], -1).double()
    t = target.detach().reshape(target.shape[0], -1).double()

    in_range = (t >= min_depth) & (t <= max_depth)
    top = torch.where(in_range, t, -math.inf).amax(dim=1, keepdim=True)
    keep = in_range & (p > 0) & (p <= top) & (t > 0) & (t <= top)
    # Excluded pixels get harmless stand-ins so NaN/inf never reach a masked sum.
    p = torch.where(keep, p, 1.0)
    t = torch.where(keep, t, 1.0)

    ratio = torch.maximum(t / (p + EPS), p / (t + EPS))
    log_diff = torch.log(p + EPS) - torch.log(t + EPS)
    abs_diff = (t - p).abs()
    per_pixel = {
        "a1": (ratio <= _DELTA_BASE).double(),
        "a2": (ratio <= _DELTA_BASE**2).double(),
        "a3": (ratio <= _DELTA_BASE**3).double(),
        "abs_rel": abs_diff / (t + EPS),
        "sq_rel": abs_diff**2 / (t + EPS),
        "sq": abs_diff**2,
        "log_sq": log_diff**2,
        "log": log_diff,
        "mae": abs_diff,
    }

    sums: dict[str, torch.Tensor] = {}
    for cutoff in (None, *cutoffs):
        selected = keep if cutoff is None else keep & (t < cutoff)
        count = selected.sum(dim=1)
        has_pixels = count > 0
        denom = count.clamp(min=1).double()
        mean = {k: torch.where(selected, v, 0.0).sum(dim=1) / denom for k, v in per_pixel.items()}
        per_frame = {
            "a1": mean["a1"],
            "a2": mean["a2"],
            "a3": mean["a3"],
            "abs_rel": mean["abs_rel"],
            "sq_rel": mean["sq_rel"],
            "rmse": mean["sq"].sqrt(),
            "rmse_log": mean["log_sq"].sqrt(),
            "silog": mean["log_sq"] - mean["log"] ** 2,
            "mae": mean["mae"],
        }
        for name in METRIC_NAMES:
            sums[name + suffix(cutoff)] = torch.where(has_pixels, per_frame[name], 0.0).sum()
        sums[frames_key(cutoff)] = has_pixels.sum().double()
    sums["skipped"] = (~keep.any(dim=1)).sum().double()
    return sums


def add_sums(
    total: Mapping[str, float | torch.Tensor], more: Mapping[str, float | torch.Tensor]
) -> dict[str, float | torch.Tensor]:
    """Key-wise sum of two sum dicts (floats or tensors), e.g. over validation batches."""
    return {key: total[key] + more[key] for key in total}


def all_reduce_sums(sums: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum the sums over all DDP ranks; returns them unchanged outside a process group."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return dict(sums)
    keys = sorted(sums)
    flat = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64) for k in keys])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return dict(zip(keys, flat.unbind(0)))


def median_depth(split: str | os.PathLike, dataset: str = "mvsec") -> float:
    """The median valid depth (finite, positive, within the dataset's range) of a split's depth maps."""
    info = dataset_info(dataset)
    depths = [np.load(depth) for _, depth, _ in read_split_list(Path(split))]
    return float(np.median(np.concatenate([d[np.isfinite(d) & (d > 0) & (d <= info.max_depth)] for d in depths])))


def constant_baseline(train_split: str | os.PathLike, test_split: str | os.PathLike,
                      dataset: str = "mvsec") -> tuple[float, dict]:
    """The constant baseline of the demo and tests: the median valid depth of a training split,
    predicted for every pixel of every test frame; returns (median, metrics)."""
    info = dataset_info(dataset)
    median = median_depth(train_split, dataset)
    accumulator = MetricAccumulator()
    for _, depth, _ in read_split_list(Path(test_split)):
        target = np.load(depth)
        accumulator.add(frame_metrics(np.full_like(target, median), target, info.min_depth, info.max_depth))
    return median, accumulator.result()


def list_npy(folder: str | os.PathLike, suffixes: tuple[str, ...] = (".npy",)) -> list[Path]:
    """The files of a folder with one of ``suffixes`` in sorted name order (hidden files excluded, like glob)."""
    path = Path(folder)
    if not path.is_dir():
        raise EvalInputError(f"not a folder: {path}")
    found = [p for suffix in suffixes for p in glob.glob(os.path.join(glob.escape(str(path)), f"*{suffix}"))]
    return [Path(p) for p in sorted(found) if Path(p).is_file()]


def pair_files(pred_dir: str | os.PathLike, target_dir: str | os.PathLike,
               target_suffixes: tuple[str, ...] = (".npy",)) -> list[tuple[Path, Path]]:
    """Pair predictions with targets by position in sorted name order, as the published script.

    Names need not match (predictions are usually named after images, targets after depth
    maps), but the counts must; otherwise the error lists where the sorted names part ways.
    Targets are the files with one of ``target_suffixes`` (a protocol's ``target_suffixes``).
    """
    preds, targets = list_npy(pred_dir), list_npy(target_dir, target_suffixes)
    for folder, files, suffixes in ((pred_dir, preds, (".npy",)), (target_dir, targets, target_suffixes)):
        if not files:
            raise EvalInputError(f"no {' or '.join(suffixes)} files in {folder}")
    if len(preds) != len(targets):
        pred_stems, target_stems = {p.stem for p in preds}, {t.stem for t in targets}
        only_pred = [p.name for p in preds if p.stem not in target_stems][:5]
        only_target = [t.name for t in targets if t.stem not in pred_stems][:5]
        if only_pred or only_target:
            detail = f"first names only in predictions: {only_pred}; only in targets: {only_target}"
        else:
            detail = "the names overlap but the counts differ"
        raise EvalInputError(
            f"{len(preds)} predictions in {pred_dir} but {len(targets)} targets in {target_dir}; {detail}"
        )
    return list(zip(preds, targets))


def load_frame(path: Path) -> np.ndarray:
    """One ``.npy`` depth map (prediction or target) in its own precision; integer maps of other
    tools are taken too. Errors are ``EvalInputError`` naming the file."""
    return load_depth(path, error=EvalInputError, integers=True)


def evaluate_folders(
    pred_dir: str | os.PathLike, target_dir: str | os.PathLike, dataset: str, **options: object
) -> dict[str, float | int | None]:
    """Evaluate a folder of predicted ``.npy`` depths against a folder of metric targets.

    Files pair by sorted name (:func:`pair_files`); ``options`` are those of :func:`evaluate_pairs`.
    """
    return evaluate_pairs(pair_files(pred_dir, target_dir), dataset, **options)


def evaluate_pairs(
    pairs: Sequence[tuple[Path, Path]],
    dataset: str,
    *,
    pred_format: str = "metric",
    max_depth: float | None = None,
    reg_factor: float | None = None,
    rescale_target: bool = False,
    cutoffs: Sequence[int] = CUTOFFS,
    progress: bool = True,
) -> dict[str, float | int | None]:
    """Evaluate (prediction file, target file) pairs of ``.npy`` depth maps.

    ``max_depth`` and ``reg_factor`` default to the dataset's (spec §7); predictions are not
    resized, so each must have its target's shape.
    """
    settings = depth_settings(dataset, max_depth, reg_factor)
    min_depth, max_depth, reg_factor = settings["min_depth"], settings["max_depth"], settings["reg_factor"]
    if pred_format not in PRED_FORMATS:
        raise ValueError(f"unknown prediction format {pred_format!r}; expected one of {list(PRED_FORMATS)}")
    accumulator = MetricAccumulator(cutoffs)
    for pred_path, target_path in _progress(pairs, progress):
        pred, target = load_frame(pred_path), load_frame(target_path)
        if pred.shape != target.shape and np.squeeze(pred).shape == np.squeeze(target).shape:
            pred, target = np.squeeze(pred), np.squeeze(target)
        if pred.shape != target.shape:
            raise EvalInputError(
                f"{pred_path} has shape {pred.shape} but {target_path} has {target.shape}; "
                "predictions must be saved at the target resolution"
            )
        depth = prediction_to_depth(pred, pred_format, max_depth, reg_factor)
        accumulator.add(frame_metrics(depth, target, min_depth, max_depth, cutoffs, rescale_target))
    return accumulator.result()


def _progress(pairs: list[tuple[Path, Path]], enabled: bool) -> Iterable[tuple[Path, Path]]:
    if not enabled:
        return pairs
    from tqdm import tqdm

    return tqdm(pairs, desc="eval", unit="frame")


def write_json(path: str | os.PathLike, payload: Mapping[str, object]) -> None:
    """Atomically write a JSON report (no NaN: missing values are null)."""
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
