"""Event voxel grids (E2Depth / FUSE definition, spec §6), time windows and normalization.

Every function accepts numpy arrays or torch tensors and returns the same kind (a tensor
stays on its device). torch is never imported here: a tensor can only be passed in if the
caller already imported it, so data-preparation scripts stay light.

Voxel grid of one window of events ``(t, x, y, p)`` with ``B`` bins:

* ``tn = (B - 1) * (t - t_first) / (t_last - t_first)`` with ``t_first, t_last`` the window's
  first and last rows (a zero span counts as 1);
* ``ti = trunc(tn)``, ``dt = tn - ti``; the event adds ``pol * (1 - dt)`` to bin ``ti`` and
  ``pol * dt`` to bin ``ti + 1`` when that bin exists, at pixel ``(trunc(y), trunc(x))``;
* ``pol`` is +1 for ``p >= 0.5`` and -1 otherwise, so both the {0, 1} and {-1, +1}
  conventions work.

Differences from the upstream numpy code (``events_to_voxel_grid`` in E2Depth and FUSE),
all of which only matter for inputs the upstream code never sees:

* upstream keeps any non-zero ``p`` as the weight (``p = 2`` weighs 2); here every event
  weighs ±1;
* the numba kernel adds each weight into the float32 grid, as upstream does; the numpy
  fallback sums in float64 and rounds once at the end; both agree with upstream to float32
  rounding (about 1e-6 relative);
* ``tn`` is computed as ``(t - t_first) * ((B - 1) / span)``, not ``(B - 1) * (t - t_first) / span``;
  the grid is continuous in ``tn``, so this changes results by float64 rounding only;
* for windows that are not sorted by time, events before the first row are dropped (as in
  E2Depth's torch version) where upstream numpy would wrap them around to the last bins.

Kernels: numpy arrays and CPU tensors go through one fused pass compiled with numba (each
event is read once and added straight into the float32 grid), shared by the process's CPUs
for large calls (speed in BENCHMARKS.md). Without numba the same sums come from a blocked
numpy kernel (one ``np.add.at`` per block of events). Tensors on other devices use torch ops.
"""
from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np

from fuse.jit import compiled

if TYPE_CHECKING:
    import torch

    ArrayLike = Union[np.ndarray, torch.Tensor]
else:
    ArrayLike = Any

__all__ = ["voxel_grid", "voxel_grids", "normalize_voxel", "window_indices"]

# Events handled per step of the numpy kernel: the ~10 temporaries of one block stay in L2.
_BLOCK = 1 << 14


def _is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _check_events(events: ArrayLike) -> None:
    if events.ndim != 2 or events.shape[1] != 4:
        raise ValueError(f"events must have shape (N, 4) with columns t, x, y, p; got {tuple(events.shape)}")


def _check_grid(num_bins: int, height: int, width: int) -> None:
    if num_bins < 1 or height < 1 or width < 1:
        raise ValueError(f"num_bins, height and width must be positive; got {num_bins}, {height}, {width}")


def voxel_grid(events: ArrayLike, num_bins: int, height: int, width: int, *, threads: int | None = None) -> ArrayLike:
    """Voxel grid ``(num_bins, height, width)`` float32 of one time-sorted window of events.

    ``events`` is ``(N, 4)`` with columns ``t, x, y, p`` (numpy array or torch tensor);
    an empty window gives zeros. The input is never modified. ``threads``: see :func:`voxel_grids`.
    """
    if not _is_tensor(events):
        events = np.asarray(events)
    return voxel_grids(events, [0], [len(events)], num_bins, height, width, threads=threads)[0]


