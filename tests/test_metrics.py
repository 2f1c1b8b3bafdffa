"""The evaluation protocol against hand-computed values on tiny frames (spec §8)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fuse.evaluate.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    add_sums,
    all_reduce_sums,
    batch_metric_sums,
    depth_range,
    finalize_sums,
    frame_metrics,
    metric_keys,
    prediction_to_depth,
)
from fuse.evaluate.protocols import E2DEPTH
from fuse.evaluate.published import all_rows, method_row, peer_rows

MVSEC_MIN = 80.0 * math.exp(-3.70378)  # ≈ 1.97 m
MVSEC_MAX = 80.0


def mvsec_frame(pred, target, **kwargs):
    return frame_metrics(np.array(pred, np.float64), np.array(target, np.float64), MVSEC_MIN, MVSEC_MAX, **kwargs)


def test_each_metric_on_a_small_frame():
    # target 2, 4, 5, 10 vs pred 2, 6, 3, 7: errors 0, 2, 2, 3; ratios 1, 1.5, 5/3, 10/7.
    m = mvsec_frame([[2.0, 6.0], [3.0, 7.0]], [[2.0, 4.0], [5.0, 10.0]])
    logs = [0.0, math.log(1.5), math.log(0.6), math.log(0.7)]
    assert m["a1"] == 0.25  # only the exact pixel is within 1.25
    assert m["a2"] == 0.75  # 1.5 and 10/7 are within 1.5625, 5/3 is not
    assert m["a3"] == 1.0  # all within 1.953125
    assert m["abs_rel"] == pytest.approx((0 + 2 / 4 + 2 / 5 + 3 / 10) / 4, rel=1e-5)
    assert m["sq_rel"] == pytest.approx((0 + 4 / 4 + 4 / 5 + 9 / 10) / 4, rel=1e-5)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 4 + 4 + 9) / 4), rel=1e-9)
    assert m["mae"] == pytest.approx(7 / 4, rel=1e-9)
    mean_sq = sum(v * v for v in logs) / 4
    assert m["rmse_log"] == pytest.approx(math.sqrt(mean_sq), rel=1e-5)
    assert m["silog"] == pytest.approx(mean_sq - (sum(logs) / 4) ** 2, rel=1e-4)


def test_eps_enters_as_published():
    # One pixel, target 5, pred 4: every eps term is visible at 1e-12.
    m = mvsec_frame([[4.0]], [[5.0]], cutoffs=())
    eps = 1e-5
    assert m["abs_rel"] == pytest.approx(1 / (5 + eps), rel=1e-12)
    assert m["sq_rel"] == pytest.approx(1 / (5 + eps), rel=1e-12)
    assert m["rmse_log"] == pytest.approx(abs(math.log(4 + eps) - math.log(5 + eps)), rel=1e-12)
    assert m["silog"] == pytest.approx(0.0, abs=1e-15)  # one pixel: no variance
    assert m["a1"] == 1.0  # 5 / (4 + eps) < 1.25


def test_masks_drop_nan_out_of_range_targets_and_bad_predictions():
    target = [[np.nan, 1.0, 100.0, 10.0], [20.0, 40.0, 40.0, 5.0]]
    pred = [[3.0, 3.0, 3.0, 0.0], [-1.0, 50.0, 20.0, 4.0]]
    # NaN, 1 m (< 1.97 m) and 100 m (> 80 m) targets go first; the frame's top is then 40 m,
    # so pred 0, pred -1 and pred 50 (> 40 although < 80) go too. Left: (40, 20) and (5, 4).
    m = mvsec_frame(pred, target)
    assert m["mae"] == pytest.approx((20 + 1) / 2)
    assert m["rmse"] == pytest.approx(math.sqrt((400 + 1) / 2))
    assert m["abs_rel"] == pytest.approx((20 / 40 + 1 / 5) / 2, rel=1e-5)


def test_nan_and_infinite_predictions_are_dropped():
    m = mvsec_frame([[np.nan, np.inf, 4.0]], [[5.0, 5.0, 5.0]], cutoffs=())
    assert m["mae"] == pytest.approx(1.0)


def test_cutoff_sets_use_the_whole_frames_max():
    # Top is 50 m. Below 10 m: (5, 9) and (8, 12); 12 > 8 (the subset's max) but <= 50, so it stays.
    m = mvsec_frame([[9.0, 12.0, 30.0, 50.0]], [[5.0, 8.0, 30.0, 50.0]])
    assert m["mae@10"] == pytest.approx(4.0)
    assert m["mae@20"] == pytest.approx(4.0)
    assert m["mae@30"] == pytest.approx(4.0)  # strict: the 30 m target is not below 30
    assert m["mae"] == pytest.approx((4 + 4 + 0 + 0) / 4)
    assert m["abs_rel@10"] == pytest.approx((4 / 5 + 4 / 8) / 2, rel=1e-5)


def test_cutoff_set_without_pixels_is_absent_from_the_frame():
    m = mvsec_frame([[25.0, 39.0]], [[25.0, 40.0]])
    assert "mae@10" not in m and "mae@20" not in m
    assert m["mae@30"] == pytest.approx(0.0)
    assert m["mae"] == pytest.approx(0.5)


def test_frame_without_valid_pixels_is_empty():
    assert mvsec_frame([[5.0, 5.0]], [[np.nan, 100.0]]) == {}
    # Valid targets, but every prediction is <= 0 or above the frame's top.
    assert mvsec_frame([[0.0, 11.0]], [[5.0, 10.0]]) == {}


def test_float32_frames_are_computed_in_float32():
    target = np.array([[3.3, 7.7, 12.1]], np.float32)
    pred = np.array([[3.0, 8.1, 11.0]], np.float32)
    m = frame_metrics(pred, target, MVSEC_MIN, MVSEC_MAX, cutoffs=())
    expected = float(np.abs(target - pred).mean(dtype=np.float32))
    assert expected != float(np.abs(target - pred).mean(dtype=np.float64))  # the test can tell them apart
    assert m["mae"] == expected


def test_accumulator_averages_over_frames_not_pixels_and_counts_skipped():
    acc = MetricAccumulator()
    acc.add(mvsec_frame([[5.0]], [[6.0]]))  # one pixel, error 1
    acc.add(mvsec_frame([[5.0, 5.0, 5.0]], [[5.0, 5.0, 9.0]]))  # three pixels, mean error 4/3
    acc.add(mvsec_frame([[5.0]], [[np.nan]]))  # no valid pixel
    acc.add(mvsec_frame([[-2.0]], [[5.0]]))  # valid target, prediction dropped
    result = acc.result()
    assert result["mae"] == pytest.approx((1 + 4 / 3) / 2)  # a pixel average would be 5/4
    assert result["frames"] == 2
    assert result["skipped"] == 2
    assert result["a1"] == pytest.approx((1 + 2 / 3) / 2)


def test_cutoff_average_uses_frames_that_have_such_pixels():
    acc = MetricAccumulator()
    acc.add(mvsec_frame([[6.0, 20.0]], [[5.0, 20.0]]))  # below 10 m: error 1
    acc.add(mvsec_frame([[15.0, 40.0]], [[12.0, 40.0]]))  # nothing below 10 m
    result = acc.result()
    assert result["frames"] == 2
    assert result["frames@10"] == 1
    assert result["mae@10"] == pytest.approx(1.0)
    assert result["frames@20"] == 2
    assert result["mae@20"] == pytest.approx((1 + 3) / 2)


def test_empty_accumulator_reports_none_not_nan():
    acc = MetricAccumulator()
    acc.add({})
    result = acc.result()
    assert result["frames"] == 0 and result["skipped"] == 1
    assert all(result[k] is None for k in metric_keys())


def test_result_has_every_key():
    result = MetricAccumulator().result()
    expected = set(metric_keys()) | {"frames", "frames@10", "frames@20", "frames@30", "skipped"}
    assert set(result) == expected
    assert {"a1", "rmse_log", "silog", "mae@30", "sq_rel@20"} <= set(result)


def test_normalized_log_predictions():
    alpha = 3.70378
    depth = prediction_to_depth(np.array([1.0, 0.0, 0.5]), "normalized_log", 80.0, alpha)
    assert depth == pytest.approx([80.0, 80.0 * math.exp(-alpha), 80.0 * math.exp(-alpha / 2)])


def test_disparity_predictions_are_inverted_and_clipped():
    lo, hi = depth_range(80.0, 3.70378)
    depth = prediction_to_depth(np.array([0.5, 0.0, -2.0, 0.01]), "disparity", 80.0, 3.70378)
    assert depth == pytest.approx([2.0, hi, lo, hi])  # 1/0.01 = 100 m is clipped to 80 m


def test_unknown_prediction_format_is_rejected():
    with pytest.raises(ValueError, match="prediction format"):
        prediction_to_depth(np.ones(2), "inverse", 80.0, 3.7)


def test_rescale_target_reproduces_the_non_metric_script():
    # Kept targets 20 and 40 become 40 and 80 (max -> D_max), matching these predictions.
    m = mvsec_frame([[40.0, 80.0]], [[20.0, 40.0]], rescale_target=True)
    assert m["mae"] == pytest.approx(0.0, abs=1e-12)
    # Without it the top is 40 m, so only the pixel predicted at 40 m stays.
    assert mvsec_frame([[40.0, 80.0]], [[20.0, 40.0]])["mae"] == pytest.approx(20.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        frame_metrics(np.ones((2, 2)), np.ones((2, 3)), 1.0, 80.0)


def test_torch_batch_sums_match_the_frame_protocol():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    target = rng.uniform(0.0, 95.0, (4, 6, 7))
    target[rng.random(target.shape) < 0.2] = np.nan
    target[1, 2:, :] = np.where(target[1, 2:, :] < 10, 11.0, target[1, 2:, :])
    target[1, :2, :] = 15.0  # frame 1 has nothing below 10 m
    target[2] = np.nan  # frame 2 has no valid pixel
    pred = target * rng.uniform(0.6, 1.5, target.shape)
    pred[rng.random(pred.shape) < 0.1] = -1.0
    pred[np.isnan(pred)] = 3.0

    acc = MetricAccumulator()
    for p, t in zip(pred, target):
        acc.add(frame_metrics(p, t, MVSEC_MIN, MVSEC_MAX))
    halves = [
        batch_metric_sums(torch.from_numpy(pred[s]), torch.from_numpy(target[s]), MVSEC_MIN, MVSEC_MAX)
        for s in (slice(0, 2), slice(2, 4))
    ]
    got = finalize_sums(all_reduce_sums(add_sums(*halves)))
    want = acc.result()
    assert want["skipped"] == got["skipped"] == 1
    assert want["frames@10"] == got["frames@10"] == 2
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


def test_published_rows_are_complete_and_findable():
    computed = set(frame_metrics(np.full((4, 4), 5.0), np.full((4, 4), 6.0), MVSEC_MIN, MVSEC_MAX))
    for row in all_rows("e2depth"):
        columns = {key for _, key in E2DEPTH.columns[row.dataset]}
        assert set(row.metrics) <= computed, row  # every published number is one the protocol computes
        if row.source.startswith("FUSE paper"):
            assert set(row.metrics) == columns, row  # FUSE's tables fill every column
        else:
            assert len(set(row.metrics) & columns) >= 2, row  # other papers print fewer, e.g. AIMDepth no RMSE
    assert method_row("FUSE", "dense", "base").metrics["mae@30"] == 5.976
    assert method_row("FUSE", "mvsec", "small", "outdoor_night1").metrics["rmse"] == 6.785
    day1 = method_row("FUSE", "mvsec", "large", "outdoor_day1")
    assert day1.size is None and "not stated" in day1.label and day1.metrics["a1"] == 0.745
    assert {r.method for r in peer_rows("FUSE", "mvsec", "outdoor_day1")} == {"E2Depth", "HMNet(I+E)", "PCDepth", "RAMNet", "SRFNet"}
    with pytest.raises(ValueError, match="sequence"):
        method_row("FUSE", "mvsec", "large")
    with pytest.raises(ValueError, match="eventscape"):
        method_row("FUSE", "eventscape", "large")


finite_depths = st.floats(min_value=-50.0, max_value=150.0, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    pred=arrays(np.float32, (3, 4), elements=finite_depths),
    target=arrays(np.float32, (3, 4), elements=finite_depths),
)
def test_metrics_are_finite_whenever_a_pixel_is_valid(pred, target):
    metrics = frame_metrics(pred, target, MVSEC_MIN, MVSEC_MAX)
    assume(metrics)
    assert set(METRIC_NAMES) <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("a1", "a2", "a3"))
