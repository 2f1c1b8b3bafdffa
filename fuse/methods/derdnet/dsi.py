"""Disparity Space Images by the EMVS space sweep, as dvs_mcemvs builds them for DERD-Net (spec §2).

Source: tub-rip/dvs_mcemvs ``49fbc7e``, ``mapper_emvs_stereo/src/mapper_emvs_stereo.cpp``
(``evaluateDSI``, ``fillVoxelGrid``, ``setupDSI``), ``src/process1.cpp``, ``src/main.cpp``,
``include/mapper_emvs_stereo/depth_vector.hpp`` and ``cartesian3dgrid/.../cartesian3dgrid.h``.
For one camera and one window of events (spec §2.5):

1. packets of ``packet_size`` events, each with the pose at its middle event (index + 512);
   packets are taken while ``start + packet_size < N``, so a trailing partial (or exactly full)
   packet is dropped;
2. per packet ``T_ev_rv = (T_rv_w · T_w_ev)⁻¹ = (R, t)``, camera centre ``C = -Rᵀ t``, and the
   homography through the plane ``Z0`` = depth of plane 0:
   ``H⁻¹ = K_ev (z0 R + t e3ᵀ) K_v⁻¹``; every undistorted event pixel is mapped by ``H``;
3. transfer to every plane ``z_i`` by IJCV Eq. 15 and bilinear voting (weights of the four
   neighbours; a vote only when ``0 <= x_i``, ``0 <= y_i``, ``x+1 < W``, ``y+1 < H``).

Stereo: both cameras vote in the left camera's reference view; ``fused = 2ab / (a + b + 0.1)``.
Windows (``main.cpp``, ``full_seq``): starts ``s = start, start + step, ...`` accumulated in
float64 as the C++ loop does, while ``s + duration <= stop``; reference time mid-window, or the
window end with ``forward_looking``; events with ``s <= t - t0 <= s + duration``.

Named options (default, source):

* ``packet_size`` (1024, ``MapperEMVS::packet_size_``);
* ``missing_pose``: ``"raise"`` (default; a clear error naming the window) or ``"skip"``, the
  C++ behaviour: a packet whose middle event has no pose moves its start one event on and retries
  (``evaluateDSI``), which drops events before the first / after the last pose;
* ``short_window``: a camera with no complete packet (< 1024 events, or exactly 1024) votes
  nothing. ``"zeros"`` (default, dvs_mcemvs: ``full_seq`` builds fresh mappers per window and
  still writes the all-zero volume, which fuses to zero) or ``"skip"`` (the window is not yielded);
* ``forward_looking`` (False for MVSEC; DSEC used True, spec §2.2).

Differences from the C++, each below any effect on DERD-Net's inputs:

* geometry and Eq. 15 run in float64 (the C++ uses float32): vote weights differ by ~1e-5;
* the reference pose must exist (the C++ ignores ``getPoseAt``'s failure and uses the identity);
* the C++ event reader also keeps the rest of the ROS message holding the first event after the
  window end (message bounds are not in MVSEC's hdf5); here the window ends at ``t <= stop``;
* the hot-pixel filter applied to the authors' bag (parameters unknown) is not reproduced;
* the spec's linear-depth planes (CMake ``DEFINE_USE_INVERSE_DEPTH=OFF``) are not offered:
  DERD-Net's DSIs need inverse-depth planes (spec §2.4).

Kernels: numpy / CPU input votes through a numba kernel (nogil, the planes shared among threads,
each plane written by one thread, in the C++ order: plane, packet, event); CUDA tensors (and
``backend="torch"`` anywhere) through torch ops (``index_add_`` over all planes of a chunk of
events). Both sum into float32 volumes ``(D, H, W)``, plane 0 the farthest.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Protocol, Sequence, Union

import numpy as np

from fuse.errors import RecordingError, UsageError
from fuse.jit import compiled
from fuse.methods.derdnet.calibration import Camera, StereoCalibration, undistortion_table
from fuse.methods.derdnet.poses import Trajectory

if TYPE_CHECKING:
    import torch

    Volume = Union[np.ndarray, torch.Tensor]
else:
    Volume = Any

__all__ = ["PACKET_SIZE", "STEREO_EPS", "DsiGrid", "inverse_depth_planes", "Window", "sliding_windows",
           "EventSource", "ArrayEvents", "SweepCamera", "mvsec_cameras", "CameraDsi", "camera_dsi",
           "fuse_stereo", "DsiFrame", "stream_dsis", "rigid_inverse"]

PACKET_SIZE = 1024
STEREO_EPS = 0.1


def inverse_depth_planes(min_depth: float, max_depth: float, num_planes: int) -> np.ndarray:
    """Plane depths (D,) uniform in inverse depth, far -> near: ``1/z_i = 1/z_max + i·Δ``.

    Computed in float32 exactly as ``InverseDepthVector::init`` / ``cellIndexToDepth`` do, so the
    near plane is ``1/(1/z_max + (D-1)Δ)`` (1.0085 m for 1..6.5 m, D = 100), never ``z_min``.
    """
    if not (0 < min_depth < max_depth) or num_planes < 1:
        raise UsageError(f"depth planes need 0 < min_depth < max_depth and num_planes >= 1; "
                         f"got {min_depth}, {max_depth}, {num_planes}")
    inv_min = np.float32(1) / np.float32(min_depth)
    inv_max = np.float32(1) / np.float32(max_depth)
    multiplier = np.float32(np.float32(num_planes) / (inv_min - inv_max))
    inverse = inv_max + np.arange(num_planes, dtype=np.float32) / multiplier
    return (np.float32(1) / inverse).astype(np.float64)


@dataclass(frozen=True, eq=False)
class DsiGrid:
    """The virtual (reference) pinhole camera and the depth planes (far -> near) of the DSI."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    depths: np.ndarray

    @classmethod
    def for_camera(cls, camera: Camera, min_depth: float = 1.0, max_depth: float = 6.5,
                   num_planes: int = 100) -> "DsiGrid":
        """``setupDSI`` with ``dimX = dimY = 0`` and ``fov_deg < 10``: the sensor size, focal
        ``P.fx`` for *both* axes, principal point of ``P``. Defaults: MVSEC (spec §2.1)."""
        fx, _, cx, cy = camera.pinhole
        return cls(camera.width, camera.height, fx, fx, cx, cy, inverse_depth_planes(min_depth, max_depth, num_planes))

    @property
    def num_planes(self) -> int:
        return len(self.depths)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Window:
    """One sliding window, times relative to the time origin ``t0``."""

    index: int
    start: float
    stop: float
    t_ref: float

    @property
    def name(self) -> str:
        """``std::to_string(t_ref)``: the prefix of dvs_mcemvs' ``<t_ref>dsi_fused.npy`` files."""
        return f"{self.t_ref:.6f}"


