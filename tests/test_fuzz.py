"""Fuzz tests (hypothesis) for the event readers, ``voxel_grid`` and the metrics: whatever the
input, the result is either one clear error of the documented type or a correct, finite output."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fuse.prep.common import PrepError, standardize_events
from fuse.evaluate.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    batch_metric_sums,
    finalize_sums,
    frame_metrics,
)
from fuse.events import voxel_grid
from fuse.events.mvsec import MvsecRecording, RecordingError
from tests.mvsec_fixtures import T0, Recording, write_files

H, W = 6, 8
MIN_DEPTH, MAX_DEPTH = 80.0 * math.exp(-3.7), 80.0  # MVSEC's evaluated range

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
coordinate = st.one_of(st.integers(-2, max(H, W) + 1).map(float), st.floats(-1.0, 10.0), any_float)
polarity = st.sampled_from([-1.0, 0.0, 1.0, 2.0, 0.5, np.nan])
BREAKAGES = [(0, np.nan), (0, np.inf), (0, -np.inf), (1, float(W)), (1, -0.5), (2, float(H)), (2, np.nan), (1, 1e300)]


def column(draw, n: int, elements: st.SearchStrategy) -> np.ndarray:
    return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float64)


@st.composite
def event_windows(draw):
    """(N, 4) t, x, y, p windows on the H x W sensor, a third of them with one broken entry."""
    n = draw(st.integers(0, 40))
    events = np.stack([column(draw, n, st.floats(-1.0, 2.0)),
                       column(draw, n, st.floats(0.0, W, exclude_max=True)),
                       column(draw, n, st.floats(0.0, H, exclude_max=True)),
                       column(draw, n, st.sampled_from([-1.0, 0.0, 1.0, 0.5, 2.0]))], axis=1).reshape(-1, 4)
    broken = n > 0 and draw(st.integers(0, 2)) == 0
    if broken:
        col, value = draw(st.sampled_from(BREAKAGES))
        events[draw(st.integers(0, n - 1)), col] = value
    return events, not broken


# ----------------------------------------------------------------------------- voxel_grid


def per_pixel(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the sum of the events' ±1 polarities, and how many events there are."""
    polarities, counts = np.zeros((H, W)), np.zeros((H, W))
    for t, x, y, p in events:
        polarities[int(y), int(x)] += 1.0 if p >= 0.5 else -1.0
        counts[int(y), int(x)] += 1
    return polarities, counts


@settings(max_examples=150, deadline=None)
@given(window=event_windows(), num_bins=st.integers(1, 5), sort=st.booleans(), offset=st.sampled_from([0.0, T0]))
# Found by hypothesis: an unsorted window whose first..last span is 2.2e-308 s made the event at
# t = 2 overflow tn to inf, which was reported as a non-finite timestamp instead of dropped.
@example(window=(np.array([[0.0, 0, 0, -1], [0.0, 0, 0, -1], [2.0, 0, 0, -1], [2.2250738585072014e-308, 0, 0, -1]]),
                 True), num_bins=3, sort=False, offset=0.0)
def test_voxel_grid_is_an_error_or_a_finite_grid_that_keeps_every_polarity(window, num_bins, sort, offset):
    events, valid = window
    events[:, 0] += offset  # MVSEC's Unix-second timestamps stress float64 rounding
    if sort:
        events = events[np.argsort(events[:, 0], kind="stable")]
    try:
        grid = voxel_grid(events, num_bins, H, W)
    except ValueError as error:
        assert not valid and ("outside" in str(error) or "non-finite" in str(error))
        return
    assert grid.shape == (num_bins, H, W) and grid.dtype == np.float32 and np.isfinite(grid).all()
    if valid:
        polarities, counts = per_pixel(events)
        if sort:  # each event splits its polarity between two neighbouring bins
            np.testing.assert_allclose(grid.sum(axis=0), polarities, atol=1e-4)
        else:  # rows outside first..last of an unsorted window are dropped: never more than the events
            assert np.all(np.abs(grid.sum(axis=0)) <= counts + 1e-4)
        np.testing.assert_allclose(voxel_grid(torch.from_numpy(events), num_bins, H, W).numpy(), grid, atol=1e-5)


