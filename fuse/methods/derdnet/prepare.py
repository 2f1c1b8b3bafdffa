"""``python -m fuse derdnet-prepare``: an MVSEC-format recording -> DERD-Net's point samples.

Per sliding window (spec §2): the DSI is built in memory (stereo: both cameras fused; mono: the
left camera), the ground truth is paired and undistorted (§6), pixels are selected (§3) and only
what training, inference and the panels need is written, never the 36 MB volume:

* ``sub_dsi/<window>.npy``: the Sub-DSIs ``(N, D, 7, 7)`` of the N selected pixels, near -> far,
  each divided by its own maximum (§4), as ``sub_dsi_dtype`` (default float16: the values lie in
  [0, 1], where float16 keeps 11 significant bits; half the disk of float32);
* ``windows/<window>.npz`` (compressed): ``rows``, ``cols`` (row-major, as ``np.nonzero``), ``gt`` ``(N, 9)``
  metres of the 3 x 3 pixels around each centre (``model.OFFSETS`` order, NaN = no GT),
  ``confidence`` ``(N,)`` and, for panels and the baseline, the ``(H, W)`` maps
  ``confidence_map`` (max ray density), ``argmax_depth`` (§5.3, metres), ``gt_map`` and
  ``event_frame`` (left events within ``event_frame_s`` of the reference time, undistorted into
  the DSI's camera, counts), plus ``t_ref`` (s after t0) and ``gt_offset_s``.

Every selected pixel is kept, with or without GT: training keeps centres with GT (§3), inference
predicts them all (the #Points of §3 counts them all). Windows are named by their index
(``000000``, ...), whose parity is the even/odd split of §7. ``provenance.json`` records the
recording and every option; a rerun with the same ones builds only the windows still missing
(``windows/<w>.npz`` is written last), other ones are refused unless ``--overwrite``.

Named options (default, source): window times from the authors' configs for indoor_flying1-3
(§2.1), else the span of the poses; ``gt_pairing`` nearest GT timestamp to the reference time
within ``max_gt_offset_s`` = 0.05 s (§10: assumed); ``max_confidence`` M_seq per sequence (§3);
DSEC: 0.2 s windows every 0.1 s, forward-looking, no GT undistortion (§2.7, §6; its exact DSI
config is unknown).
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from fuse.atomic import atomic_write, check_writable, remove_stale_temps, save_npy_atomic
from fuse.cli import Command, register_command
from fuse.cli.ranges import positive_float, positive_int
from fuse.errors import RecordingError, UsageError
from fuse.evaluate.prediction import resolve_device
from fuse.events.mvsec import MvsecEvents, recording_paths
from fuse.methods.derdnet.calibration import StereoCalibration, read_mvsec_camchain
from fuse.methods.derdnet.dsi import DsiFrame, DsiGrid, SweepCamera, Window, mvsec_cameras, sliding_windows, stream_dsis
from fuse.methods.derdnet.model import OFFSETS, DepthRange, argmax_depth, depth_range
from fuse.methods.derdnet.poses import Trajectory, read_mvsec_poses
from fuse.methods.derdnet.recording import RawDepth, find_calibration
from fuse.methods.derdnet.selection import (
    MAX_CONFIDENCE,
    PRESETS,
    RADIUS,
    confidence_map,
    select_pixels,
    sub_dsis,
    undistort_depth,
)
from fuse.provenance import OutputFolder, file_identity

FORMAT = "derdnet-prepared/1"
PATTERNS = ("windows/*.npz", "sub_dsi/*.npy")
SUB_DSI_DTYPES = ("float16", "float32")
# The authors' Algorithm-1 configs (spec §2.1): start / stop in seconds after the first left event.
SEQUENCE_TIMES = {"indoor_flying1": (10.0, 65.0), "indoor_flying2": (10.0, 79.0), "indoor_flying3": (10.0, 89.0)}
POSE_MARGIN_S = 1e-3  # default stop: this far inside the last pose (poses cover t < t_last only)


@dataclass(frozen=True)
class DatasetSettings:
    """Window timing and GT handling per dataset (spec §2.1, §2.7, §6)."""

    duration_s: float
    step_s: float
    forward_looking: bool
    undistort_gt: bool


DATASET_SETTINGS = {"mvsec": DatasetSettings(1.0, 0.05, False, True), "dsec": DatasetSettings(0.2, 0.1, True, False)}


@dataclass(frozen=True)
class PrepareOptions:
    """What ``derdnet-prepare`` does; None means the dataset's or sequence's default (module docstring)."""

    recording: str
    out: str
    calibration: str | None = None
    dataset: str = "mvsec"
    stereo: bool = True
    filter: str = "denser"
    max_confidence: float | None = None
    planes: int = 100
    start_s: float | None = None
    stop_s: float | None = None
    duration_s: float | None = None
    step_s: float | None = None
    forward_looking: bool | None = None
    max_gt_offset_s: float = 0.05
    event_frame_s: float = 0.05
    sub_dsi_dtype: str = "float16"
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True


@dataclass
class Source:
    """The opened recording: events of both cameras, depth maps, poses, calibration, time origin."""

    name: str
    left: MvsecEvents
    right: MvsecEvents | None
    depth: RawDepth
    trajectory: Trajectory
    calibration: StereoCalibration
    calibration_path: Path
    t0: float


def _open_source(options: PrepareOptions, stack: ExitStack) -> Source:
    """Open and check everything the windows need, before any output exists."""
    data_path, gt_path = recording_paths(options.recording)
    left = stack.enter_context(MvsecEvents(data_path, "left"))
    right = stack.enter_context(MvsecEvents(data_path, "right")) if options.stereo else None
    depth = RawDepth(stack.enter_context(_open_h5(gt_path)))
    calibration_path = find_calibration(data_path, options.calibration)
    calibration = read_mvsec_camchain(calibration_path)
    try:
        trajectory = read_mvsec_poses(gt_path)
    except RecordingError as error:
        raise RecordingError(f"{error} (DERD-Net back-projects the events with the left camera's poses, "
                             "spec §1)") from None
    sensor = (calibration.left.height, calibration.left.width)
    if depth.shape != sensor:
        raise RecordingError(f"{gt_path}: depth maps are {depth.shape[1]}x{depth.shape[0]} but the calibration "
                             f"{calibration.path} describes a {sensor[1]}x{sensor[0]} sensor")
    name = data_path.name.removesuffix("_data.hdf5")
    return Source(name, left, right, depth, trajectory, calibration, calibration_path, left.first_time)


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise RecordingError(f"{path}: MVSEC recording file not found (give --recording DIR/NAME for "
                             "NAME_data.hdf5 + NAME_gt.hdf5)")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise RecordingError(f"{path}: cannot open as hdf5 (truncated or corrupt file?): {error}") from None


def max_confidence(options: PrepareOptions, sequence: str) -> float:
    """M_seq of spec §3: given, else the authors' value for the sequence (or for DSEC)."""
    if options.max_confidence is not None:
        return options.max_confidence
    known = MAX_CONFIDENCE.get(sequence, MAX_CONFIDENCE["dsec"] if options.dataset == "dsec" else None)
    if known is None:
        raise UsageError(f"no M_seq is known for sequence {sequence!r} (the authors' are {MAX_CONFIDENCE}); pass "
                         "--max-confidence, the ray count that maps to 255 before the adaptive threshold (spec §3)")
    return known