def sliding_windows(start_s: float, stop_s: float, duration_s: float = 1.0, step_s: float = 0.05,
                    forward_looking: bool = False) -> list[Window]:
    """The ``full_seq`` windows: the start accumulated by repeated float64 addition (as the C++
    loop, which decides the count at the end: 1081 for flying1's 10..65 s)."""
    if duration_s <= 0 or step_s <= 0:
        raise UsageError(f"window duration and step must be positive, got {duration_s} and {step_s}")
    windows = []
    start = float(start_s)
    while start + duration_s <= stop_s:
        stop = start + duration_s
        t_ref = stop if forward_looking else (start + stop) / 2
        windows.append(Window(len(windows), start, stop, t_ref))
        start += step_s
    return windows


class EventSource(Protocol):
    """Where a camera's events come from, one window at a time (nothing needs to be on disk)."""

    def between(self, start: float, stop: float) -> np.ndarray:
        """Rows ``(t, x, y, ...)`` with ``start <= t <= stop``, sorted by time."""


class ArrayEvents:
    """An in-memory, time-sorted ``(N, >=3)`` array of ``t, x, y[, p]`` rows as an :class:`EventSource`."""

    def __init__(self, events: np.ndarray) -> None:
        events = np.asarray(events)
        if events.ndim != 2 or events.shape[1] < 3:
            raise UsageError(f"events must be (N, >=3) rows t, x, y[, p]; got shape {events.shape}")
        if np.any(np.diff(events[:, 0]) < 0):
            raise RecordingError("events are not sorted by time")
        self.events = events

    def between(self, start: float, stop: float) -> np.ndarray:
        t = self.events[:, 0]
        return self.events[np.searchsorted(t, start, "left"): np.searchsorted(t, stop, "right")]