# ----------------------------------------------------------------------------- event readers


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(any_float, coordinate, coordinate, polarity), max_size=30))
def test_prepared_events_are_an_error_or_sorted_on_the_sensor_with_unit_polarity(rows):
    raw = np.array(rows, dtype=np.float64).reshape(-1, 4)
    try:
        events = standardize_events(raw, H, W, Path("window.npy"))
    except PrepError as error:
        assert "window.npy" in str(error)
        return
    assert events.shape == raw.shape and np.isfinite(events).all()
    assert np.all(np.diff(events[:, 0]) >= 0)
    assert np.all((events[:, 1] >= 0) & (events[:, 1] < W) & (events[:, 2] >= 0) & (events[:, 2] < H))
    assert set(np.unique(events[:, 3])) <= {-1.0, 1.0}
    assert sorted(map(tuple, events[:, :3])) == sorted(map(tuple, raw[:, :3]))  # nothing lost or invented


recording_times = st.lists(st.floats(0.0, 0.5), min_size=1, max_size=6)


@st.composite
def recordings(draw):
    """MVSEC-layout content, often broken: unsorted or non-finite times, events off the sensor, odd polarities."""
    n = draw(st.integers(0, 40))
    times = np.sort(np.array(draw(st.lists(st.floats(0.0, 0.6), min_size=n, max_size=n)), dtype=np.float64))
    if n > 1 and draw(st.booleans()):  # one pair out of order
        i = draw(st.integers(0, n - 2))
        times[i] = times[i + 1] + draw(st.floats(1e-3, 0.1))
    if n and draw(st.integers(0, 4)) == 0:
        times[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    xs = np.array(draw(st.lists(st.integers(0, W - 1), min_size=n, max_size=n)), dtype=np.float64)
    ys = np.array(draw(st.lists(st.integers(0, H - 1), min_size=n, max_size=n)), dtype=np.float64)
    ps = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0, 0.0]), min_size=n, max_size=n)), dtype=np.float64)
    if n and draw(st.integers(0, 4)) == 0:
        column, value = draw(st.sampled_from([("x", float(W)), ("y", -1.0), ("p", 2.0), ("y", np.nan)]))
        {"x": xs, "y": ys, "p": ps}[column][draw(st.integers(0, n - 1))] = value
    events = np.stack([xs, ys, T0 + times, ps], axis=1).reshape(-1, 4)
    depth_ts = T0 + np.sort(np.array(draw(recording_times)))
    offsets = np.array(draw(st.lists(st.floats(-0.015, 0.015), min_size=len(depth_ts), max_size=len(depth_ts))))
    image_ts = np.sort(depth_ts + offsets)  # about half of them within the 10 ms the selection allows
    return events, depth_ts, image_ts, draw(st.integers(1, 8))


def brute_force_window(events: np.ndarray, t: float) -> np.ndarray:
    rows = events[(events[:, 2] >= t - 0.05) & (events[:, 2] <= t)]
    out = rows[:, [2, 0, 1, 3]].copy()
    out[out[:, 3] == 0, 3] = -1.0
    return out


def well_formed(events: np.ndarray) -> bool:
    t = events[:, 2]
    return bool(np.isfinite(t).all() and np.all(np.diff(t) >= 0) and np.isfinite(events).all()
                and np.all((events[:, 0] >= 0) & (events[:, 0] < W) & (events[:, 1] >= 0) & (events[:, 1] < H))
                and np.isin(events[:, 3], (-1.0, 0.0, 1.0)).all())


