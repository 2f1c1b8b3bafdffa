"""DERD-Net speed on the CPU: the DSI builder, the network, and whole DSI-to-depth frames.

    python benchmarks/bench_derdnet.py [--rate 3e5] [--rounds 5] [--write]

Three tables, each timed in one process with its candidates interleaved round by round
(``common.interleaved``); rates come from the median round.

1. DSI builder (``bench_derdnet_dsi.measure``): one camera's window, our numba kernel against a
   straightforward torch ``index_put_`` sweep, Mev/s.
2. Network: Sub-DSIs per second of ``DerdNet`` forward passes (fp32, ``inference_mode``, torch
   threads = the CPUs of this process), single-pixel and multi-pixel, D = 100 planes, 7 x 7
   blocks, batches of 64 / 1024 / 8192, and the even/odd ensemble (two networks averaged, as every
   published number is). GFLOP/s from ``torch.utils.flop_counter`` (a multiply-add counts 2).
3. Frame: one 1 s stereo window at MVSEC's 346 x 260 with the indoor_flying calibration, from
   events to sparse depth, as ``derdnet-prepare`` + ``derdnet-infer`` compute it but without the
   files: both cameras' DSIs (numba kernel), stereo fusion, confidence map and F_denser selection
   (M_seq of indoor_flying1), the Sub-DSI gather (flip + per-block normalization) and the
   even/odd ensemble (batch 4096, ``derdnet-infer``'s default) with the depth conversion. Each
   step is timed on its own (inputs from the step before, prepared once) next to the whole frame,
   all interleaved.

Events of the frame: ``--rate`` per camera and second (default 3e5: MVSEC's per-sequence event
counts are not in this project's sources; ``docs/derdnet.md`` plans with "a few 100 k events per
second", and ``fuse.demo.room``, which copies indoor_flying's slow hovering flight and
calibration, makes 4.3e5 with walls textured everywhere, so a little less is assumed). 80% of
them come from ``--edges`` random straight 3D edges (0.1-0.5 m long, 1-6.5 m in front of the left
camera), seen by both cameras along a smooth 0.45 m / 6 deg trajectory (fisheye projection of
the indoor_flying lenses, 0.3 px jitter), 20% are uniform noise. The DSI then has ray-density
ridges, and 9000 edges make F_denser select about as many pixels as MVSEC windows give (~690 per
window from the poster's counts, ``docs/derdnet.md``): the gather and the network scale with that
count, the sweep with the events. Random weights: the speed does not depend on them.
"""
from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import torch

from bench_derdnet_dsi import CAM0, measure as measure_dsi_builder
from common import count_flops, interleaved, load_average, machine_lines, table, write_section

from fuse.demo.room import INDOOR_LEFT, INDOOR_RIGHT, T_RIGHT_LEFT
from fuse.methods.derdnet.calibration import Camera, StereoCalibration
from fuse.methods.derdnet.dsi import ArrayEvents, DsiGrid, camera_dsi, fuse_stereo, mvsec_cameras, rigid_inverse
from fuse.methods.derdnet.model import DEPTH_RANGES, DerdNet, DerdNetConfig, DerdNetEnsemble
from fuse.methods.derdnet.poses import Trajectory
from fuse.methods.derdnet.selection import MAX_CONFIDENCE, PRESETS, select_pixels, sub_dsis

PLANES = 100
BATCHES = (64, 1024, 8192)
INFER_BATCH = 4096  # derdnet-infer's --batch-size default
EDGE_LENGTH = (0.1, 0.5)  # metres: the scene's straight edges
SIGNAL = 0.8  # share of the frame's events that come from scene edges (the rest: uniform noise)


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def networks(multi_pixel: bool, seed: int = 0) -> tuple[DerdNet, DerdNetEnsemble]:
    """One network and an even/odd ensemble of two (random weights), in eval mode."""
    torch.manual_seed(seed)
    config = DerdNetConfig(multi_pixel=multi_pixel)
    single = DerdNet(config).eval()
    return single, DerdNetEnsemble([DerdNet(config), DerdNet(config)]).eval()


