"""KITTI depth-completion metrics (spec fcfrnet.md §5) and the ``kitti_completion`` protocol.

As the Paddle port evaluates (``main.py`` and ``metric.py``): predictions are clamped to
[0.9, 85] m, pixels with ground truth above 0.1 m are scored, each image gives RMSE and MAE in
mm and iRMSE and iMAE in 1/km, and the images' values are averaged (never pooled over pixels).
The 0.1 m test is made in the target's precision, errors in float64. Predictions are ``.npy``
metres; targets ``.npy`` metres (NaN or 0 = no depth) or KITTI 16-bit PNGs (metres x 256,
0 = no depth).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from fuse.errors import EvalInputError
from fuse.evaluate.metrics import load_frame
from fuse.evaluate.protocols import Columns, Metrics, Protocol, register_protocol
from fuse.methods.fcfrnet.kitti import read_depth_png

MIN_TARGET = 0.1  # m: ground truth at or below is not scored
CLAMP = (0.9, 85.0)  # m: the range predictions are clamped to before scoring
KEYS = ("rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km")


def _threshold(dtype: np.dtype) -> np.floating:
    """0.1 m in the target's own precision, as the reference compares float32 maps: a float32
    0.1 is not above it."""
    return (dtype.type if np.issubdtype(dtype, np.floating) else np.float64)(MIN_TARGET)


def image_metrics(pred: np.ndarray, target: np.ndarray, clamp: tuple[float, float] = CLAMP) -> dict[str, float]:
    """RMSE and MAE (mm), iRMSE and iMAE (1/km) of one image in metres; empty without valid pixels."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise EvalInputError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    valid = target > _threshold(target.dtype)  # False for NaN too
    if not valid.any():
        return {}
    estimate, truth = pred[valid].astype(np.float64), target[valid].astype(np.float64)
    if not np.isfinite(estimate).all():
        raise EvalInputError("the prediction has NaN or inf where the ground truth has depth; a completion "
                             "must predict every pixel")
    estimate = np.clip(estimate, *clamp)
    error_mm = 1000.0 * (estimate - truth)
    inverse_error_per_km = 1.0 / (estimate / 1000.0) - 1.0 / (truth / 1000.0)
    return {
        "rmse_mm": float(np.sqrt(np.mean(error_mm ** 2))), "mae_mm": float(np.mean(np.abs(error_mm))),
        "irmse_per_km": float(np.sqrt(np.mean(inverse_error_per_km ** 2))),
        "imae_per_km": float(np.mean(np.abs(inverse_error_per_km))),
    }


def mean_over_images(per_image: Sequence[dict[str, float]]) -> Metrics:
    """The images' metrics averaged; images without valid pixels are counted in ``skipped``."""
    scored = [metrics for metrics in per_image if metrics]
    means = {key: float(np.mean([metrics[key] for metrics in scored])) if scored else None for key in KEYS}
    return means | {"frames": len(scored), "skipped": len(per_image) - len(scored)}


def load_depth_file(path: Path) -> np.ndarray:
    """Metres from a ``.png`` (KITTI 16-bit) or ``.npy`` file, by its suffix."""
    return read_depth_png(path) if Path(path).suffix.lower() == ".png" else load_frame(path)


def evaluate_pairs(pairs: Sequence[tuple[Path, Path]], dataset: str, *, progress: bool = False) -> Metrics:
    """Score (prediction, target) files; ``dataset`` names the table (kitti), ``progress`` is
    accepted for the ``eval`` command and not shown."""
    per_image = []
    for pred_path, target_path in pairs:
        pred, target = load_depth_file(pred_path), load_depth_file(target_path)
        if pred.shape != target.shape and np.squeeze(pred).shape == np.squeeze(target).shape:
            pred, target = np.squeeze(pred), np.squeeze(target)
        if pred.shape != target.shape:
            raise EvalInputError(f"{pred_path} has shape {pred.shape} but {target_path} has {target.shape}; save "
                                 "predictions at the ground truth's size (the 352x1216 crop on val_selection)")
        per_image.append(image_metrics(pred, target))
    if not per_image:
        raise EvalInputError("no prediction/ground-truth pairs to evaluate")
    return mean_over_images(per_image)


COLUMNS: dict[str, Columns] = {
    "kitti": (("RMSE [mm] ↓", "rmse_mm"), ("MAE [mm] ↓", "mae_mm"), ("iRMSE [1/km] ↓", "irmse_per_km"),
              ("iMAE [1/km] ↓", "imae_per_km")),
}

KITTI_COMPLETION = register_protocol(Protocol(
    "kitti_completion",
    "KITTI depth completion (spec fcfrnet.md §5): predictions clamped to [0.9, 85] m, ground truth > 0.1 m, "
    "RMSE/MAE in mm and iRMSE/iMAE in 1/km per image, averaged over images",
    ("metric_depth",), MappingProxyType(COLUMNS), evaluate_pairs, ("progress",),
    lambda dataset, **_: {"min_target": MIN_TARGET, "clamp": list(CLAMP)}, target_suffixes=(".npy", ".png")))