@dataclass(frozen=True, eq=False)
class SweepCamera:
    """One event camera as the sweep needs it: events, the undistortion table ``(H*W, 2)`` of its
    raw pixels, its trajectory ``T_world_cam`` and the pinhole ``(fx, fy, cx, cy)`` of the table."""

    events: EventSource
    table: np.ndarray
    trajectory: Trajectory
    pinhole: tuple[float, float, float, float]
    width: int
    height: int


def mvsec_cameras(calibration: StereoCalibration, left_events: EventSource, right_events: EventSource | None,
                  left_trajectory: Trajectory) -> tuple[SweepCamera, SweepCamera | None]:
    """Left and right cameras of ``calib_type=yaml_mvsec``: both undistorted into ``P0``; the right
    trajectory is the left one times ``T_right_left⁻¹`` (``main.cpp``, hand-eye = identity)."""
    def camera(cam: Camera, events: EventSource, trajectory: Trajectory) -> SweepCamera:
        return SweepCamera(events, undistortion_table(cam), trajectory, cam.pinhole, cam.width, cam.height)

    left = camera(calibration.left, left_events, left_trajectory)
    if right_events is None:
        return left, None
    right_trajectory = left_trajectory.right_multiplied(rigid_inverse(calibration.T_right_left))
    return left, camera(calibration.right, right_events, right_trajectory)