def window_timing(options: PrepareOptions, source: Source) -> dict[str, Any]:
    """Start, stop (s after t0), duration, step and reference time of the windows (module docstring)."""
    dataset = DATASET_SETTINGS[options.dataset]
    first, last = (t - source.t0 for t in source.trajectory.span)
    start, stop = SEQUENCE_TIMES.get(source.name, (max(first, 0.0), last - POSE_MARGIN_S))
    given = {"start_s": options.start_s, "stop_s": options.stop_s, "duration_s": options.duration_s,
             "step_s": options.step_s, "forward_looking": options.forward_looking}
    defaults = {"start_s": start, "stop_s": stop, "duration_s": dataset.duration_s, "step_s": dataset.step_s,
                "forward_looking": dataset.forward_looking}
    return {key: default if given[key] is None else given[key] for key, default in defaults.items()}


def _windows(timing: dict[str, Any], source: Source) -> list[Window]:
    """The sliding windows, checked to lie inside the poses."""
    windows = sliding_windows(timing["start_s"], timing["stop_s"], timing["duration_s"], timing["step_s"],
                              timing["forward_looking"])
    if not windows:
        raise UsageError(f"no {timing['duration_s']:g} s window fits between {timing['start_s']:g} and "
                         f"{timing['stop_s']:g} s after the first event; choose --start / --stop further apart")
    ends = source.t0 + np.array([windows[0].start, windows[-1].stop])
    if not source.trajectory.covers(ends).all():
        first, last = (t - source.t0 for t in source.trajectory.span)
        raise RecordingError(f"{source.trajectory.source}: the poses cover {first:.3f} <= t < {last:.3f} s after the "
                             f"first event, but the windows span {windows[0].start:.3f} .. {windows[-1].stop:.3f} s; "
                             "pass --start / --stop inside the poses")
    return windows