@settings(max_examples=60, deadline=None)
@given(content=recordings())
def test_mvsec_reader_is_an_error_naming_the_file_or_gives_exactly_the_windows(content):
    events, depth_ts, image_ts, chunk_size = content
    with tempfile.TemporaryDirectory() as folder:
        rec = Recording(Path(folder) / "s_data.hdf5", Path(folder) / "s_gt.hdf5", events,
                        np.zeros((len(image_ts), H, W), np.uint8), image_ts,
                        np.ones((len(depth_ts), H, W), np.float32), depth_ts, H, W)
        write_files(rec)
        try:
            with MvsecRecording(rec.data_path, rec.gt_path, chunk_size=chunk_size) as reader:
                frames = list(reader.frames())
                windows = {info.depth_index: reader.read_events(info.event_start, info.event_stop)
                           for info in frames if info.kept}
        except RecordingError as error:
            assert str(rec.data_path) in str(error) and not well_formed(events)
            return
    assert len(frames) == len(depth_ts)
    for info in frames:
        expected = brute_force_window(events, depth_ts[info.depth_index]) if well_formed(events) else None
        if info.kept:
            window = windows[info.depth_index]
            assert np.all((window[:, 0] >= depth_ts[info.depth_index] - 0.05) & (window[:, 0] <= depth_ts[info.depth_index]))
            assert set(np.unique(window[:, 3])) <= {-1.0, 1.0}
            if expected is not None:
                np.testing.assert_array_equal(window, expected)
        elif info.skip_reason.startswith("no events") and expected is not None:
            assert len(expected) == 0  # an empty window is skipped and counted, never an error


# ----------------------------------------------------------------------------- metrics

depth_values = st.one_of(st.floats(-10.0, 150.0, width=32), st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
junk_targets = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -3.0])


@settings(max_examples=150, deadline=None)
@given(pred=arrays(np.float64, (3, 5), elements=depth_values), target=arrays(np.float64, (3, 5), elements=depth_values))
def test_frame_metrics_are_absent_or_finite_never_nan(pred, target):
    metrics = frame_metrics(pred, target, MIN_DEPTH, MAX_DEPTH)
    assert all(math.isfinite(value) for value in metrics.values())
    for key in ("", "@10", "@20", "@30"):
        present = {name + key in metrics for name in METRIC_NAMES}
        assert present in ({True}, {False})  # a pixel set has all nine metrics or none
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("a1", "a2", "a3") if k in metrics)


@settings(max_examples=100, deadline=None)
@given(pred=arrays(np.float64, 8, elements=st.floats(0.5, 90.0)), target=arrays(np.float64, 8, elements=st.floats(2.0, 80.0)),
       junk_pred=arrays(np.float64, 5, elements=depth_values), junk_target=arrays(np.float64, 5, elements=junk_targets))
def test_nan_inf_and_negative_depth_pixels_change_nothing(pred, target, junk_pred, junk_target):
    clean = frame_metrics(pred, target, MIN_DEPTH, MAX_DEPTH)
    mixed = frame_metrics(np.concatenate([junk_pred, pred]), np.concatenate([junk_target, target]), MIN_DEPTH, MAX_DEPTH)
    assert mixed.keys() == clean.keys()
    for key, value in clean.items():
        assert mixed[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@settings(max_examples=80, deadline=None)
@given(pred=arrays(np.float64, (4, 6), elements=depth_values), target=arrays(np.float64, (4, 6), elements=depth_values))
def test_accumulated_and_batched_metrics_agree_and_count_skipped_frames(pred, target):
    accumulator = MetricAccumulator()
    for p, t in zip(pred, target):
        accumulator.add(frame_metrics(p, t, MIN_DEPTH, MAX_DEPTH))
    expected = accumulator.result()
    batched = finalize_sums(batch_metric_sums(torch.from_numpy(pred), torch.from_numpy(target), MIN_DEPTH, MAX_DEPTH))
    assert expected["frames"] + expected["skipped"] == len(pred)
    assert batched["frames"] == expected["frames"] and batched["skipped"] == expected["skipped"]
    for key, value in expected.items():
        if value is None:  # a pixel set no frame had: None, never NaN
            assert batched[key] is None, key
        else:
            assert math.isfinite(value) and batched[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
