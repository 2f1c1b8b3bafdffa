"""DERD-Net's pooled point metrics (spec derd-net.md §8) against a direct re-statement of the
authors' formulas, each quirk on its own, the protocol over .npy files and the published rows."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fuse.errors import UsageError
from fuse.evaluate.protocols import evaluate_pairs, protocol_named
from fuse.evaluate.published import all_rows
from fuse.methods.derdnet.metrics import STEREO_RIGS, point_metrics

GT = np.array([1.0, 2.0, 3.0, 4.0, 5.5, 6.0, np.nan, 2.5])
PRED = np.array([1.1, 1.8, 3.3, 4.0, 4.0, 6.5, 3.0, np.nan])  # index 6: a point without GT; 7: GT without a point


def restated(pred: np.ndarray, gt: np.ndarray, baseline: float, focal: float) -> dict[str, float]:
    """spec §8 as written: 1e-11 added to both, errors x100."""
    scored = np.isfinite(pred) & np.isfinite(gt)
    e, z = pred[scored] + 1e-11, gt[scored] + 1e-11
    n = len(e)
    d = np.log(z) - np.log(e)
    bad = [baseline * focal * abs(1 / a - 1 / b) > 5 and abs(b / a - 1) > 0.05 for a, b in zip(e, z)]
    delta = np.maximum(e / z, z / e)
    return {
        "mae_cm": 100 * sum(abs(e - z)) / n, "bad_pix": 100 * sum(bad) / n,
        "silog": 100 * (sum(d ** 2) / n - sum(d) ** 2 / n ** 2), "are": 100 * sum(abs(e - z) / e) / n,
        "log_rmse": 100 * math.sqrt(sum(d ** 2) / n),
        **{f"d{k}": 100 * sum(delta < 1.25 ** k) / n for k in (1, 2, 3)},
    }


@pytest.mark.parametrize("dataset", ["mvsec", "dsec"])
def test_metrics_match_the_formulas(dataset):
    rig = STEREO_RIGS[dataset]
    metrics = point_metrics(PRED, GT, dataset)
    for key, value in restated(PRED, GT, rig.baseline, rig.focal).items():
        assert metrics[key] == pytest.approx(value, rel=1e-9), key
    assert metrics["mae_m"] == pytest.approx(metrics["mae_cm"] / 100)
    assert metrics["scored"] == 6


def test_points_are_counted_before_the_gt_mask():
    metrics = point_metrics(PRED, GT, "mvsec")
    assert metrics["points"] == 7 and metrics["points_m"] == 7e-6 and metrics["scored"] == 6
    assert point_metrics(PRED, GT, "mvsec", points=11)["points"] == 11  # e.g. a multi-pixel dilated union


def test_bad_pix_uses_each_datasets_baseline_and_focal():
    # |z/ẑ - 1| and the disparity error b*f*|1/ẑ - 1/z| on MVSEC / DSEC:
    # 10 m as 11 m: 9 %, 0.21 / 3.04 px; 4 m as 5 m: 20 %, 1.13 / 16.7 px; 2 m as 2.06 m: 2.9 %, 0.33 / 4.9 px;
    # 1 m as 1.04 m: 3.8 %, 0.87 / 12.9 px (over 5 px but under 5 %: both conditions are needed).
    pred, gt = np.array([11.0, 5.0, 2.06, 1.04]), np.array([10.0, 4.0, 2.0, 1.0])
    assert point_metrics(pred, gt, "mvsec")["bad_pix"] == 0
    assert point_metrics(pred, gt, "dsec")["bad_pix"] == pytest.approx(25.0)
    assert STEREO_RIGS["mvsec"].focal == 226.38018519795807  # raw K0 fx, not P0's 199.65 (spec §8)


def test_are_divides_by_the_prediction_in_compat_mode():
    pred, gt = np.array([2.0]), np.array([1.0])
    assert point_metrics(pred, gt, "mvsec")["are"] == pytest.approx(50.0)
    assert point_metrics(pred, gt, "mvsec", derd_compat=False)["are"] == pytest.approx(100.0)


def test_silog_has_no_square_root_in_compat_mode():
    pred, gt = np.array([1.0, 2.0]), np.array([2.0, 2.0])
    variance = np.var(np.log(gt) - np.log(pred))
    assert point_metrics(pred, gt, "mvsec")["silog"] == pytest.approx(100 * variance)
    assert point_metrics(pred, gt, "mvsec", derd_compat=False)["silog"] == pytest.approx(100 * np.sqrt(variance))


def test_median_is_torchs_lower_middle_value_in_compat_mode():
    pred, gt = np.array([1.1, 1.3, 1.6, 2.0]), np.ones(4)  # errors 0.1, 0.3, 0.6, 1.0
    assert point_metrics(pred, gt, "mvsec")["medae_cm"] == pytest.approx(30.0)
    assert point_metrics(pred, gt, "mvsec", derd_compat=False)["medae_cm"] == pytest.approx(45.0)


def test_epsilon_is_added_to_both_in_compat_mode():
    pred, gt = np.array([1e-11]), np.array([3e-11])
    assert point_metrics(pred, gt, "mvsec")["are"] == pytest.approx(100 * 2e-11 / 2e-11)
    assert point_metrics(pred, gt, "mvsec", derd_compat=False)["are"] == pytest.approx(100 * 2e-11 / 3e-11)


def test_protocol_pools_points_over_files(tmp_path):
    frames = [(np.array([[1.0, np.nan], [2.0, 3.0]]), np.array([[1.5, 1.0], [2.0, np.nan]])),
              (np.array([[np.nan, 4.0], [np.nan, np.nan]]), np.array([[2.0, 4.4], [1.0, 1.0]]))]
    pairs = []
    for index, (pred, gt) in enumerate(frames):
        pairs.append((tmp_path / f"pred{index}.npy", tmp_path / f"gt{index}.npy"))
        np.save(pairs[-1][0], pred.astype(np.float32))
        np.save(pairs[-1][1], gt.astype(np.float32))
    metrics = evaluate_pairs(pairs, "mvsec", "derdnet_points")
    pooled = point_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, np.nan, 4.4]), "mvsec")
    assert metrics["points"] == 4 and metrics["scored"] == 3 and metrics["frames"] == 2
    assert metrics["mae_cm"] == pytest.approx(pooled["mae_cm"], rel=1e-6)  # (0.5 + 0 + 0.4) / 3, not per frame
    assert metrics["mae_cm"] == pytest.approx(30.0, rel=1e-5)
    table = protocol_named("derdnet_points").table(metrics, "mvsec")
    assert "| Mean [cm] ↓ | Median [cm] ↓ | bad-pix [%] ↓ | #Points [M] |" in table
    with pytest.raises(UsageError, match="takes no"):
        evaluate_pairs(pairs, "mvsec", "derdnet_points", pred_format="disparity")


def test_published_rows_are_registered_for_both_datasets():
    rows = {(row.method, row.dataset): row for row in all_rows("derdnet_points")}
    assert len(rows) == 14
    assert rows["DERD-Net stereo + F_orig", "mvsec"].metrics == {
        "mae_cm": 11.69, "medae_cm": 5.50, "bad_pix": 0.89, "points_m": 0.79}
    assert rows["DERD-Net multi-pixel stereo + F_denser", "dsec"].metrics == {
        "mae_m": 1.79, "medae_m": 0.54, "bad_pix": 4.61, "points_m": 14.74}
    columns = protocol_named("derdnet_points").columns
    for (_, dataset), row in rows.items():
        assert set(row.metrics) == {key for _, key in columns[dataset]}