def _identity(options: PrepareOptions, source: Source, timing: dict[str, Any], count: int) -> dict:
    """Everything the prepared files depend on (``provenance.json``)."""
    data_path, gt_path = recording_paths(options.recording)
    preset = PRESETS[(options.dataset, options.filter)]
    return {
        "format": FORMAT, "sequence": source.name, "dataset": options.dataset, "stereo": options.stereo,
        "filter": options.filter, "preset": asdict(preset), "max_confidence": max_confidence(options, source.name),
        "planes": options.planes, "depth_range": asdict(depth_range(options.dataset)), "radius": RADIUS,
        "t0": source.t0, "windows": {"count": count, **timing},
        "gt": {"pairing": "nearest", "max_offset_s": options.max_gt_offset_s,
               "undistorted": DATASET_SETTINGS[options.dataset].undistort_gt},
        "event_frame_s": options.event_frame_s, "sub_dsi_dtype": options.sub_dsi_dtype,
        "source": {"data": file_identity(data_path, content=False), "gt": file_identity(gt_path, content=False),
                   "calibration": file_identity(source.calibration_path)},
    }


def window_stem(index: int) -> str:
    """A window's file name: its index, whose parity is the even / odd split."""
    return f"{index:06d}"


def record_path(folder: Path, stem: str) -> Path:
    return folder / "windows" / f"{stem}.npz"


def sub_dsi_path(folder: Path, stem: str) -> Path:
    return folder / "sub_dsi" / f"{stem}.npy"


def window_done(folder: Path, stem: str) -> bool:
    return record_path(folder, stem).is_file() and sub_dsi_path(folder, stem).is_file()


def ground_truth(source: Source, t: float, options: PrepareOptions) -> tuple[np.ndarray, float]:
    """The GT map nearest in time to ``t`` in the DSI's camera (NaN = none), and its offset;
    all NaN when the nearest is more than ``max_gt_offset_s`` away."""
    index, offset = source.depth.nearest(t)
    if abs(offset) > options.max_gt_offset_s:
        return np.full(source.depth.shape, np.nan, np.float32), offset
    depth = source.depth.read(index)
    if DATASET_SETTINGS[options.dataset].undistort_gt:
        depth = undistort_depth(depth, source.calibration.left)
    return depth, offset


