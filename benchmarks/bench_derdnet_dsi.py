"""DERD-Net DSI builder speed: ours against a straightforward vectorized torch sweep.

    python benchmarks/bench_derdnet_dsi.py [--events 262144] [--rounds 5]

One camera, one window on the 346x260 MVSEC sensor with the spec's cam0 calibration (fisheye
lookup table into P0), 100 inverse-depth planes from 1 to 6.5 m, a smooth synthetic trajectory
and uniformly random events. Every implementation builds the whole DSI from the events:
packets, poses, homographies, Eq. 15 and bilinear votes. Rates are events per second.

Baseline: the same geometry, then every plane at once with ``index_put_(accumulate=True)`` on
the flat float32 volume (events in chunks of 2^16 to bound memory at ~1 GB). Ours: the numba
kernel (planes shared among this process's CPUs), and for reference the torch-op path that CUDA
tensors take, here on the CPU. Timed in one process, interleaved round by round.

This script prints its table; ``benchmarks/bench_derdnet.py --write`` puts it into the DERD-Net
section of BENCHMARKS.md together with the network and whole-frame tables.
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import torch

from common import interleaved, machine_lines, table

from fuse.demo.room import INDOOR_LEFT, INDOOR_RECT
from fuse.methods.derdnet.calibration import Camera, undistortion_table
from fuse.methods.derdnet.dsi import (
    ArrayEvents,
    DsiGrid,
    SweepCamera,
    camera_dsi,
    packet_geometry,
    packet_starts,
    plane_coefficients,
    rigid_inverse,
)
from fuse.methods.derdnet.poses import Trajectory

# MVSEC indoor_flying's left DAVIS (spec §2.3), as the synthetic room renders it.
CAM0 = Camera(INDOOR_LEFT.width, INDOOR_LEFT.height, INDOOR_LEFT.K, np.array(INDOOR_LEFT.distortion),
              np.hstack([INDOOR_RECT.K, np.zeros((3, 1))]))


def scene(n: int, seed: int = 0) -> tuple[np.ndarray, SweepCamera, DsiGrid, np.ndarray]:
    rng = np.random.default_rng(seed)
    events = np.stack([np.sort(rng.uniform(0, 1, n)), rng.integers(0, CAM0.width, n),
                       rng.integers(0, CAM0.height, n), rng.choice([-1.0, 1.0], n)], axis=1)
    times = np.linspace(-0.01, 1.01, 103)
    poses = np.tile(np.eye(4), (len(times), 1, 1))
    for T, t in zip(poses, times):
        T[:3, :3] = cv2.Rodrigues(np.array([0.05 * t, -0.03 * t, 0.02 * t]))[0]
        T[:3, 3] = [0.4 * t, 0.1 * t, 0.2 * t]
    trajectory = Trajectory.from_poses(times, poses)
    camera = SweepCamera(ArrayEvents(events), undistortion_table(CAM0), trajectory, CAM0.pinhole,
                         CAM0.width, CAM0.height)
    return events, camera, DsiGrid.for_camera(CAM0), rigid_inverse(trajectory.at(0.5))


def baseline(events: np.ndarray, camera: SweepCamera, T_rv_w: np.ndarray, grid: DsiGrid,
             chunk: int = 1 << 16) -> torch.Tensor:
    """Straightforward torch: warp every event, then all planes at once with index_put_(accumulate=True)."""
    times = events[:, 0]
    starts = packet_starts(times, camera.trajectory, 1024, "raise", "benchmark window")
    H, centres = packet_geometry(times[starts + 512], camera.trajectory, T_rv_w, camera.pinhole, grid)
    scale, off_x, off_y = (torch.from_numpy(c) for c in plane_coefficients(centres, grid))
    rows = torch.from_numpy((starts[:, None] + np.arange(1024)).reshape(-1))
    ev = torch.from_numpy(events)[rows]
    pixels = ev[:, 2].long() * grid.width + ev[:, 1].long()
    uv = torch.from_numpy(camera.table)[pixels].double()
    packet = torch.arange(len(rows)) // 1024
    p = torch.from_numpy(H)[packet] @ torch.cat([uv, torch.ones(len(uv), 1, dtype=torch.float64)], 1)[..., None]
    x0, y0 = p[:, 0, 0] / p[:, 2, 0], p[:, 1, 0] / p[:, 2, 0]
    volume = torch.zeros(grid.num_planes * grid.height * grid.width)
    planes = torch.arange(grid.num_planes)[:, None] * (grid.height * grid.width)
    for a in range(0, len(x0), chunk):
        k = packet[a: a + chunk]
        x = x0[None, a: a + chunk] * scale[:, k] + off_x[:, k]
        y = y0[None, a: a + chunk] * scale[:, k] + off_y[:, k]
        valid = (x >= 0) & (y >= 0) & (x < grid.width - 1) & (y < grid.height - 1)
        xi, yi = x.floor(), y.floor()
        fx, fy = x - xi, y - yi
        base = (planes + yi.long() * grid.width + xi.long())[valid]
        fx, fy = fx[valid], fy[valid]
        for offset, weight in ((0, (1 - fx) * (1 - fy)), (1, fx * (1 - fy)), (grid.width, (1 - fx) * fy),
                               (grid.width + 1, fx * fy)):
            volume.index_put_((base + offset,), weight.float(), accumulate=True)
    return volume.view(grid.num_planes, grid.height, grid.width)


def measure(num_events: int, rounds: int) -> str:
    """The builder table (with its setup lines) for ``num_events`` events; used alone and by bench_derdnet.py."""
    events, camera, grid, T_rv_w = scene(num_events)
    ours = camera_dsi(events, camera, T_rv_w, grid, backend="numba").volume
    ours_torch = camera_dsi(events, camera, T_rv_w, grid, backend="torch").volume.numpy()
    base = baseline(events, camera, T_rv_w, grid).numpy()
    agreement = max(np.abs(ours - base).max(), np.abs(ours_torch - base).max())

    candidates = {
        "baseline: torch index_put_(accumulate=True), all planes": lambda: baseline(events, camera, T_rv_w, grid),
        "ours: numba kernel": lambda: camera_dsi(events, camera, T_rv_w, grid, backend="numba"),
        "ours: torch-op path (what CUDA runs), on CPU": lambda: camera_dsi(events, camera, T_rv_w, grid,
                                                                          backend="torch"),
    }
    timings = interleaved(candidates, rounds=rounds)
    reference = timings["baseline: torch index_put_(accumulate=True), all planes"]
    rows = [[name, num_events / t.best / 1e6, num_events / t.median / 1e6, reference.median / t.median]
            for name, t in timings.items()]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "\n".join([
        f"- one camera, {num_events} uniformly random events, {grid.num_planes} planes, {grid.width}x{grid.height}; "
        f"{cpus} CPUs for the numba kernel, torch threads {torch.get_num_threads()}; {rounds} rounds",
        f"- largest difference between the implementations' volumes: {agreement:.2e} votes",
        "",
        table(["implementation", "Mev/s (best)", "Mev/s (median)", "speed-up vs baseline (median)"], rows),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1 << 18)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("\n".join(machine_lines("torch", "numba")))
    print(measure(args.events, args.rounds))


if __name__ == "__main__":
    main()