def network_table(rounds: int, threads: int) -> tuple[str, dict[str, float]]:
    """Table 2 and the Sub-DSIs/s per row name (``variant | model | threads | batch``) for the text.

    The single-pixel network also runs with one thread (set and restored around each call), to show
    what the second thread brings to such small operations.
    """
    g = torch.Generator().manual_seed(0)
    inputs = {batch: torch.rand(batch, PLANES, 7, 7, generator=g) for batch in BATCHES}
    candidates, meta = {}, {}
    for multi_pixel in (False, True):
        single, ensemble = networks(multi_pixel)
        variant = "multi-pixel" if multi_pixel else "single-pixel"
        runs = [(single, "one network", threads), (ensemble, "even/odd ensemble (2)", threads)]
        if not multi_pixel and threads > 1:
            runs.append((single, "one network", 1))
        for model, what, count in runs:
            for batch in BATCHES:
                x = inputs[batch]

                def run(model=model, x=x, count=count) -> None:
                    torch.set_num_threads(count)
                    try:
                        with torch.inference_mode():
                            model(x)
                    finally:
                        torch.set_num_threads(threads)

                name = f"{variant} | {what} | {count} | {batch}"
                candidates[name] = run
                meta[name] = (variant, what, count, batch, count_flops(run))
    timings = interleaved(candidates, rounds=rounds)
    rows, rates = [], {}
    for name, t in timings.items():
        variant, what, count, batch, flops = meta[name]
        rates[name] = batch / t.median
        rows.append([variant, what, count, batch, 1e3 * t.median, batch / t.best, batch / t.median,
                     1e6 * t.median / batch, flops / batch / 1e6, flops / t.median / 1e9])
    text = table(["variant", "model", "threads", "batch", "ms per batch (median)", "Sub-DSIs/s (best)",
                  "Sub-DSIs/s (median)", "µs per Sub-DSI", "MFLOP per Sub-DSI", "GFLOP/s"], rows)
    return text, rates


# ---------------------------------------------------------------- one stereo frame

def stereo_calibration() -> StereoCalibration:
    """MVSEC indoor_flying's two DAVIS, both undistorted into cam0's P0 (as read_mvsec_camchain)."""
    right = Camera(346, 260, INDOOR_RIGHT.K, np.array(INDOOR_RIGHT.distortion), CAM0.P)
    return StereoCalibration(CAM0, right, T_RIGHT_LEFT, "benchmark (MVSEC indoor_flying camchain)")


def trajectory() -> Trajectory:
    """Left camera ``T_world_cam`` at 100 Hz: 0.45 m and about 6 degrees over the second."""
    import cv2

    times = np.linspace(-0.01, 1.01, 103)
    poses = np.tile(np.eye(4), (len(times), 1, 1))
    for T, t in zip(poses, times):
        T[:3, :3] = cv2.Rodrigues(np.array([0.05 * t, -0.08 * t, 0.02 * t]))[0]
        T[:3, 3] = [0.4 * t, 0.1 * t, 0.15 * t]
    return Trajectory.from_poses(times, poses, "benchmark trajectory")