def voxel_grids(
    events: ArrayLike, starts: ArrayLike, stops: ArrayLike, num_bins: int, height: int, width: int, *,
    threads: int | None = None,
) -> ArrayLike:
    """Voxel grids ``(W, num_bins, height, width)`` of the windows ``events[starts[i]:stops[i]]``.

    Windows may overlap or be empty (zeros); each is normalized in time by its own first and
    last event, exactly as if :func:`voxel_grid` were called on it. Batching avoids a Python
    loop over windows: all events go through one vectorized pass.

    ``threads`` (numba kernel only): how many CPU threads share a call of at least ~1e5 events
    per thread; by default all CPUs of the process, one inside a DataLoader worker. Splitting
    one window across threads sums per-thread grids, which changes the float32 sums by rounding
    (about 1e-7 relative); ``threads=1`` adds every event in order, as upstream does.
    """
    _check_grid(num_bins, height, width)
    if _is_tensor(events):
        _check_events(events)
        return _voxel_grids_torch(events, starts, stops, num_bins, height, width, threads)
    events = np.asarray(events)
    _check_events(events)
    starts = np.asarray(starts, dtype=np.intp).reshape(-1)
    stops = np.asarray(stops, dtype=np.intp).reshape(-1)
    _check_bounds(starts, stops, len(events))
    return _voxel_grids_cpu(events, starts, stops, num_bins, height, width, threads)


def _check_bounds(starts: np.ndarray, stops: np.ndarray, n: int) -> None:
    if starts.shape != stops.shape:
        raise ValueError(f"starts and stops differ in length: {starts.shape[0]} vs {stops.shape[0]}")
    if starts.size and (starts.min() < 0 or stops.max() > n or np.any(stops < starts)):
        raise ValueError(f"window bounds must satisfy 0 <= start <= stop <= {n}")


def _window_layout(starts: np.ndarray, stops: np.ndarray) -> tuple[slice | np.ndarray, np.ndarray | None]:
    """Rows to read for all windows (a slice when they tile one range) and each row's window."""
    lengths = stops - starts
    if len(starts) == 1:
        return slice(int(starts[0]), int(stops[0])), None
    win = np.repeat(np.arange(len(starts)), lengths)
    if np.all(starts[1:] == stops[:-1]):
        return slice(int(starts[0]), int(stops[-1])), win
    offsets = np.cumsum(lengths) - lengths
    rows = np.arange(int(lengths.sum())) + np.repeat(starts - offsets, lengths)
    return rows, win


