"""Voxel grid, normalization and window slicing against direct implementations of spec §6."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuse.events import normalize_voxel, voxel_grid, voxel_grids, window_indices
from fuse.events import voxel as voxel_module

H, W = 12, 16
BACKENDS = ["numba", "numpy"]
compiled_kernel = voxel_module._numba_kernel  # before any test replaces it


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request, monkeypatch):
    """Every test runs with the numba kernel and again with the numpy fallback."""
    if request.param == "numba":
        if voxel_module._numba_kernel() is None:
            pytest.skip("numba is not installed")
    else:
        monkeypatch.setattr(voxel_module, "_numba_kernel", lambda: None)
    return request.param


def reference_voxel(events: np.ndarray, num_bins: int, height: int, width: int) -> np.ndarray:
    """Spec §6 written out with np.add.at (no shortcuts), float64 accumulation."""
    ev = np.array(events, dtype=np.float64)
    grid = np.zeros(num_bins * height * width)
    if len(ev) == 0:
        return grid.reshape(num_bins, height, width).astype(np.float32)
    span = ev[-1, 0] - ev[0, 0]
    if span == 0:
        span = 1.0
    t = (num_bins - 1) * (ev[:, 0] - ev[0, 0]) / span
    x = ev[:, 1].astype(int)
    y = ev[:, 2].astype(int)
    p = np.where(ev[:, 3] == 0, -1.0, ev[:, 3])
    ti = t.astype(int)
    frac = t - ti
    low = ti < num_bins
    np.add.at(grid, x[low] + y[low] * width + ti[low] * width * height, (p * (1 - frac))[low])
    high = ti + 1 < num_bins
    np.add.at(grid, x[high] + y[high] * width + (ti[high] + 1) * width * height, (p * frac)[high])
    return grid.reshape(num_bins, height, width).astype(np.float32)


def torch_ops_grids(events, starts, stops, num_bins: int, height: int = H, width: int = W) -> np.ndarray:
    """The torch-op kernel used for non-CPU tensors, run here on CPU so that CI covers it."""
    out = voxel_module._voxel_grids_torch_ops(
        torch.as_tensor(events), np.asarray(starts, np.intp), np.asarray(stops, np.intp), num_bins, height, width
    )
    assert out.dtype == torch.float32
    return out.numpy()


def random_events(n: int, seed: int = 0, zero_one: bool = False, height: int = H, width: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(1.5e9, 1.5e9 + 0.05, n))
    x = rng.integers(0, width, n).astype(np.float64)
    y = rng.integers(0, height, n).astype(np.float64)
    p = rng.integers(0, 2, n).astype(np.float64)
    if not zero_one:
        p = 2 * p - 1
    return np.stack([t, x, y, p], axis=1)


@pytest.mark.parametrize("num_bins", [3, 5])
@pytest.mark.parametrize("zero_one", [False, True])
def test_matches_reference(num_bins, zero_one):
    events = random_events(3000, seed=num_bins, zero_one=zero_one)
    out = voxel_grid(events, num_bins, H, W)
    assert out.dtype == np.float32 and out.shape == (num_bins, H, W)
    reference = reference_voxel(events, num_bins, H, W)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(torch_ops_grids(events, [0], [len(events)], num_bins)[0], reference, atol=1e-5)
    assert np.abs(out).sum() > 100  # the comparison is not between two empty grids


def test_block_boundaries_do_not_matter(monkeypatch):
    events = random_events(1000, seed=3)
    expected = voxel_grid(events, 5, H, W)
    monkeypatch.setattr(voxel_module, "_BLOCK", 7)
    np.testing.assert_array_equal(voxel_grid(events, 5, H, W), expected)


def test_fractional_coordinates_truncate_like_upstream():
    events = random_events(500, seed=4)
    events[:, 1] += 0.75
    events[:, 2] += 0.5
    np.testing.assert_allclose(voxel_grid(events, 3, H, W), reference_voxel(events, 3, H, W), atol=1e-5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 300),
    num_bins=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    zero_one=st.booleans(),
    repeat_times=st.booleans(),
)
def test_matches_reference_property(n, num_bins, seed, zero_one, repeat_times):
    events = random_events(n, seed=seed, zero_one=zero_one)
    if repeat_times:  # many identical timestamps, including on bin edges
        events[:, 0] = np.round(events[:, 0] * 200) / 200
    np.testing.assert_allclose(voxel_grid(events, num_bins, H, W), reference_voxel(events, num_bins, H, W), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_kernel_equals_numpy_kernel(dtype, backend):
    """Large windows (many events per pixel), overlapping and empty windows, float32 and strided input."""
    if backend == "numpy":
        pytest.skip("compares both kernels itself; runs once")
    events = random_events(60000, seed=14, height=40, width=50)
    events[:, 0] -= events[0, 0]
    events[33000, 0] = -1.0  # out of order: its block takes the checked path, the others do not
    events = events.astype(dtype)
    starts = np.array([0, 5000, 5000, 30000, 59999])
    stops = np.array([60000, 45000, 5000, 60000, 60000])
    strided = np.repeat(events, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    expected = voxel_module._voxel_grids_numpy(events, starts, stops, 5, 40, 50)
    for array in (events, strided):
        out = voxel_module._voxel_grids_numba(compiled_kernel(), array, starts, stops, 5, 40, 50)
        assert out.dtype == np.float32 and out.shape == expected.shape
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-5)
    assert np.abs(expected).max() > 5  # many events per pixel and bin


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_matches_numpy(dtype):
    events = random_events(2000, seed=5)
    events[:, 0] -= events[0, 0]  # float32 cannot hold Unix-time seconds to the microsecond
    tensor = torch.from_numpy(events).to(dtype)
    expected = voxel_grid(tensor.double().numpy(), 5, H, W)
    out = voxel_grid(tensor, 5, H, W)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == tensor.device
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(torch_ops_grids(tensor, [0], [len(events)], 5)[0], expected, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_numpy():
    events = random_events(2000, seed=6)
    out = voxel_grid(torch.from_numpy(events).cuda(), 3, H, W)
    assert out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), voxel_grid(events, 3, H, W), atol=1e-5)


def test_zero_time_span_puts_everything_in_bin_zero():
    events = np.array([[2.0, 1, 1, 1], [2.0, 1, 1, 1], [2.0, 3, 2, 0]])
    out = voxel_grid(events, 3, H, W)
    expected = np.zeros((3, H, W), np.float32)
    expected[0, 1, 1] = 2.0
    expected[0, 2, 3] = -1.0
    np.testing.assert_array_equal(out, expected)
    # Unsorted window whose first and last times agree: the span of 1 still scales the others.
    events = np.array([[2.0, 1, 1, 1], [2.25, 2, 1, 1], [2.0, 3, 2, 1]])
    np.testing.assert_array_equal(voxel_grid(events, 3, H, W), reference_voxel(events, 3, H, W))
    np.testing.assert_array_equal(torch_ops_grids(events, [0], [3], 3)[0], reference_voxel(events, 3, H, W))
    assert voxel_grid(events, 3, H, W)[0, 1, 2] == 0.5


def test_events_on_the_last_bin_and_on_bin_edges():
    # t = 0, 0.5, 1 -> normalized 0, 1, 2 with 3 bins: each lands wholly in one bin
    events = np.array([[0.0, 0, 0, 1], [0.25, 3, 0, 1], [0.5, 1, 0, -1], [1.0, 2, 0, 1]])
    out = voxel_grid(events, 3, H, W)
    expected = np.zeros((3, H, W), np.float32)
    expected[0, 0, 0] = 1.0
    expected[1, 0, 1] = -1.0
    expected[2, 0, 2] = 1.0
    expected[0, 0, 3] = 0.5  # t = 0.25 -> 0.5: split between bins 0 and 1
    expected[1, 0, 3] = 0.5
    np.testing.assert_array_equal(out, expected)


def test_empty_input_gives_zeros():
    for events in (np.zeros((0, 4)), torch.zeros((0, 4))):
        out = voxel_grid(events, 5, H, W)
        assert tuple(out.shape) == (5, H, W)
        assert float(abs(out).sum()) == 0.0
    np.testing.assert_array_equal(torch_ops_grids(np.zeros((0, 4)), [0], [0], 5), np.zeros((1, 5, H, W)))


def test_input_is_not_modified():
    events = random_events(400, seed=7, zero_one=True)
    before = events.copy()
    voxel_grid(events, 3, H, W)
    voxel_grids(events, [0, 100], [200, 400], 3, H, W)
    np.testing.assert_array_equal(events, before)
    tensor = torch.from_numpy(before.copy())
    voxel_grid(tensor, 3, H, W)
    np.testing.assert_array_equal(tensor.numpy(), before)


def test_batched_equals_per_window():
    events = random_events(1000, seed=8)
    starts = np.array([0, 100, 100, 500, 999, 400])
    stops = np.array([100, 400, 100, 1000, 1000, 700])  # overlapping, empty, single-event windows
    expected = np.stack([voxel_grid(events[a:b], 3, H, W) for a, b in zip(starts, stops)])
    np.testing.assert_allclose(voxel_grids(events, starts, stops, 3, H, W), expected, atol=1e-6)
    out = voxel_grids(torch.from_numpy(events), torch.from_numpy(starts), stops, 3, H, W)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(torch_ops_grids(events, starts, stops, 3), expected, atol=1e-5)


def test_batched_tiling_windows():
    events = random_events(600, seed=9)
    bounds = [0, 150, 151, 600]
    expected = np.stack([voxel_grid(events[a:b], 5, H, W) for a, b in zip(bounds[:-1], bounds[1:])])
    np.testing.assert_allclose(voxel_grids(events, bounds[:-1], bounds[1:], 5, H, W), expected, atol=1e-6)
    np.testing.assert_allclose(torch_ops_grids(events, bounds[:-1], bounds[1:], 5), expected, atol=1e-5)


def test_unsorted_window_drops_events_before_the_first():
    events = random_events(200, seed=10)
    late = events.copy()
    late[50, 0] = events[0, 0] - 1.0  # earlier than the window start
    np.testing.assert_allclose(voxel_grid(late, 3, H, W), voxel_grid(np.delete(events, 50, axis=0), 3, H, W), atol=1e-6)
    np.testing.assert_allclose(torch_ops_grids(late, [0], [len(late)], 3)[0], voxel_grid(late, 3, H, W), atol=1e-6)


def test_unsorted_window_with_a_tiny_span_drops_far_events():
    # The last row is 1e-185 after the first, so an event 1 s later maps to t ~ 1e185 bins:
    # dropped, never turned into an overflowing integer bin.
    events = np.zeros((24, 4))
    events[:, 3] = -1.0
    events[22, 0], events[23, 0] = 1.0, 1.5e-185
    out = voxel_grid(events, 2, H, W)
    expected = np.zeros((2, H, W), np.float32)
    expected[0, 0, 0], expected[1, 0, 0] = -22.0, -1.0
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("column, value", [(1, W), (2, H), (1, -1.0), (2, np.nan)])
def test_events_outside_the_sensor_raise(column, value):
    events = random_events(50, seed=11)
    events[20, column] = value
    for arr in (events, torch.from_numpy(events)):
        with pytest.raises(ValueError, match="outside"):
            voxel_grid(arr, 3, H, W)
    with pytest.raises(ValueError, match="outside"):
        torch_ops_grids(events, [0], [50], 3)


def test_non_finite_timestamps_raise():
    events = random_events(50, seed=12)
    events[10, 0] = np.nan
    for arr in (events, torch.from_numpy(events)):
        with pytest.raises(ValueError, match="non-finite"):
            voxel_grid(arr, 3, H, W)
    with pytest.raises(ValueError, match="non-finite"):
        torch_ops_grids(events, [0], [50], 3)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        voxel_grid(np.zeros((5, 3)), 3, H, W)
    with pytest.raises(ValueError, match="bounds"):
        voxel_grids(np.zeros((5, 4)), [0], [6], 3, H, W)


def test_normalize_hand_computed():
    voxel = np.zeros((2, 2, 3), np.float32)
    voxel[0, 0, 0], voxel[0, 1, 2], voxel[1, 0, 1] = 1.0, 2.0, 3.0
    std = np.sqrt(2.0 / 3.0)  # population std of 1, 2, 3 (ddof = 0, as numpy's .std())
    expected = np.zeros_like(voxel)
    expected[0, 0, 0], expected[0, 1, 2], expected[1, 0, 1] = -1.0 / std, 0.0, 1.0 / std
    before = voxel.copy()
    out = normalize_voxel(voxel)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_array_equal(voxel, before)
    out_t = normalize_voxel(torch.from_numpy(voxel))
    assert out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), expected, rtol=1e-6)


def test_normalize_constant_and_empty_samples_unchanged():
    constant = np.zeros((3, 4, 4), np.float32)
    constant[0, 1, 1] = constant[2, 3, 0] = -2.5
    np.testing.assert_array_equal(normalize_voxel(constant), constant)
    zeros = np.zeros((3, 4, 4), np.float32)
    np.testing.assert_array_equal(normalize_voxel(zeros), zeros)
    np.testing.assert_array_equal(normalize_voxel(torch.from_numpy(constant)).numpy(), constant)


def test_normalize_batched_is_per_sample():
    rng = np.random.default_rng(13)
    batch = rng.standard_normal((4, 3, 5, 6)).astype(np.float32) * (rng.random((4, 3, 5, 6)) < 0.3)
    batch[1] *= 10
    expected = np.stack([normalize_voxel(v) for v in batch])
    np.testing.assert_allclose(normalize_voxel(batch, batched=True), expected, atol=1e-6)
    np.testing.assert_allclose(normalize_voxel(torch.from_numpy(batch), batched=True).numpy(), expected, atol=1e-6)
    nonzero = expected[2][expected[2] != 0]
    assert abs(nonzero.mean()) < 1e-5 and abs(nonzero.std() - 1) < 1e-5


def test_window_indices_include_both_ends():
    ts = np.array([0.0, 0.1, 0.15, 0.2, 0.2, 0.3])
    starts, stops = window_indices(ts, [0.2, 0.05, 0.5], 0.1)
    np.testing.assert_array_equal(starts, [1, 0, 6])
    np.testing.assert_array_equal(stops, [5, 1, 6])
    t_starts, t_stops = window_indices(torch.from_numpy(ts), [0.2, 0.05, 0.5], 0.1)
    np.testing.assert_array_equal(t_starts.numpy(), starts)
    np.testing.assert_array_equal(t_stops.numpy(), stops)


@pytest.mark.parametrize("windows", ["one", "many"])
def test_threads_split_the_work_without_changing_the_grid(windows, backend):
    """Calls large enough to be shared by threads: one window split in parts (per-thread grids
    summed) or whole windows per thread; the same grid as one thread, to float32 rounding."""
    if backend == "numpy":
        pytest.skip("threads apply to the numba kernel")
    n = 4 * voxel_module._MIN_EVENTS_PER_THREAD
    events = random_events(n, seed=21, height=30, width=40)
    if windows == "one":
        starts, stops = np.array([0]), np.array([n])
    else:
        starts, stops = np.array([0, 1000, n // 2, n // 2]), np.array([n // 3, n, n // 2, n])
    one = voxel_grids(events, starts, stops, 3, 30, 40, threads=1)
    split = voxel_grids(events, starts, stops, 3, 30, 40, threads=2)
    assert np.abs(one).max() > 20  # ~150 events per cell: rounding differences would show
    np.testing.assert_allclose(split, one, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(split, voxel_module._voxel_grids_numpy(events, starts, stops, 3, 30, 40),
                               rtol=1e-5, atol=1e-3)


def test_threads_report_bad_events_of_any_part(backend):
    if backend == "numpy":
        pytest.skip("threads apply to the numba kernel")
    n = 4 * voxel_module._MIN_EVENTS_PER_THREAD
    events = random_events(n, seed=22, height=30, width=40)
    events[n - 10, 1] = 40.0  # in the last thread's part
    with pytest.raises(ValueError, match="outside the 40x30 sensor"):
        voxel_grid(events, 3, 30, 40, threads=2)
    events[n - 10, 1] = 3.0
    events[n - 5, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite timestamps"):
        voxel_grid(events, 3, 30, 40, threads=2)


def test_one_thread_inside_dataloader_workers(monkeypatch):
    assert voxel_module._default_threads() >= 1
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    assert voxel_module._default_threads() == 1