def rigid_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``(..., 4, 4)``: ``(Rᵀ, -Rᵀ t)``."""
    T = np.asarray(T, dtype=np.float64)
    out = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ T[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def packet_starts(times: np.ndarray, trajectory: Trajectory, packet_size: int, missing_pose: str,
                  what: str) -> np.ndarray:
    """First event of every packet (``evaluateDSI``'s loop). ``what`` names the window in errors."""
    n = len(times)
    half = packet_size // 2
    if missing_pose == "raise":
        starts = np.arange(0, max(n - packet_size, 0), packet_size)
        covered = trajectory.covers(times[starts + half])
        if not np.all(covered):
            bad = float(times[starts[np.argmin(covered)] + half])
            first, last = trajectory.span
            raise RecordingError(
                f"{trajectory.source}: {what} needs a pose at t={bad:.6f} s but poses cover {first:.6f} <= t < "
                f"{last:.6f} s; choose windows inside the poses, or pass missing_pose='skip' to drop those "
                "packets as dvs_mcemvs does"
            )
        return starts
    # "skip": a packet without a pose at its middle event moves on by one event (C++). Poses cover
    # one time interval and events are sorted, so this only trims the ends of the window.
    first, last = trajectory.span
    start = max(0, int(np.searchsorted(times, first, "left")) - half)
    starts = np.arange(start, max(n - packet_size, start), packet_size)
    return starts[times[starts + half] < last]


def packet_geometry(mid_times: np.ndarray, trajectory: Trajectory, T_rv_w: np.ndarray,
                    pinhole: tuple[float, float, float, float], grid: DsiGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per packet: the homography ``H`` (P, 3, 3) from event pixels to the reference view through
    plane ``Z0``, and the event camera centre ``C`` (P, 3) in the reference frame."""
    T_ev_rv = rigid_inverse(T_rv_w @ trajectory.at(mid_times))
    R, t = T_ev_rv[:, :3, :3], T_ev_rv[:, :3, 3]
    centres = -(np.swapaxes(R, 1, 2) @ t[..., None])[..., 0]
    fx, fy, cx, cy = pinhole
    K_ev = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    H_inv = grid.depths[0] * R
    H_inv[:, :, 2] += t
    return np.linalg.inv(K_ev @ H_inv @ np.linalg.inv(grid.K)), centres


def plane_coefficients(centres: np.ndarray, grid: DsiGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. 15 as an affine map per (plane, packet): ``x_i = x0·scale + off_x``, ``y_i = y0·scale + off_y``
    with ``scale = a/d``, ``off = b/d``; each (D, P) float64 (``fillVoxelGrid``)."""
    z0 = grid.depths[0]
    z = grid.depths[:, None]
    Cx, Cy, Cz = centres[None, :, 0], centres[None, :, 1], centres[None, :, 2]
    d = z * (z0 - Cz)
    scale = z0 * (z - Cz) / d
    off_x = (z0 - z) * (Cx * grid.fx + Cz * grid.cx) / d
    off_y = (z0 - z) * (Cy * grid.fy + Cz * grid.cy) / d
    return scale, off_x, off_y


class CameraDsi(NamedTuple):
    """One camera's DSI ``(D, H, W)`` float32 and how many packets voted into it."""

    volume: Volume
    packets: int


def camera_dsi(events: Volume, camera: SweepCamera, T_rv_w: np.ndarray, grid: DsiGrid, *,
               packet_size: int = PACKET_SIZE, missing_pose: str = "raise", backend: str = "auto",
               device: Any = None, what: str = "the window") -> CameraDsi:
    """The DSI of one camera's window of events ``(N, >=3)`` rows ``t, x, y`` (numpy or torch).

    ``T_rv_w`` maps world to reference-view coordinates. ``backend``: ``"numba"`` (CPU),
    ``"torch"`` (any device), ``"auto"`` (torch for non-CPU devices, numba otherwise). The result
    is a numpy array for numpy input on the CPU, else a tensor on ``device`` (default: the input's).
    """
    _check_options(packet_size, missing_pose)
    device, backend = _resolve(events, device, backend)
    times, xs, ys = _columns(events, camera)
    starts = packet_starts(times, camera.trajectory, packet_size, missing_pose, what)
    volume = _zeros(grid, device)
    if len(starts):
        H, centres = packet_geometry(times[starts + packet_size // 2], camera.trajectory, T_rv_w, camera.pinhole, grid)
        coefficients = plane_coefficients(centres, grid)
        rows = (starts[:, None] + np.arange(packet_size)).reshape(-1)
        pixels = ys[rows] * camera.width + xs[rows]
        vote = _vote_numba if backend == "numba" else _vote_torch
        vote(camera.table, pixels, H, coefficients, packet_size, grid, volume)
    return CameraDsi(volume, len(starts))


def _check_options(packet_size: int, missing_pose: str) -> None:
    if packet_size < 2:
        raise UsageError(f"packet_size must be at least 2, got {packet_size}")
    if missing_pose not in ("raise", "skip"):
        raise UsageError(f"missing_pose must be 'raise' or 'skip', got {missing_pose!r}")


def _is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _resolve(events: Volume, device: Any, backend: str) -> tuple[Any, str]:
    """(device or None for numpy output, backend actually used)."""
    if backend not in ("auto", "numba", "torch"):
        raise UsageError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    if device is None and _is_tensor(events):
        device = events.device
    if device is not None:
        import torch

        device = torch.device(device)
    on_cpu = device is None or device.type == "cpu"
    if backend == "auto":
        backend = "numba" if on_cpu and _numba_kernel() is not None else "torch"
    if backend == "numba" and not on_cpu:
        raise UsageError(f"backend 'numba' runs on the CPU only; got device {device}")
    if backend == "torch" and device is None:
        import torch

        device = torch.device("cpu")
    return device, backend


def _columns(events: Volume, camera: SweepCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (float64), x and y (int64) as numpy arrays, sorted by time, checked on the sensor."""
    if _is_tensor(events):
        events = events.detach().cpu().numpy()
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] < 3:
        raise UsageError(f"events must be (N, >=3) rows t, x, y[, p]; got shape {events.shape}")
    times = events[:, 0].astype(np.float64)
    if np.any(np.diff(times) < 0):  # dvs_mcemvs sorts each window's events by time
        order = np.argsort(times, kind="stable")
        events, times = events[order], times[order]
    xs, ys = events[:, 1].astype(np.int64), events[:, 2].astype(np.int64)
    if len(xs) and (xs.min() < 0 or ys.min() < 0 or xs.max() >= camera.width or ys.max() >= camera.height):
        raise RecordingError(f"events lie outside the {camera.width}x{camera.height} sensor of the calibration")
    return times, xs, ys


def _zeros(grid: DsiGrid, device: Any) -> Volume:
    shape = (grid.num_planes, grid.height, grid.width)
    if device is None:
        return np.zeros(shape, np.float32)
    import torch

    return torch.zeros(shape, dtype=torch.float32, device=device)


def _warp(table: np.ndarray, pixels: np.ndarray, H: np.ndarray, packet_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted event positions mapped by their packet's ``H`` to plane Z0 of the reference view."""
    uv = table[pixels].astype(np.float64).reshape(len(H), packet_size, 2)
    h = H[:, None, :, :]
    w = h[..., 2, 0] * uv[..., 0] + h[..., 2, 1] * uv[..., 1] + h[..., 2, 2]
    x0 = (h[..., 0, 0] * uv[..., 0] + h[..., 0, 1] * uv[..., 1] + h[..., 0, 2]) / w
    y0 = (h[..., 1, 0] * uv[..., 0] + h[..., 1, 1] * uv[..., 1] + h[..., 1, 2]) / w
    return x0.reshape(-1), y0.reshape(-1)


def _vote_planes(x0: np.ndarray, y0: np.ndarray, packet_size: int, scale: np.ndarray, off_x: np.ndarray,
                 off_y: np.ndarray, width: int, height: int, out: np.ndarray, first: int, last: int) -> None:
    """Planes ``first..last-1`` of ``out`` (D, H*W): Eq. 15 and bilinear voting (compiled by numba).

    The C++ loop order (plane, packet, event): one plane (360 KiB for MVSEC) stays in L2 while the
    events stream past; a thread owns whole planes, so no two threads write the same cell.
    """
    for i in range(first, last):
        plane = out[i]
        for p in range(scale.shape[1]):
            s, ox, oy = scale[i, p], off_x[i, p], off_y[i, p]
            for e in range(p * packet_size, (p + 1) * packet_size):
                xf = x0[e] * s + ox
                yf = y0[e] * s + oy
                # Cartesian3DGrid::accumulateGridValueAt: x >= 0, y >= 0, x+1 < W, y+1 < H (false for NaN).
                if xf >= 0.0 and yf >= 0.0 and xf < width - 1 and yf < height - 1:
                    xi, yi = int(xf), int(yf)
                    fx, fy = xf - xi, yf - yi
                    k = yi * width + xi
                    plane[k] += (1.0 - fx) * (1.0 - fy)
                    plane[k + 1] += fx * (1.0 - fy)
                    plane[k + width] += (1.0 - fx) * fy
                    plane[k + width + 1] += fx * fy


def _numba_kernel() -> Callable | None:
    """:func:`_vote_planes` compiled by numba (``fuse.jit.compiled``), or None without numba."""
    return compiled(_vote_planes)


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _threads() -> int:
    """The CPUs this process may use; one inside a torch DataLoader worker (the workers share them)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.utils.data.get_worker_info() is not None:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool kept between windows, remade in a forked child (its threads do not survive a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="dsi"))
    return _POOL[2]


def _vote_numba(table: np.ndarray, pixels: np.ndarray, H: np.ndarray, coefficients: tuple, packet_size: int,
                grid: DsiGrid, volume: np.ndarray) -> None:
    kernel = _numba_kernel()
    if kernel is None:
        raise UsageError("backend 'numba' needs numba installed; use backend='torch'")
    x0, y0 = _warp(table, pixels, H, packet_size)
    out = (volume.numpy() if _is_tensor(volume) else volume).reshape(grid.num_planes, -1)  # a CPU tensor's memory
    threads = max(1, min(_threads(), grid.num_planes))
    bounds = np.linspace(0, grid.num_planes, threads + 1).astype(int)

    def run(part: tuple[int, int]) -> None:
        kernel(x0, y0, packet_size, *coefficients, grid.width, grid.height, out, part[0], part[1])

    parts = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    if threads == 1:
        run(parts[0])
    else:
        list(_pool(threads).map(run, parts))


# Plane-event pairs per torch chunk: ~20 float64 / int64 temporaries of this size stay < 1 GiB.
_TORCH_CHUNK = 1 << 22


def _vote_torch(table: np.ndarray, pixels: np.ndarray, H: np.ndarray, coefficients: tuple, packet_size: int,
                grid: DsiGrid, volume: "torch.Tensor") -> None:
    """The same votes with torch ops on ``volume.device``: all planes of a chunk of events at once."""
    import torch

    device = volume.device
    f64 = dict(dtype=torch.float64, device=device)
    uv = torch.as_tensor(table, device=device)[torch.as_tensor(pixels, device=device)].double()
    Hs = torch.as_tensor(H, **f64)
    scale, off_x, off_y = (torch.as_tensor(c, **f64) for c in coefficients)
    packet = torch.arange(len(pixels), device=device) // packet_size
    h = Hs[packet]
    w = h[:, 2, 0] * uv[:, 0] + h[:, 2, 1] * uv[:, 1] + h[:, 2, 2]
    x0 = (h[:, 0, 0] * uv[:, 0] + h[:, 0, 1] * uv[:, 1] + h[:, 0, 2]) / w
    y0 = (h[:, 1, 0] * uv[:, 0] + h[:, 1, 1] * uv[:, 1] + h[:, 1, 2]) / w
    flat = volume.view(-1)
    width, plane_size = grid.width, grid.width * grid.height
    planes = torch.arange(grid.num_planes, device=device)[:, None]
    step = max(1, _TORCH_CHUNK // grid.num_planes)
    for a in range(0, len(pixels), step):
        p = packet[a: a + step]
        xf = x0[None, a: a + step] * scale[:, p] + off_x[:, p]
        yf = y0[None, a: a + step] * scale[:, p] + off_y[:, p]
        valid = (xf >= 0) & (yf >= 0) & (xf < grid.width - 1) & (yf < grid.height - 1)
        xf, yf = xf[valid], yf[valid]
        xi, yi = xf.long(), yf.long()
        fx, fy = xf - xi, yf - yi
        k = planes.expand_as(valid)[valid] * plane_size + yi * width + xi
        index = torch.cat([k, k + 1, k + width, k + width + 1])
        weight = torch.cat([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]).float()
        flat.index_add_(0, index, weight)


def fuse_stereo(left: Volume, right: Volume, eps: float = STEREO_EPS) -> Volume:
    """Voxel-wise harmonic mean ``2ab / (a + b + eps)`` in float32 (``Grid3D::harmonicMeanTwoGrids``,
    ``stereo_fusion = 2``, eps ``1e-1``); symmetric in ``a`` and ``b`` bit for bit."""
    if _is_tensor(left):
        return 2 * (left * right) / ((left + right) + eps)
    return (np.float32(2) * (left * right) / ((left + right) + np.float32(eps))).astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class DsiFrame:
    """One window's DSI: ``dsi`` is what DERD-Net reads (fused for stereo, the left camera's for
    mono), ``cameras`` the per-camera volumes (``dsi_0``, ``dsi_1``), ``packets`` their packet counts."""

    window: Window
    dsi: Volume
    cameras: tuple
    packets: tuple[int, ...]

    @property
    def short(self) -> bool:
        """Whether a camera had no complete packet (its volume is all zeros)."""
        return min(self.packets) == 0


def stream_dsis(windows: Iterable[Window], t0: float, left: SweepCamera, grid: DsiGrid,
                right: SweepCamera | None = None, *, packet_size: int = PACKET_SIZE, missing_pose: str = "raise",
                short_window: str = "zeros", backend: str = "auto", device: Any = None) -> Iterator[DsiFrame]:
    """DSIs of ``windows`` one at a time (stereo when ``right`` is given, else monocular).

    ``t0`` is the time origin of the windows: for MVSEC the first left event's timestamp (spec
    §2.2). The reference view is the left camera at ``t0 + t_ref``. Options: module docstring.
    """
    if short_window not in ("zeros", "skip"):
        raise UsageError(f"short_window must be 'zeros' or 'skip', got {short_window!r}")
    cameras: Sequence[SweepCamera] = (left,) if right is None else (left, right)
    for window in windows:
        what = f"window {window.index} ({window.start:.6f}..{window.stop:.6f} s after t0)"
        T_rv_w = rigid_inverse(_reference_pose(left.trajectory, t0 + window.t_ref, what))
        built = [camera_dsi(cam.events.between(t0 + window.start, t0 + window.stop), cam, T_rv_w, grid,
                            packet_size=packet_size, missing_pose=missing_pose, backend=backend, device=device,
                            what=what) for cam in cameras]
        packets = tuple(b.packets for b in built)
        if short_window == "skip" and min(packets) == 0:
            continue
        volumes = tuple(b.volume for b in built)
        dsi = volumes[0] if right is None else fuse_stereo(*volumes)
        yield DsiFrame(window, dsi, volumes, packets)


def _reference_pose(trajectory: Trajectory, t: float, what: str) -> np.ndarray:
    if not trajectory.covers(t):
        first, last = trajectory.span
        raise RecordingError(f"{trajectory.source}: {what} has its reference time t={t:.6f} s outside the poses "
                             f"({first:.6f} <= t < {last:.6f} s); choose windows inside the poses")
    return trajectory.at(t)