def _window_times(events: ArrayLike, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window's first and last timestamp as float64 numpy arrays (0 for empty windows)."""
    nonempty = stops > starts
    rows = np.concatenate((starts[nonempty], stops[nonempty] - 1))
    if _is_tensor(events):
        import torch

        times = events[torch.from_numpy(rows).to(events.device), 0].double().cpu().numpy()
    else:
        times = np.asarray(events[rows, 0], dtype=np.float64)
    first, last = np.zeros(len(starts)), np.zeros(len(starts))
    first[nonempty], last[nonempty] = np.split(times, 2)
    return first, last


def _time_scaling(first: np.ndarray, last: np.ndarray, num_bins: int) -> np.ndarray:
    """Factor mapping ``t - first`` onto ``[0, num_bins - 1]``; a zero span counts as 1 (upstream).

    A span so short (below 1e-307 s) that the factor would overflow is widened to the shortest
    span with a finite factor, so that ``t - first = 0`` still maps to 0 and not to NaN."""
    span = last - first
    span[span == 0] = 1.0
    shortest = (num_bins - 1) / np.finfo(np.float64).max
    span = np.where((span > 0) & (span < shortest), shortest, span)
    return (num_bins - 1) / span


_FLOAT64_MAX = float(np.finfo(np.float64).max)

# Events per validation block of the numba kernel (128 KiB of float64 rows: still in L2 when the
# scatter loop reads them again).
_CHECK_BLOCK = 4096


def _accumulate_windows(events: np.ndarray, starts: np.ndarray, stops: np.ndarray, firsts: np.ndarray,
                        lasts: np.ndarray, num_bins: int, height: int, width: int, out: np.ndarray) -> int:
    """Add the events ``starts[w]:stops[w]`` into ``out[w]`` (float32, flat ``num_bins * height * width``),
    with times normalized by ``firsts[w]`` and ``lasts[w]`` (the first and last time of the whole window,
    which a part of a window split across threads does not see itself).

    Written for numba (see :func:`_numba_kernel`): the numpy kernel's arithmetic per event, in
    float64, each weight added into the float32 grid as upstream does (so the grid itself is the
    accumulator: 1 MiB for 3 bins, mostly cache-resident, and nothing to copy out). Each block of
    events is first checked as a whole (times within the window's first..last, coordinates on
    the sensor, all finite: vectorized reductions, far cheaper than per-event branches), then
    scattered without per-event checks; a block that fails goes through the checked loop, which
    drops or reports events. Returns 0, or 1 for a non-finite timestamp, 2 for a coordinate
    outside the sensor.
    """
    plane = height * width
    for w in range(starts.shape[0]):
        begin, end = starts[w], stops[w]
        if end <= begin:
            continue
        grid = out[w]
        first = firsts[w]
        last = lasts[w]
        span = last - first
        if span == 0.0:
            span = 1.0
        if 0.0 < span < (num_bins - 1) / _FLOAT64_MAX:  # as _time_scaling: a finite factor
            span = (num_bins - 1) / _FLOAT64_MAX
        scale = (num_bins - 1) / span
        for block in range(begin, end, _CHECK_BLOCK):
            block_end = min(block + _CHECK_BLOCK, end)
            # Min / max / sum reductions compile to SIMD code; a finite sum rules out NaN and inf.
            t_min, t_max, x_min, x_max, y_min, y_max, total = np.inf, -np.inf, np.inf, -np.inf, np.inf, -np.inf, 0.0
            for i in range(block, block_end):
                t, x, y = np.float64(events[i, 0]), np.float64(events[i, 1]), np.float64(events[i, 2])
                t_min, t_max = min(t_min, t), max(t_max, t)
                x_min, x_max = min(x_min, x), max(x_max, x)
                y_min, y_max = min(y_min, y), max(y_max, y)
                total += t + x + y
            # Every time within first..last (so 0 <= tn <= num_bins - 1) and every event on the sensor.
            regular = (math.isfinite(total) and t_min >= first and t_max <= last and x_min >= 0.0 and x_max < width
                       and y_min >= 0.0 and y_max < height)
            if regular:  # the usual case: no event needs a check
                for i in range(block, block_end):
                    tn = (np.float64(events[i, 0]) - first) * scale
                    low = np.trunc(tn)
                    # Arithmetic rather than a branch: polarity is random, a branch would mispredict.
                    pol = 2.0 * (events[i, 3] >= 0.5) - 1.0
                    upper = pol * (tn - low)
                    k = int(low) * plane + int(events[i, 2]) * width + int(events[i, 1])
                    grid[k] += np.float32(pol - upper)
                    if low + 1.0 < num_bins:  # false only for events on the last bin: well predicted
                        grid[k + plane] += np.float32(upper)
                continue
            for i in range(block, block_end):
                tn = (np.float64(events[i, 0]) - first) * scale
                x = np.float64(events[i, 1])
                y = np.float64(events[i, 2])
                if not math.isfinite(np.float64(events[i, 0])):
                    return 1
                if not (x >= 0.0 and x < width and y >= 0.0 and y < height):
                    return 2
                if not (tn >= 0.0 and tn < num_bins):
                    continue  # only in windows not sorted by time (tn may overflow to inf there)
                low = np.trunc(tn)  # a float: math.trunc would give an int64 that overflows for huge tn
                pol = 2.0 * (events[i, 3] >= 0.5) - 1.0
                upper = pol * (tn - low)
                k = int(low) * plane + int(y) * width + int(x)
                grid[k] += np.float32(pol - upper)
                if low + 1.0 < num_bins:
                    grid[k + plane] += np.float32(upper)
    return 0


def _numba_kernel() -> Callable | None:
    """:func:`_accumulate_windows` compiled by numba (``fuse.jit.compiled``), or None without numba."""
    return compiled(_accumulate_windows)


def _voxel_grids_cpu(
    events: np.ndarray, starts: np.ndarray, stops: np.ndarray, num_bins: int, height: int, width: int,
    threads: int | None = None,
) -> np.ndarray:
    """The numba kernel where numba is installed, the numpy kernel otherwise."""
    kernel = _numba_kernel()
    if kernel is None:
        return _voxel_grids_numpy(events, starts, stops, num_bins, height, width)
    return _voxel_grids_numba(kernel, events, starts, stops, num_bins, height, width, threads)


def _voxel_grids_numba(
    kernel: Callable, events: np.ndarray, starts: np.ndarray, stops: np.ndarray, num_bins: int, height: int,
    width: int, threads: int | None = None,
) -> np.ndarray:
    if events.dtype not in (np.float32, np.float64):
        events = events.astype(np.float64)  # one compiled variant per float type is enough
    n_windows = len(starts)
    out = np.zeros((n_windows, num_bins * height * width), np.float32)
    firsts, lasts = _window_times(events, starts, stops)
    threads = _default_threads() if threads is None else threads
    threads = max(1, min(threads, int((stops - starts).sum()) // _MIN_EVENTS_PER_THREAD))

    def run(task: tuple) -> tuple[int, np.ndarray]:
        part_starts, part_stops, part_firsts, part_lasts, part_out = task
        if part_out is None:  # a private grid, cleared by the thread that fills it
            part_out = np.zeros_like(out)
        status = kernel(events, part_starts, part_stops, part_firsts, part_lasts, num_bins, height, width, part_out)
        return status, part_out

    if threads == 1:
        results = [run((starts, stops, firsts, lasts, out))]
    elif n_windows >= threads:
        # Whole windows per thread, balanced by event count: every thread writes its own rows of out.
        ends = np.cumsum(stops - starts)
        cuts = np.searchsorted(ends, ends[-1] * np.arange(1, threads) / threads, side="right")
        bounds = [0, *cuts.tolist(), n_windows]
        parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        results = list(_thread_pool(threads).map(
            run, [(starts[p], stops[p], firsts[p], lasts[p], out[p]) for p in parts]))
    else:
        # Fewer windows than threads (usually one big window): each thread takes an equal share of
        # every window's events into its own grid; the grids are summed at the end.
        lengths = stops - starts
        cuts = [starts + lengths * j // threads for j in range(threads + 1)]
        tasks = [(cuts[j], cuts[j + 1], firsts, lasts, out if j == 0 else None) for j in range(threads)]
        results = list(_thread_pool(threads).map(run, tasks))
        for _, private in results[1:]:
            out += private
    status = max(status for status, _ in results)
    if status == 1:
        raise ValueError("events contain non-finite timestamps")
    if status == 2:
        raise ValueError(f"event coordinates outside the {width}x{height} sensor (or not finite)")
    return out.reshape(n_windows, num_bins, height, width)


# Events per thread below which splitting a call does not pay: handing work to a thread, and
# clearing and adding a private grid, cost about as much as scattering ~1e5 events.
_MIN_EVENTS_PER_THREAD = 1 << 17

_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """A pool kept between calls (starting threads costs ~50 us each), remade after a fork."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)  # a smaller pool of this process: let its threads end
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="voxel"))
    return _POOL[2]


def _default_threads() -> int:
    """The CPUs this process may use; one inside a torch DataLoader worker, where the workers
    already share out the CPUs."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.utils.data.get_worker_info() is not None:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _voxel_grids_numpy(
    events: np.ndarray, starts: np.ndarray, stops: np.ndarray, num_bins: int, height: int, width: int
) -> np.ndarray:
    n_windows = len(starts)
    plane = height * width
    volume = num_bins * plane
    # Complex accumulator: the real part collects each event's weight for its lower bin, the
    # imaginary part its weight for the bin above (shifted up one plane at the end), so one
    # np.add.at per block does both scatters.
    grid = np.zeros(n_windows * volume, np.complex128)
    rows, win = _window_layout(starts, stops)
    ev = events[rows]
    n = len(ev)

    first, last = _window_times(events, starts, stops)
    scale = _time_scaling(first, last, num_bins)

    # Work block by block so that every temporary stays in cache.
    size = max(1, min(_BLOCK, n))
    tn, low, frac, polarity, fx, fy = (np.empty(size) for _ in range(6))
    weights = np.empty(size, np.complex128)
    index = np.empty(size, np.intp)
    for s in range(0, n, size):
        e = min(s + size, n)
        k = e - s
        blk = ev[s:e]
        wb = None if win is None else win[s:e]

        a = tn[:k]
        np.subtract(blk[:, 0], first[0] if wb is None else first[wb], out=a, dtype=np.float64)
        np.multiply(a, scale[0] if wb is None else scale[wb], out=a)
        if not np.isfinite(blk[:, 0]).all():
            raise ValueError("events contain non-finite timestamps")
        lo, hi = a.min(), a.max()  # inf only for times far outside an unsorted window's first..last
        x, y = fx[:k], fy[:k]
        np.trunc(blk[:, 1], out=x, dtype=np.float64)
        np.trunc(blk[:, 2], out=y, dtype=np.float64)
        if not (x.min() >= 0 and y.min() >= 0 and x.max() < width and y.max() < height):
            raise ValueError(f"event coordinates outside the {width}x{height} sensor (or not finite)")

        b, dt, pol = low[:k], frac[:k], polarity[:k]
        w = weights[:k].view(np.float64).reshape(k, 2)
        np.trunc(a, out=b)
        np.subtract(a, b, out=dt)
        # p - 0.5 is positive exactly for ON events in both polarity conventions.
        np.subtract(blk[:, 3], 0.5, out=pol, dtype=np.float64)
        np.copysign(1.0, pol, out=pol)
        np.multiply(pol, dt, out=w[:, 1])
        np.subtract(pol, w[:, 1], out=w[:, 0])
        if lo < 0 or hi >= num_bins:
            # Only for windows not sorted by time: drop events outside first..last.
            bad = ~((a >= 0) & (b < num_bins))
            b[bad] = 0.0
            w[bad] = 0.0

        b *= plane
        y *= width
        b += y
        b += x
        if wb is not None:
            b += wb * float(volume)
        idx = index[:k]
        np.copyto(idx, b, casting="unsafe")
        np.add.at(grid, idx, weights[:k])

    grid = grid.reshape(n_windows, num_bins, plane)
    out = grid.real.copy()
    out[:, 1:] += grid.imag[:, :-1]  # the upper weight of the last bin is dropped
    return out.astype(np.float32).reshape(n_windows, num_bins, height, width)


def _voxel_grids_torch(
    events: torch.Tensor, starts: ArrayLike, stops: ArrayLike, num_bins: int, height: int, width: int,
    threads: int | None = None,
) -> torch.Tensor:
    """Tensor input: CPU tensors go through the CPU kernels (faster than torch ops on CPU),
    other devices through the same computation in torch ops."""
    import torch

    starts = np.asarray(torch.as_tensor(starts).cpu(), dtype=np.intp).reshape(-1)
    stops = np.asarray(torch.as_tensor(stops).cpu(), dtype=np.intp).reshape(-1)
    _check_bounds(starts, stops, len(events))
    if events.device.type == "cpu":
        array = events.detach().numpy() if events.dtype in (torch.float64, torch.float32) else events.double().numpy()
        return torch.from_numpy(_voxel_grids_cpu(array, starts, stops, num_bins, height, width, threads))
    return _voxel_grids_torch_ops(events, starts, stops, num_bins, height, width)


def _voxel_grids_torch_ops(
    events: torch.Tensor, starts: np.ndarray, stops: np.ndarray, num_bins: int, height: int, width: int
) -> torch.Tensor:
    import torch

    device = events.device
    n_windows = len(starts)
    plane = height * width
    volume = num_bins * plane
    grid = torch.zeros(n_windows * volume, dtype=torch.float64, device=device)
    rows, win = _window_layout(starts, stops)
    ev = events[rows] if isinstance(rows, slice) else events[torch.from_numpy(rows).to(device)]
    if len(ev) == 0:
        return grid.view(n_windows, num_bins, height, width).float()

    first, last = _window_times(events, starts, stops)
    scale = _time_scaling(first, last, num_bins)
    if win is None:
        window_offset, first_t, scale_t = 0, float(first[0]), float(scale[0])
    else:
        win_t = torch.from_numpy(win).to(device)
        window_offset = win_t * volume
        first_t = torch.from_numpy(first).to(device)[win_t]
        scale_t = torch.from_numpy(scale).to(device)[win_t]

    tn = (ev[:, 0].double() - first_t) * scale_t
    xs, ys = ev[:, 1], ev[:, 2]
    if not bool(torch.isfinite(ev[:, 0]).all()):
        raise ValueError("events contain non-finite timestamps")
    if not bool((xs >= 0).all() & (ys >= 0).all() & (xs < width).all() & (ys < height).all()):
        raise ValueError(f"event coordinates outside the {width}x{height} sensor (or not finite)")
    ti = tn.trunc()
    dt = tn - ti
    pol = torch.where(ev[:, 3] >= 0.5, 1.0, -1.0).double()
    valid = (tn >= 0) & (ti < num_bins)
    has_high = valid & (ti + 1 < num_bins)
    ti = torch.where(valid, ti, 0).long()
    index = window_offset + ti * plane + ys.long() * width + xs.long()
    grid.index_add_(0, index, torch.where(valid, pol * (1.0 - dt), 0.0))
    grid.index_add_(0, torch.where(has_high, index + plane, index), torch.where(has_high, pol * dt, 0.0))
    return grid.view(n_windows, num_bins, height, width).float()


def normalize_voxel(voxel: ArrayLike, *, batched: bool = False) -> ArrayLike:
    """Standardize the non-zero entries of each sample to mean 0, std 1; zeros stay zero.

    Matches FUSE's ``normalize_voxelgrid`` (numpy ``.std()``, i.e. the population std with
    ddof = 0 - not torch.std's unbiased default) and E2Depth's torch version. A sample whose
    non-zero entries all have the same value (std 0) is returned unchanged. With
    ``batched`` the first axis indexes samples, each normalized on its own. Statistics are
    computed in float64; the result keeps the input's floating dtype (float32 otherwise).
    """
    if _is_tensor(voxel):
        import torch

        out_dtype = voxel.dtype if voxel.is_floating_point() else torch.float32
        x = voxel.double().reshape(len(voxel) if batched else 1, -1)
        mask = x != 0
        count = mask.sum(1, keepdim=True)
        mean = x.sum(1, keepdim=True) / count.clamp(min=1)
        centered = torch.where(mask, x - mean, 0.0)
        std = torch.sqrt((centered * centered).sum(1, keepdim=True) / count.clamp(min=1))
        out = torch.where(std > 0, centered / torch.where(std > 0, std, 1.0), x)
        return out.reshape(voxel.shape).to(out_dtype)

    voxel = np.asarray(voxel)
    out_dtype = voxel.dtype if np.issubdtype(voxel.dtype, np.floating) else np.float32
    x = voxel.astype(np.float64).reshape(len(voxel) if batched else 1, -1)
    mask = x != 0
    count = np.maximum(mask.sum(1, keepdims=True), 1)
    mean = x.sum(1, keepdims=True) / count
    centered = np.where(mask, x - mean, 0.0)
    std = np.sqrt((centered * centered).sum(1, keepdims=True) / count)
    out = np.where(std > 0, centered / np.where(std > 0, std, 1.0), x)
    return out.reshape(voxel.shape).astype(out_dtype)


def window_indices(timestamps: ArrayLike, end_times: ArrayLike, duration: float) -> tuple[ArrayLike, ArrayLike]:
    """Row ranges ``[start, stop)`` of the events with ``end - duration <= t <= end``.

    Both ends are inclusive, as in FUSE's MVSEC preparation (events at exactly
    ``end - duration`` and at ``end`` belong to the window). ``timestamps`` must be sorted.
    """
    if _is_tensor(timestamps):
        import torch

        ends = torch.as_tensor(end_times, dtype=timestamps.dtype, device=timestamps.device)
        return (
            torch.searchsorted(timestamps, ends - duration, right=False),
            torch.searchsorted(timestamps, ends, right=True),
        )
    ends = np.asarray(end_times, dtype=np.float64)
    return (
        np.searchsorted(timestamps, ends - duration, side="left"),
        np.searchsorted(timestamps, ends, side="right"),
    )