def neighbourhoods(depth: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(N, 9)`` values of the 3 x 3 pixels around each centre, in the multi-pixel output order."""
    offsets = np.array(OFFSETS)
    return depth[rows[:, None] + offsets[:, 0], cols[:, None] + offsets[:, 1]]


def event_frame(camera: SweepCamera, events: np.ndarray) -> np.ndarray:
    """Event counts ``(H, W)`` uint16 at the undistorted event positions (nearest pixel)."""
    pixels = events[:, 2].astype(np.int64) * camera.width + events[:, 1].astype(np.int64)
    xy = np.rint(camera.table[pixels]).astype(np.int64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < camera.width) & (xy[:, 1] >= 0) & (xy[:, 1] < camera.height)
    counts = np.bincount(xy[inside, 1] * camera.width + xy[inside, 0], minlength=camera.width * camera.height)
    return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16).reshape(camera.height, camera.width)


def window_arrays(frame: DsiFrame, source: Source, left: SweepCamera, options: PrepareOptions,
                  settings: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The Sub-DSIs and the per-window record of one DSI (module docstring)."""
    dsi = frame.dsi.cpu().numpy() if isinstance(frame.dsi, torch.Tensor) else frame.dsi
    t_ref = source.t0 + frame.window.t_ref
    gt_map, offset = ground_truth(source, t_ref, options)
    selection = select_pixels(dsi, settings["max_confidence"], PRESETS[(options.dataset, options.filter)])
    rows, cols = selection.rows, selection.cols
    half = options.event_frame_s / 2
    near_to_far = torch.from_numpy(np.ascontiguousarray(dsi[::-1]))
    confidence = confidence_map(dsi)
    record = {
        "rows": rows.astype(np.int32), "cols": cols.astype(np.int32), "gt": neighbourhoods(gt_map, rows, cols),
        "confidence": confidence[rows, cols], "confidence_map": confidence,
        "argmax_depth": argmax_depth(near_to_far, DepthRange(**settings["depth_range"])).numpy().astype(np.float32),
        "gt_map": gt_map, "event_frame": event_frame(left, left.events.between(t_ref - half, t_ref + half)),
        "t_ref": np.float64(frame.window.t_ref), "gt_offset_s": np.float64(offset),
        "packets": np.array(frame.packets, np.int64),
    }
    return sub_dsis(dsi, rows, cols).astype(options.sub_dsi_dtype), record


def write_window(out: Path, index: int, blocks: np.ndarray, record: dict[str, np.ndarray]) -> None:
    """Sub-DSIs first, the record last: a window is done when its record exists."""
    stem = window_stem(index)
    save_npy_atomic(sub_dsi_path(out, stem), blocks)
    atomic_write(record_path(out, stem), lambda handle: np.savez_compressed(handle, **record))


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    windows: int
    built: int
    points: int
    seconds: float

    @property
    def summary(self) -> str:
        per = f"{self.seconds / self.built:.2f} s per window" if self.built else "nothing to build"
        return (f"derdnet-prepare: {self.windows} windows -> {self.out} ({self.built} built, "
                f"{self.windows - self.built} already done; {self.points} selected pixels in the built ones); {per}")


def _check_options(options: PrepareOptions) -> None:
    if options.dataset not in DATASET_SETTINGS:
        raise UsageError(f"--dataset must be one of {sorted(DATASET_SETTINGS)}, got {options.dataset!r}")
    if options.sub_dsi_dtype not in SUB_DSI_DTYPES:
        raise UsageError(f"--sub-dsi-dtype must be one of {SUB_DSI_DTYPES}, got {options.sub_dsi_dtype!r}")
    if Path(options.out).exists() and not Path(options.out).is_dir():
        raise UsageError(f"--out {options.out} exists and is not a folder")


def prepare(options: PrepareOptions) -> PrepareResult:
    """Check the recording, the options and the output folder, then build every missing window."""
    _check_options(options)
    device = resolve_device(options.device)
    out = Path(options.out)
    with ExitStack() as stack:
        source = _open_source(options, stack)
        timing = window_timing(options, source)
        windows = _windows(timing, source)
        settings = _identity(options, source, timing, len(windows))
        folder = OutputFolder(out, "derdnet-prepare", settings, PATTERNS, overwrite=options.overwrite)
        folder.check()
        check_writable(out, create=False)
        todo = [window for window in windows if options.overwrite or not window_done(out, window_stem(window.index))]
        check_writable(out)
        folder.start()
        for sub in ("windows", "sub_dsi"):
            remove_stale_temps(out / sub)
        return _build(options, source, todo, settings, len(windows), device)


def _build(options: PrepareOptions, source: Source, todo: list[Window], settings: dict, total: int,
           device: torch.device) -> PrepareResult:
    """Stream the DSIs of the windows still to do and write their samples."""
    out = Path(options.out)
    left, right = mvsec_cameras(source.calibration, source.left, source.right, source.trajectory)
    span = DepthRange(**settings["depth_range"])
    grid = DsiGrid.for_camera(source.calibration.left, span.z_min, span.z_max, options.planes)
    # On the CPU the events stay numpy arrays and the numba kernel votes; on a GPU the torch kernel.
    frames = stream_dsis(todo, source.t0, left, grid, right, device=None if device.type == "cpu" else device)
    started, points = time.perf_counter(), 0
    for frame in tqdm(frames, total=len(todo), unit="window", desc="derdnet-prepare", disable=not options.progress):
        blocks, record = window_arrays(frame, source, left, options, settings)
        write_window(out, frame.window.index, blocks, record)
        points += len(blocks)
    return PrepareResult(out, total, len(todo), points, time.perf_counter() - started)


# ---------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="MVSEC-format recording DIR/NAME (NAME_data.hdf5 with "
                        "davis/{left,right}/events, NAME_gt.hdf5 with davis/left/depth_image_raw and davis/left/pose)")
    parser.add_argument("--out", required=True, help="prepared folder to write (restartable)")
    parser.add_argument("--calibration", help="camchain yaml (default: the one camchain*.yaml next to the recording)")
    parser.add_argument("--dataset", choices=sorted(DATASET_SETTINGS), default="mvsec",
                        help="depth range, selection presets and window timing (default mvsec)")
    parser.add_argument("--mono", action="store_true", help="monocular DSIs from the left camera (default: stereo)")
    parser.add_argument("--filter", choices=("orig", "denser"), default="denser",
                        help="pixel selection preset, spec §3 (default denser: the authors' training and tests)")
    parser.add_argument("--max-confidence", type=positive_float, default=None,
                        help="M_seq of spec §3 (default: the authors' value for indoor_flying1-3 / DSEC)")
    parser.add_argument("--planes", type=positive_int, default=100, help="depth planes D (default 100)")
    parser.add_argument("--start", type=float, default=None, help="first window start, s after the first left event "
                        "(default: 10 for indoor_flying1-3, else the first pose)")
    parser.add_argument("--stop", type=float, default=None, help="last window end, s after the first left event "
                        "(default: 65/79/89 for indoor_flying1/2/3, else the last pose)")
    parser.add_argument("--duration", type=positive_float, default=None, help="window length in s (mvsec 1, dsec 0.2)")
    parser.add_argument("--step", type=positive_float, default=None, help="window stride in s (mvsec 0.05, dsec 0.1)")
    parser.add_argument("--forward-looking", action=argparse.BooleanOptionalAction, default=None,
                        help="reference time at the window end (default: dsec yes, mvsec no: mid-window)")
    parser.add_argument("--max-gt-offset", type=positive_float, default=0.05,
                        help="GT map nearest to the reference time is used within this many s (default 0.05)")
    parser.add_argument("--event-frame", type=positive_float, default=0.05,
                        help="seconds of left events around the reference time in the panels' event frame")
    parser.add_argument("--sub-dsi-dtype", choices=SUB_DSI_DTYPES, default="float16",
                        help="storage of the normalized Sub-DSIs (default float16: half the disk)")
    parser.add_argument("--device", default="auto", help="where the DSI sweep runs: auto (cuda if available), cpu "
                        "(numba kernel), cuda, cuda:1, ...")
    parser.add_argument("--overwrite", action="store_true", help="delete the folder's earlier outputs first")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    options = PrepareOptions(
        recording=args.recording, out=args.out, calibration=args.calibration, dataset=args.dataset,
        stereo=not args.mono, filter=args.filter, max_confidence=args.max_confidence, planes=args.planes,
        start_s=args.start, stop_s=args.stop, duration_s=args.duration, step_s=args.step,
        forward_looking=args.forward_looking, max_gt_offset_s=args.max_gt_offset, event_frame_s=args.event_frame,
        sub_dsi_dtype=args.sub_dsi_dtype, device=args.device, overwrite=args.overwrite,
        progress=not args.no_progress)
    print(prepare(options).summary, file=sys.stderr)
    return 0


register_command(Command("derdnet-prepare", __name__,
                         "DERD-Net: build DSIs of a recording and keep the selected pixels' Sub-DSIs and GT"))

