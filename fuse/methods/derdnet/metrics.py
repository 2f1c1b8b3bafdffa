"""DERD-Net's pooled point metrics (spec derd-net.md §8) and the ``derdnet_points`` protocol.

All selected, GT-covered points of a test sequence are pooled; nothing is averaged per frame.
With ``derd_compat`` (the default) the numbers follow the authors' ``compute_metrics`` and
``evaluate_performance`` (tub-rip/DERD-Net ``notebooks/Classes_and_Functions.ipynb``), quirks
included; ``derd_compat=False`` gives the standard forms. Computed in float64 (the authors used
float32, where the 1e-11 offset vanishes for depths of a metre or more).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from fuse.errors import EvalInputError, UsageError
from fuse.evaluate.metrics import load_frame
from fuse.evaluate.protocols import Columns, Metrics, Protocol, register_protocol

EPSILON = 1e-11  # compat: added to prediction and GT before every metric
BAD_PIX_DISPARITY = 5.0  # px
BAD_PIX_RELATIVE = 0.05
DELTA_BASE = 1.25


@dataclass(frozen=True)
class StereoRig:
    """Baseline (m) and focal length (px) that turn a depth error into a disparity error for bad-pix."""

    baseline: float
    focal: float


# MVSEC's focal is the raw left fx (K0), not the 199.65 px of the DSI's undistorted camera (P0):
# the authors' value, kept in both modes because bad-pix is their metric.
STEREO_RIGS: dict[str, StereoRig] = {
    "mvsec": StereoRig(0.09988137641750752, 226.38018519795807),
    "dsec": StereoRig(0.6, 557.2412109375),
}


def stereo_rig(dataset: str) -> StereoRig:
    try:
        return STEREO_RIGS[dataset.lower()]
    except KeyError:
        raise UsageError(f"DERD-Net's metrics know {sorted(STEREO_RIGS)}, not {dataset!r}") from None


def _median(values: np.ndarray, derd_compat: bool) -> float:
    """Compat: ``torch.median``, which returns the lower of the two middle values for an even count."""
    if not derd_compat:
        return float(np.median(values))
    middle = (values.size - 1) // 2
    return float(np.partition(values, middle)[middle])


def point_metrics(pred: np.ndarray, gt: np.ndarray, dataset: str, derd_compat: bool = True,
                  points: int | None = None) -> Metrics:
    """Pooled metrics of predicted depths at points against GT (metres; NaN: no point / no GT).

    ``points`` is the printed #Points, counted before the GT mask: by default the finite
    predictions. Values are scaled as printed: errors x100 (cm, %), and also ``mae_m`` /
    ``medae_m`` and ``points_m`` (millions) for the tables that print metres and millions.
    """
    pred, gt = np.asarray(pred, np.float64).ravel(), np.asarray(gt, np.float64).ravel()
    if pred.shape != gt.shape:
        raise EvalInputError(f"{pred.size} predicted points but {gt.size} GT values")
    rig = stereo_rig(dataset)
    has_point = np.isfinite(pred)
    points = int(has_point.sum()) if points is None else points
    scored = has_point & np.isfinite(gt)
    count = int(scored.sum())
    result: Metrics = {"points": points, "points_m": points / 1e6, "scored": count}
    if count == 0:
        return result | dict.fromkeys(("mae_cm", "medae_cm", "mae_m", "medae_m", "bad_pix", "silog", "are",
                                       "log_rmse", "d1", "d2", "d3"))
    estimate, target = pred[scored], gt[scored]
    if derd_compat:
        estimate, target = estimate + EPSILON, target + EPSILON
    error = np.abs(estimate - target)
    disparity_error = rig.baseline * rig.focal * np.abs(1.0 / estimate - 1.0 / target)
    bad = (disparity_error > BAD_PIX_DISPARITY) & (np.abs(target / estimate - 1.0) > BAD_PIX_RELATIVE)
    log_ratio = np.log(target) - np.log(estimate)
    silog = np.mean(log_ratio ** 2) - np.mean(log_ratio) ** 2
    # Compat: SILog without the square root, and ARE divided by the prediction instead of the GT.
    silog = silog if derd_compat else np.sqrt(max(silog, 0.0))
    are = np.mean(error / (estimate if derd_compat else target))
    ratio = np.maximum(estimate / target, target / estimate)
    mae, medae = float(np.mean(error)), _median(error, derd_compat)
    return result | {
        "mae_cm": 100 * mae, "medae_cm": 100 * medae, "mae_m": mae, "medae_m": medae,
        "bad_pix": 100 * float(np.mean(bad)), "silog": 100 * float(silog), "are": 100 * float(are),
        "log_rmse": 100 * float(np.sqrt(np.mean(log_ratio ** 2))),
        **{f"d{k}": 100 * float(np.mean(ratio < DELTA_BASE ** k)) for k in (1, 2, 3)},
    }


def evaluate_pairs(pairs: Sequence[tuple[Path, Path]], dataset: str, *, derd_compat: bool = True,
                   progress: bool = False) -> Metrics:
    """Pool (prediction, GT) ``.npy`` depth maps of one shape each, NaN = no point / no GT.

    A multi-pixel map written back with ``write_points`` holds each pixel once, where the authors
    score all nine outputs of every centre (overlaps several times); score those with
    ``point_metrics`` on the per-centre outputs to match them exactly. ``progress`` is accepted
    for the ``eval`` command and not shown (pooling is fast).
    """
    preds, gts, empty = [], [], 0
    for pred_path, gt_path in pairs:
        pred, gt = load_frame(pred_path), load_frame(gt_path)
        if pred.shape != gt.shape:
            raise EvalInputError(f"{pred_path} has shape {pred.shape} but {gt_path} has {gt.shape}")
        has_point = np.isfinite(pred)
        preds.append(pred[has_point].astype(np.float64))
        gts.append(gt[has_point].astype(np.float64))
        empty += not np.isfinite(gts[-1]).any()
    if not preds:
        raise EvalInputError("no prediction/GT pairs to evaluate")
    metrics = point_metrics(np.concatenate(preds), np.concatenate(gts), dataset, derd_compat)
    return metrics | {"frames": len(preds), "skipped": empty}


_POINTS = ("#Points [M]", "points_m")
COLUMNS: dict[str, Columns] = {
    "mvsec": (("Mean [cm] ↓", "mae_cm"), ("Median [cm] ↓", "medae_cm"), ("bad-pix [%] ↓", "bad_pix"), _POINTS),
    "dsec": (("Mean [m] ↓", "mae_m"), ("Median [m] ↓", "medae_m"), ("bad-pix [%] ↓", "bad_pix"), _POINTS),
}

POINTS_PROTOCOL = register_protocol(Protocol(
    "derdnet_points",
    "DERD-Net's pooled point metrics (spec derd-net.md §8): all selected GT-covered points of the test "
    "sequence(s) at once, #Points before the GT mask, the authors' quirks unless derd_compat=False",
    ("point_depth",), MappingProxyType(COLUMNS), evaluate_pairs, ("derd_compat", "progress"),
    lambda dataset, derd_compat=True, **_: {"derd_compat": derd_compat}))