def stereo_events(rate: float, edges: int, left_pose: Trajectory, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``rate`` events per camera in [0, 1] s, rows ``t, x, y, p`` (module docstring)."""
    rng = np.random.default_rng(seed)
    fx, fy, cx, cy = CAM0.pinhole
    u, v = rng.uniform(0, CAM0.width, edges), rng.uniform(0, CAM0.height, edges)
    z = 1.0 / rng.uniform(1 / 6.5, 1.0, edges)  # uniform in inverse depth, as the planes
    start = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=1)
    direction = rng.normal(size=(edges, 3))
    direction *= rng.uniform(*EDGE_LENGTH, (edges, 1)) / np.linalg.norm(direction, axis=1, keepdims=True)
    T_world_left = left_pose.at(0.5)  # the edges as the left camera sees them mid-window

    def world(m: int) -> np.ndarray:
        k = rng.integers(0, edges, m)
        X = start[k] + rng.uniform(0, 1, (m, 1)) * direction[k]
        return X @ T_world_left[:3, :3].T + T_world_left[:3, 3]

    n = int(rate)
    out = []
    for lens, T_cam_left in ((INDOOR_LEFT, np.eye(4)), (INDOOR_RIGHT, T_RIGHT_LEFT)):
        want = int(SIGNAL * n)
        signal = np.empty((0, 4))
        while len(signal) < want:  # edges that leave the view are redrawn
            m = 2 * (want - len(signal))
            t = rng.uniform(0, 1, m)
            T_cam_world = T_cam_left @ rigid_inverse(left_pose.at(t))
            X = np.einsum("nij,nj->ni", T_cam_world[:, :3, :3], world(m)) + T_cam_world[:, :3, 3]
            front = X[:, 2] > 0.1
            x, y = lens.pixels(X[front, 0] / X[front, 2], X[front, 1] / X[front, 2])
            x, y = np.rint(x + rng.normal(0, 0.3, len(x))), np.rint(y + rng.normal(0, 0.3, len(y)))
            inside = (x >= 0) & (x < CAM0.width) & (y >= 0) & (y < CAM0.height)
            rows = np.stack([t[front][inside], x[inside], y[inside], rng.choice([-1.0, 1.0], int(inside.sum()))], 1)
            signal = np.concatenate([signal, rows])
        noise = np.stack([rng.uniform(0, 1, n - want), rng.integers(0, CAM0.width, n - want),
                          rng.integers(0, CAM0.height, n - want), rng.choice([-1.0, 1.0], n - want)], axis=1)
        events = np.concatenate([signal[:want], noise])
        out.append(events[np.argsort(events[:, 0], kind="stable")])
    return out[0], out[1]


class Frame:
    """One window from events to sparse depth, step by step (``derdnet-prepare`` + ``derdnet-infer``)."""

    def __init__(self, rate: float, edges: int, multi_pixel: bool = False) -> None:
        self.trajectory = trajectory()
        self.left_events, self.right_events = stereo_events(rate, edges, self.trajectory)
        self.left, self.right = mvsec_cameras(stereo_calibration(), ArrayEvents(self.left_events),
                                              ArrayEvents(self.right_events), self.trajectory)
        self.depth_range = DEPTH_RANGES["mvsec"]
        self.grid = DsiGrid.for_camera(CAM0, self.depth_range.z_min, self.depth_range.z_max, PLANES)
        self.T_rv_w = rigid_inverse(self.trajectory.at(0.5))
        self.preset, self.max_confidence = PRESETS[("mvsec", "denser")], MAX_CONFIDENCE["indoor_flying1"]
        self.ensemble = networks(multi_pixel)[1]

    def dsi(self, camera, events) -> np.ndarray:
        return camera_dsi(events, camera, self.T_rv_w, self.grid, backend="numba").volume

    def select(self, dsi: np.ndarray):
        return select_pixels(dsi, self.max_confidence, self.preset)

    def predict(self, blocks: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            x = torch.from_numpy(blocks)
            raw = torch.cat([self.ensemble(x[i: i + INFER_BATCH]) for i in range(0, len(x), INFER_BATCH)])
            return self.depth_range.to_metres(raw)

    def run(self) -> torch.Tensor:
        left = self.dsi(self.left, self.left.events.between(0.0, 1.0))
        right = self.dsi(self.right, self.right.events.between(0.0, 1.0))
        fused = fuse_stereo(left, right)
        selection = self.select(fused)
        return self.predict(sub_dsis(fused, selection.rows, selection.cols))


def frame_table(rate: float, edges: int, rounds: int) -> tuple[str, str]:
    """Table 3 and a line describing the frame."""
    frame, multi = Frame(rate, edges), Frame(rate, edges, multi_pixel=True)
    left = frame.dsi(frame.left, frame.left_events)
    right = frame.dsi(frame.right, frame.right_events)
    fused = fuse_stereo(left, right)
    selection = frame.select(fused)
    blocks = sub_dsis(fused, selection.rows, selection.cols)
    steps = {
        "DSI, left camera (numba)": lambda: frame.dsi(frame.left, frame.left_events),
        "DSI, right camera (numba)": lambda: frame.dsi(frame.right, frame.right_events),
        "stereo fusion (harmonic mean)": lambda: fuse_stereo(left, right),
        "confidence map + F_denser selection": lambda: frame.select(fused),
        "Sub-DSI gather (flip, normalize)": lambda: sub_dsis(fused, selection.rows, selection.cols),
        "even/odd ensemble, single-pixel (+ metres)": lambda: frame.predict(blocks),
    }
    extra = {"even/odd ensemble, multi-pixel (+ metres)": lambda: multi.predict(blocks)}
    wholes = {"whole frame, single-pixel ensemble": frame.run, "whole frame, multi-pixel ensemble": multi.run}
    timings = interleaved({**steps, **extra, **wholes}, rounds=rounds)
    total = sum(timings[name].median for name in steps)
    rows = [[name, 1e3 * timings[name].median, f"{100 * timings[name].median / total:.1f}%"] for name in steps]
    rows.append(["sum of the steps (single-pixel)", 1e3 * total, "100%"])
    multi_total = total - timings["even/odd ensemble, single-pixel (+ metres)"].median + \
        timings["even/odd ensemble, multi-pixel (+ metres)"].median
    rows.append(["even/odd ensemble, multi-pixel (+ metres), instead",
                 1e3 * timings["even/odd ensemble, multi-pixel (+ metres)"].median,
                 f"{100 * timings['even/odd ensemble, multi-pixel (+ metres)'].median / multi_total:.1f}% of "
                 "the multi-pixel sum"])
    for name in wholes:
        t = timings[name]
        rows.append([f"**{name}**", 1e3 * t.median, f"{1 / t.median:.2f} frames/s (best {1 / t.best:.2f})"])
    per_point = [1e6 * timings[name].median / len(blocks) for name in
                 ("even/odd ensemble, single-pixel (+ metres)", "even/odd ensemble, multi-pixel (+ metres)")]
    density = float(np.mean([left.max(), right.max()]))
    line = (f"- frame: {len(frame.left_events)} + {len(frame.right_events)} events (left + right, "
            f"{rate:.0e} per camera in 1 s, {100 * SIGNAL:.0f}% from {edges} scene edges), "
            f"{PLANES} planes 1-6.5 m, 346x260; F_denser selects {len(blocks)} pixels (M_seq "
            f"{frame.max_confidence}; largest per-camera ray density {density:.0f}); ensemble "
            f"{per_point[0]:.0f} / {per_point[1]:.0f} µs per point (single / multi-pixel); {rounds} rounds")
    return table(["step", "ms (median)", "share / rate"], rows), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=3e5, help="events per camera and second in the frame")
    parser.add_argument("--edges", type=int, default=9000, help="scene edges the frame's events come from")
    parser.add_argument("--dsi-events", type=int, default=1 << 18, help="events of the DSI builder table")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=cpus(), help="torch threads (default: this process's CPUs)")
    parser.add_argument("--write", action="store_true", help="update the DERD-Net section of BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    head = machine_lines("torch", "numba") + [
        f"- torch threads {torch.get_num_threads()} (torch.set_num_threads), numba DSI kernel on {cpus()} CPUs, fp32",
    ]
    print("\n".join(head), flush=True)
    builder = measure_dsi_builder(args.dsi_events, args.rounds)
    print(builder, flush=True)
    network, rates = network_table(args.rounds, torch.get_num_threads())
    print(network, flush=True)
    frame, frame_line = frame_table(args.rate, args.edges, args.rounds)
    print(frame_line, frame, sep="\n", flush=True)
    n = torch.get_num_threads()
    ratio = statistics.median(rates[f"multi-pixel | one network | {n} | {b}"]
                              / rates[f"single-pixel | one network | {n} | {b}"] for b in BATCHES)
    gains = [rates[f"single-pixel | one network | {n} | {b}"] / rates[f"single-pixel | one network | 1 | {b}"]
             for b in BATCHES] if n > 1 else []
    summary = (f"The multi-pixel network runs at {ratio:.2f}x the single-pixel one's rate (median over the batches) "
               "and predicts 9 pixels per Sub-DSI.")
    if gains:
        summary += (f" {n} threads against one (single-pixel network): {' / '.join(f'{g:.3g}x' for g in gains)} "
                    f"at batches {' / '.join(map(str, BATCHES))}.")
    print(summary, flush=True)
    end = f"- load average (1/5/15 min) at the end: {load_average()}"
    print(end, flush=True)
    body = "\n".join(head + [
        end,
        "",
        "DSI builder (one camera, rates in million events per second):",
        "",
        builder,
        "",
        f"Network, fp32, D = {PLANES}, 7 x 7 Sub-DSIs, random weights (an ensemble's rate counts Sub-DSIs, each "
        "through both networks):",
        "",
        network,
        "",
        summary,
        "",
        "One 1 s stereo window, events to sparse depth (each step timed alone, interleaved with the whole frame; "
        "share of the sum of the single-pixel steps):",
        "",
        frame_line,
        "",
        frame,
    ])
    if args.write:
        write_section("derdnet", "DERD-Net (CPU): DSI builder, network, whole frames", body,
                      "python benchmarks/bench_derdnet.py --write")


if __name__ == "__main__":
    main()
