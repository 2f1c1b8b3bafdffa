"""Convert DSEC sequences (the published train layout) into the prepared layout (``fuse.data.layout``).

Expected input: DSEC's train downloads (events, images, disparity, calibration) unpacked into one
folder, so that every sequence folder holds (docs/datasets.md, DSEC)::

    <root>/<seq>/events/left/events.h5            events/{t,x,y,p}, ms_to_idx, t_offset (fuse.events.dsec)
    <root>/<seq>/events/left/rectify_map.h5       rectify_map (480, 640, 2): raw pixel -> rectified (x, y)
    <root>/<seq>/images/left/rectified/000000.png 8-bit RGB 1440x1080, rectified (camRect1)
    <root>/<seq>/images/timestamps.txt            one time per line (us), row i = i-th image file
    <root>/<seq>/disparity/event/000000.png       uint16 disparity x 256 in camRect0, 0 = no ground truth
    <root>/<seq>/disparity/timestamps.txt         one time per line (us), row i = i-th disparity file
    <root>/<seq>/calibration/cam_to_cam.yaml      intrinsics camRect0/camRect1, extrinsics T_10, R_rect0/1,
                                                  disparity_to_depth cams_03 / cams_12

(a ``train/`` folder level between root and sequences is accepted too). Facts and sources:
uzh-rpg/DSEC ``README.md`` (its "Data Format" section, last in commit 8ce1de3, now the page
<https://dsec.ifi.uzh.ch/data-format/>) and ``scripts/dataset/sequence.py``, ``scripts/utils/eventslicer.py``.

What a sample is, for every disparity map (the MVSEC preparation's convention, ``fuse.events.mvsec``):

* **depth** in the rectified left event camera (camRect0, 640x480): disparity ``d = png / 256``
  (``png == 0``: no ground truth -> NaN), reprojected with the calibration's
  ``disparity_to_depth.cams_03`` matrix Q: ``Z = (Q[2] . [x, y, d, 1]) / (Q[3] . [x, y, d, 1])``. DSEC's
  README defines Q as the matrix for OpenCV's ``reprojectImageTo3D``, so this is the conversion the
  data set documents; with OpenCV's rectification Q = [[1, 0, 0, -cx], [0, 1, 0, -cy], [0, 0, 0, f],
  [0, 0, 1/b, -(cx - cx')/b]], i.e. ``Z = f * b / (d - (cx - cx'))``, which is ``f * b / d`` when both
  rectified principal points agree (``Q[3][3] = 0``). Non-positive or non-finite depths are NaN. Written unclipped, in metres.
* **events**: the left camera's events with ``t_depth - window <= t <= t_depth`` (``--window-ms``,
  default 50, both ends inclusive as for MVSEC), rectified through ``rectify_map`` to sub-pixel
  positions (events landing outside the rectified image are dropped), voxelized like every other
  data set (``fuse.events.voxel_grid``, the pixel is the truncated position). A frame whose window
  begins before the recording's first event (DSEC's first disparity map; their loader drops it too)
  or holds no event is skipped.
* **image**: the rectified left frame camera image nearest in time (DSEC's disparity timestamps are
  image timestamps; kept within ``--max-image-offset-ms``, default 10). The frame camera
  (1440x1080, camRect1) does not see from the event camera's viewpoint; ``--image warp`` (default)
  maps it into camRect0 at infinite depth, the homography ``K_rect1 R_rect1 R_10 R_rect0^T
  K_rect0^-1`` of the calibration (what DSEC's maintainers give for aligning frames with events,
  uzh-rpg/DSEC issue #25, and the "infinite depth alignment" of DSEC-Det; parallax of near objects
  over the few cm between the cameras is not corrected). ``--image none`` writes a black frame of
  the event camera's size instead: events-only training, where an image-using model must not be
  trained on it.

Output: ``<out>/<seq>/{images,depths,voxels[,events]}/<disparity index>.{png,npy}`` and
``<out>/<seq>.txt``; ``--list NAME`` also writes ``<out>/NAME.txt`` over the sequences of the run.
Restartable like the other preparations (``provenance.json``, atomic writes, finished samples kept).

    python scripts/process_dsec.py --root /data/DSEC/train --out /data/DSEC_processed
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from fuse.atomic import check_writable, remove_stale_temps
from fuse.cli.ranges import positive_float, positive_int
from fuse.data.layout import (FOLDERS, load_image, sample_line, sample_stem, save_split_list, split_list_path,
                              split_list_text)
from fuse.errors import PrepError, RecordingError, WriteError
from fuse.events.dsec import DsecEvents, read_rectify_map
from fuse.prep.common import Rollback, add_common_arguments, run_script, sample_is_done, write_sample
from fuse.prep.mvsec import ExportSummary
from fuse.provenance import SAMPLE_PATTERNS, OutputFolder, file_identity, files_identity

__all__ = ["DsecCalibration", "DsecSequence", "disparity_to_depth", "export_sequence", "find_sequences", "main"]

# Where a sequence keeps each input (published layout, module docstring).
CALIBRATION = Path("calibration/cam_to_cam.yaml")
EVENTS = Path("events/left/events.h5")
RECTIFY_MAP = Path("events/left/rectify_map.h5")
IMAGES = Path("images/left/rectified")
IMAGE_STAMPS = Path("images/timestamps.txt")
DISPARITY = Path("disparity/event")
DISPARITY_STAMPS = Path("disparity/timestamps.txt")
DISPARITY_SCALE = 256.0  # png value / 256 = disparity in pixels (DSEC README, as KITTI)
IMAGE_MODES = ("warp", "none")
DOWNLOAD_PAGE = "https://dsec.ifi.uzh.ch/dsec-datasets/download/"
# PNG bytes per RGB pixel, for the disk estimate only (photographs compress to about half).
_PNG_BYTES_PER_PIXEL = 1.5


# ----------------------------------------------------------------------------- calibration


def _matrix(values: Any, shape: tuple[int, int], key: str, path: Path) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != shape or not np.isfinite(array).all():
        raise PrepError(f"{path}: '{key}' must be a finite {shape[0]}x{shape[1]} matrix, got {values!r}")
    return array


@dataclass(frozen=True)
class Camera:
    """A rectified camera of ``cam_to_cam.yaml``: ``K`` (3x3) and its image size (height, width)."""

    K: np.ndarray
    size: tuple[int, int]


class DsecCalibration:
    """``calibration/cam_to_cam.yaml`` of one sequence (DSEC naming: cam0 left event camera, cam1 left
    frame camera, cam2 right frame camera, cam3 right event camera, camRectX rectified camX; ``T_XY``
    maps points of camY into camX, ``R_rectX`` camX into camRectX; ``disparity_to_depth`` ``cams_03``
    the event pair's Q, ``cams_12`` the frame pair's).

    Entries are read when first used, so a missing one is reported only by what needs it.
    """

    def __init__(self, path: str | os.PathLike, sequence: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            where = f"of sequence {sequence} " if sequence else ""
            raise PrepError(f"{self.path}: DSEC calibration {where}not found (cam_to_cam.yaml holds the "
                            f"rectified intrinsics and the disparity-to-depth matrix). Download the sequence's "
                            f"calibration from {DOWNLOAD_PAGE} and unpack it so that this file exists "
                            "(docs/datasets.md, DSEC)")
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise PrepError(f"{self.path}: cannot read as YAML: {err}") from None
        if not isinstance(data, dict):
            raise PrepError(f"{self.path}: not a DSEC cam_to_cam.yaml (expected intrinsics, extrinsics, "
                            "disparity_to_depth)")
        self.data = data

    def entry(self, *keys: str) -> Any:
        node: Any = self.data
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise PrepError(f"{self.path}: missing '{'.'.join(keys[:depth + 1])}' (a DSEC cam_to_cam.yaml "
                                "has intrinsics.camRect0, extrinsics.T_10, disparity_to_depth.cams_03, ...)")
            node = node[key]
        return node

    def camera(self, name: str) -> Camera:
        """A camera's ``camera_matrix`` [fx, fy, cx, cy] and ``resolution`` [width, height]."""
        values = self.entry("intrinsics", name, "camera_matrix")
        fx, fy, cx, cy = _matrix([values], (1, 4), f"intrinsics.{name}.camera_matrix", self.path)[0]
        resolution = self.entry("intrinsics", name, "resolution")
        if (not isinstance(resolution, (list, tuple)) or len(resolution) != 2
                or not all(isinstance(v, int) and v > 0 for v in resolution)):
            raise PrepError(f"{self.path}: 'intrinsics.{name}.resolution' must be [width, height], got {resolution!r}")
        return Camera(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), (resolution[1], resolution[0]))

    @cached_property
    def event_camera(self) -> Camera:
        """camRect0: the rectified left event camera, the frame of the disparity ground truth."""
        return self.camera("camRect0")

    @cached_property
    def frame_camera(self) -> Camera:
        """camRect1: the rectified left frame camera, the frame of the published images."""
        return self.camera("camRect1")

    @cached_property
    def Q(self) -> np.ndarray:
        """The event cameras' disparity-to-depth matrix (``disparity_to_depth.cams_03``), checked to give
        positive depth for positive disparity."""
        q = _matrix(self.entry("disparity_to_depth", "cams_03"), (4, 4), "disparity_to_depth.cams_03", self.path)
        if not (q[2, 3] > 0 and q[3, 2] > 0):
            raise PrepError(f"{self.path}: disparity_to_depth.cams_03 has Q[2][3] = {q[2, 3]:g} (focal length) and "
                            f"Q[3][2] = {q[3, 2]:g} (1 / baseline); both must be positive for positive depths")
        return q

    @property
    def focal_px(self) -> float:
        return float(self.Q[2, 3])

    @property
    def baseline_m(self) -> float:
        return float(1.0 / self.Q[3, 2])

    def depth(self, disparity: np.ndarray) -> np.ndarray:
        """float32 metres of a disparity map in camRect0 (pixels; <= 0 = none) through Q; NaN = no depth."""
        return disparity_to_depth(disparity, self.Q)

    def image_to_event_homography(self) -> np.ndarray:
        """3x3 H with ``H @ [u0, v0, 1] ~ [u1, v1, 1]``: the camRect1 image pixel a camRect0 pixel sees
        when the scene is at infinity, ``K_rect1 R_rect1 R_10 R_rect0^T K_rect0^-1``."""
        r_rect0 = _matrix(self.entry("extrinsics", "R_rect0"), (3, 3), "extrinsics.R_rect0", self.path)
        r_rect1 = _matrix(self.entry("extrinsics", "R_rect1"), (3, 3), "extrinsics.R_rect1", self.path)
        t_10 = _matrix(self.entry("extrinsics", "T_10"), (4, 4), "extrinsics.T_10", self.path)
        return self.frame_camera.K @ r_rect1 @ t_10[:3, :3] @ r_rect0.T @ np.linalg.inv(self.event_camera.K)

    @cached_property
    def image_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` tables (map_x, map_y), camRect0-sized, sampling the camRect1 image."""
        height, width = self.event_camera.size
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        points = self.image_to_event_homography() @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
        with np.errstate(divide="ignore", invalid="ignore"):
            map_x = (points[0] / points[2]).reshape(height, width)
            map_y = (points[1] / points[2]).reshape(height, width)
        behind = ~(points[2].reshape(height, width) > 0)
        map_x[behind], map_y[behind] = -1.0, -1.0  # rays that miss the frame camera: black
        return map_x.astype(np.float32), map_y.astype(np.float32)

    def warp_image(self, image: np.ndarray) -> np.ndarray:
        """A camRect1 image seen from camRect0 at infinite depth (bilinear, black outside the frame camera)."""
        map_x, map_y = self.image_maps
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def disparity_to_depth(disparity: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """float32 depth (metres) of a disparity map through ``Q`` as ``cv2.reprojectImageTo3D`` applies it:
    ``Z = (Q[2] . [x, y, d, 1]) / (Q[3] . [x, y, d, 1])`` at pixel column x, row y; NaN where ``d <= 0``
    (no ground truth) or Z is not a positive finite number."""
    disparity = np.asarray(disparity, dtype=np.float64)
    height, width = disparity.shape
    x = np.arange(width, dtype=np.float64)[None, :]
    y = np.arange(height, dtype=np.float64)[:, None]
    Q = np.asarray(Q, dtype=np.float64)
    numerator = Q[2, 0] * x + Q[2, 1] * y + Q[2, 2] * disparity + Q[2, 3]
    denominator = Q[3, 0] * x + Q[3, 1] * y + Q[3, 2] * disparity + Q[3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = numerator / denominator
    valid = (disparity > 0) & np.isfinite(depth) & (depth > 0)
    return np.where(valid, depth, np.nan).astype(np.float32)


def read_disparity(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Disparity in pixels (float64, 0 = no ground truth) of a DSEC 16-bit disparity PNG of ``size`` (H, W)."""
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise PrepError(f"{path}: cannot decode disparity PNG (corrupt, truncated or not an image)")
    if values.dtype != np.uint16 or values.ndim != 2:
        raise PrepError(f"{path}: DSEC disparity must be a 16-bit single-channel PNG (value / 256 = disparity), got "
                        f"{values.dtype} of shape {values.shape}")
    if values.shape != tuple(size):
        raise PrepError(f"{path}: disparity is {values.shape[1]}x{values.shape[0]}, but camRect0 in cam_to_cam.yaml "
                        f"is {size[1]}x{size[0]}")
    return values.astype(np.float64) / DISPARITY_SCALE


# ----------------------------------------------------------------------------- sequences


def read_stamps(path: Path) -> np.ndarray:
    """int64 microseconds of a DSEC ``timestamps.txt`` (one per line; ``#`` comments allowed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            rows = [line.split("#")[0].strip() for line in handle]
        stamps = np.array([int(float(row)) if "." in row or "e" in row.lower() else int(row)
                           for row in rows if row], dtype=np.int64)
    except (OSError, ValueError) as err:
        raise PrepError(f"{path}: cannot read timestamps (expected one integer time in microseconds per line): "
                        f"{err}") from None
    if stamps.size == 0:
        raise PrepError(f"{path}: no timestamps")
    if np.any(np.diff(stamps) < 0):
        raise PrepError(f"{path}: timestamps are not sorted")
    return stamps


def _pngs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() == ".png")


def is_sequence(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_dir() for name in ("events", "disparity", "images",
                                                                             "calibration"))


def find_sequences(root: Path) -> dict[str, Path]:
    """Sequence folders of a DSEC root by name: the root itself, its sub-folders, or those of ``root/train``."""
    if is_sequence(root):
        return {root.name: root}
    found: dict[str, Path] = {}
    for parent in (root, root / "train"):
        if parent.is_dir():
            for folder in sorted(parent.iterdir()):
                if is_sequence(folder):
                    found.setdefault(folder.name, folder)
    return found


@dataclass(frozen=True)
class Frame:
    """One disparity map: its file and time, the image paired with it (or why the frame is skipped)."""

    index: int  # the disparity file's number: the sample's stem
    disparity: Path
    t_us: int
    image: Path | None
    skip_reason: str | None = None


class DsecSequence:
    """One sequence folder, its inputs checked before anything is written."""

    def __init__(self, name: str, folder: Path, image_mode: str = "warp") -> None:
        self.name, self.folder, self.image_mode = name, Path(folder), image_mode
        self.calibration = DsecCalibration(self.folder / CALIBRATION, name)
        for relative, what in ((EVENTS, "the left event camera's events (events download)"),
                               (RECTIFY_MAP, "the left event camera's rectification table (events download)"),
                               (DISPARITY_STAMPS, "the disparity timestamps (disparity download)")):
            if not (self.folder / relative).is_file():
                raise PrepError(f"{self.folder / relative}: not found: {what} of DSEC sequence {name}; see "
                                "docs/datasets.md (DSEC) for the layout")
        if not (self.folder / DISPARITY).is_dir():
            raise PrepError(f"{self.folder / DISPARITY}: not found: DSEC publishes disparity for the train sequences "
                            f"only (the test sequences' ground truth is withheld); unpack the disparity download "
                            f"of {name}")
        if image_mode == "warp":
            for relative in (IMAGES, IMAGE_STAMPS):
                if not (self.folder / relative).exists():
                    raise PrepError(f"{self.folder / relative}: not found: the rectified left images of DSEC sequence "
                                    f"{name} (images download); or pass --image none for events-only samples")
        self.event_size = self.calibration.event_camera.size
        self.depth_stamps = read_stamps(self.folder / DISPARITY_STAMPS)
        self.disparities = _pngs(self.folder / DISPARITY)
        if len(self.disparities) != len(self.depth_stamps):
            raise PrepError(f"{self.folder / DISPARITY}: {len(self.disparities)} disparity PNGs but "
                            f"{len(self.depth_stamps)} rows in {self.folder / DISPARITY_STAMPS} (row i is the time of "
                            "the i-th file): an incomplete download?")
        for path in self.disparities:
            if not path.stem.isdigit():
                raise PrepError(f"{path}: DSEC disparity files are numbered (000000.png, ...)")
        if image_mode == "warp":
            self.image_stamps = read_stamps(self.folder / IMAGE_STAMPS)
            self.images = _pngs(self.folder / IMAGES)
            if len(self.images) != len(self.image_stamps):
                raise PrepError(f"{self.folder / IMAGES}: {len(self.images)} images but {len(self.image_stamps)} rows "
                                f"in {self.folder / IMAGE_STAMPS} (row i is the time of the i-th image): an "
                                "incomplete download?")
            self.calibration.image_maps  # noqa: B018 - the frame camera's entries are checked now
        self.rectify_map = read_rectify_map(self.folder / RECTIFY_MAP)
        self.calibration.Q  # noqa: B018 - checked now, before any output exists

    def frames(self, max_image_offset_us: int) -> list[Frame]:
        """Every disparity map with the image nearest in time (ties: the earlier), or why it is skipped."""
        frames = []
        for path, t in zip(self.disparities, self.depth_stamps):
            image, reason = None, None
            if self.image_mode == "warp":
                after = int(np.searchsorted(self.image_stamps, t))
                candidates = [i for i in (after - 1, after) if 0 <= i < len(self.image_stamps)]
                best = min(candidates, key=lambda i: (abs(int(self.image_stamps[i]) - int(t)), i))
                if abs(int(self.image_stamps[best]) - int(t)) > max_image_offset_us:
                    reason = f"no image within {max_image_offset_us / 1000:g} ms"
                else:
                    image = self.images[best]
            frames.append(Frame(int(path.stem), path, int(t), image, reason))
        return frames

    def identity(self, settings: dict) -> dict:
        """What the prepared files of this sequence depend on (``provenance.json``)."""
        source = {"events": file_identity(self.folder / EVENTS, content=False),
                  "rectify_map": file_identity(self.folder / RECTIFY_MAP, content=False),
                  "calibration": file_identity(self.calibration.path),
                  "disparity": files_identity([self.folder / DISPARITY_STAMPS, *self.disparities])}
        if self.image_mode == "warp":
            source["images"] = files_identity([self.folder / IMAGE_STAMPS, *self.images])
        return {"source": source, "num_bins": settings["num_bins"], "settings": settings}

    def bytes_per_sample(self, num_bins: int, save_events: bool) -> float:
        """Disk of one prepared sample (raw windows not counted: 32 bytes per event)."""
        height, width = self.event_size
        return 4.0 * height * width * (1 + num_bins) + _PNG_BYTES_PER_PIXEL * height * width + 256


# ----------------------------------------------------------------------------- conversion


def export_sequence(sequence: DsecSequence, out: str | os.PathLike, *, num_bins: int = 3, window_ms: float = 50.0,
                    max_image_offset_ms: float = 10.0, save_events: bool = False, overwrite: bool = False,
                    progress: bool | None = None) -> tuple[ExportSummary, list[str]]:
    """Write every kept frame of ``sequence`` under ``out/<name>``; returns the summary and the split-list
    lines. Bad input (PrepError, RecordingError) removes what this call created, then propagates."""
    out = Path(out)
    seq_dir = out / sequence.name
    window_us = int(round(window_ms * 1000))
    offset_us = int(round(max_image_offset_ms * 1000))
    settings = {"num_bins": num_bins, "window_ms": window_ms, "max_image_offset_ms": max_image_offset_ms,
                "image": sequence.image_mode, "depth": "disparity_to_depth.cams_03", "camera": "left"}
    frames = sequence.frames(offset_us)
    summary = ExportSummary(sequence.name, frames=len(frames))
    output = OutputFolder(seq_dir, "process_dsec", sequence.identity(settings), SAMPLE_PATTERNS, overwrite=overwrite)
    output.check()
    rollback, lines = Rollback(), []
    height, width = sequence.event_size
    with DsecEvents(sequence.folder / EVENTS, rectify_map=sequence.rectify_map) as events:
        first_event = events.time_range()[0] if len(events) else None
        try:
            for kind in ("image", "depth", "voxel") + (("events",) if save_events else ()):
                folder = seq_dir / FOLDERS[kind]
                rollback.note(folder)
                folder.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(folder)  # left by a run killed mid-write
            rollback.note(output.manifest)
            output.start()
            show = None if progress is None else not progress
            for frame in tqdm(frames, desc=sequence.name, unit="frame", disable=show):
                stem = sample_stem(frame.index)
                reason = frame.skip_reason
                if reason is None and (first_event is None or frame.t_us - window_us < first_event):
                    reason = "window starts before the first event"
                if reason is not None:
                    summary.skipped[reason] += 1
                    continue
                if not overwrite and sample_is_done(seq_dir, stem, num_bins, save_events):
                    summary.present += 1
                    lines.append(sample_line(sequence.name, stem))
                    continue
                window = events.window_columns(frame.t_us - window_us, frame.t_us + 1)  # both ends inclusive
                if not len(window):
                    summary.skipped[f"no events in the {window_ms:g} ms window"] += 1
                    continue
                depth = sequence.calibration.depth(read_disparity(frame.disparity, (height, width)))
                if frame.image is None:
                    image = np.zeros((height, width, 3), np.uint8)
                else:
                    image = load_image(frame.image, PrepError, gray=False)
                    if image.shape[:2] != sequence.calibration.frame_camera.size:
                        h1, w1 = sequence.calibration.frame_camera.size
                        raise PrepError(f"{frame.image}: image is {image.shape[1]}x{image.shape[0]}, but camRect1 in "
                                        f"{sequence.calibration.path} is {w1}x{h1}")
                    image = sequence.calibration.warp_image(image)
                for path in (seq_dir / FOLDERS[kind] / f"{stem}{suffix}" for kind, suffix in
                             (("image", ".png"), ("depth", ".npy"), ("voxel", ".npy"), ("events", ".npy"))):
                    rollback.note(path)
                write_sample(seq_dir, stem, image, depth, window, num_bins, save_events)
                summary.written += 1
                lines.append(sample_line(sequence.name, stem))
            list_path = split_list_path(out, sequence.name)
            if overwrite or not _has_content(list_path, split_list_text(lines).encode()):
                rollback.note(list_path)
                save_split_list(list_path, lines)
        except (PrepError, RecordingError):  # bad input: undo; a refused write keeps what is finished
            rollback.undo()
            raise
    return summary, lines


def _has_content(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequences", nargs="*", help="sequence names, e.g. zurich_city_04_a (default: every sequence "
                        "under --root that has disparity/)")
    parser.add_argument("--root", type=Path, required=True, help="folder holding the DSEC sequence folders (or "
                        "train/<seq>, or one sequence folder)")
    parser.add_argument("--out", type=Path, required=True, help="output folder of the processed layout")
    parser.add_argument("--numbins", type=positive_int, default=3, help="voxel bins (default 3, what FUSE's encoder "
                        "takes)")
    parser.add_argument("--window-ms", type=positive_float, default=50.0, help="events before each depth map, in ms "
                        "(default 50, as for MVSEC)")
    parser.add_argument("--max-image-offset-ms", type=positive_float, default=10.0, help="farthest image from a depth "
                        "map in time (default 10 ms, as for MVSEC)")
    parser.add_argument("--image", choices=IMAGE_MODES, default="warp", help="warp: the rectified left frame image "
                        "mapped into the event camera at infinite depth (default); none: black frames (events only)")
    parser.add_argument("--list", metavar="NAME", help="also write <out>/NAME.txt listing the samples of every "
                        "sequence of this run (e.g. train, val)")
    parser.add_argument("--save-events", action="store_true", help="also store each rectified raw window as "
                        "events/<frame>.npy (t [s], x, y, p)")
    add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_script(build_parser(), run, argv)


def run(args: argparse.Namespace) -> int:
    """Check every asked sequence, then convert each (a bad input stops the run: exit 2)."""
    if not args.root.is_dir():
        raise PrepError(f"DSEC root not found: {args.root}")
    found = find_sequences(args.root)
    if args.list is not None and (not args.list or "/" in args.list or args.list.endswith(".txt")):
        raise PrepError(f"--list takes a plain name (the list is written as <out>/NAME.txt), got {args.list!r}")
    if args.sequences:
        unknown = [name for name in args.sequences if name not in found]
        if unknown:
            known = ", ".join(sorted(found)) or "none"
            raise PrepError(f"sequence {unknown[0]!r} not found in {args.root} (found: {known})")
        names = list(dict.fromkeys(args.sequences))
    else:
        names = [name for name, folder in found.items() if (folder / "disparity").is_dir()]
        without = len(found) - len(names)
        if not names:
            raise PrepError(f"{args.root} holds no DSEC sequence with disparity/ ground truth (expected "
                            "<root>/<seq>/disparity/event/*.png; see docs/datasets.md, DSEC)")
        if without:
            print(f"skipping {without} sequence(s) without disparity/ (DSEC's test sequences have no public ground "
                  "truth)", file=sys.stderr)
    sequences = [DsecSequence(name, found[name], args.image) for name in names]  # every input checked first
    check_writable(args.out, create=False)
    estimate = sum(len(s.disparities) * s.bytes_per_sample(args.numbins, args.save_events) for s in sequences)
    print(f"DSEC: {len(sequences)} sequence(s), {sum(len(s.disparities) for s in sequences)} disparity maps, up to "
          f"{estimate / 1e9:.1f} GB of prepared samples in {args.out}", file=sys.stderr)
    all_lines = []
    for sequence in sequences:
        try:
            summary, lines = export_sequence(sequence, args.out, num_bins=args.numbins, window_ms=args.window_ms,
                                             max_image_offset_ms=args.max_image_offset_ms,
                                             save_events=args.save_events, overwrite=args.overwrite)
        except WriteError as err:
            raise WriteError(err.errno, f"{err} (finished files are kept; rerun to continue)", err.filename) from None
        print(summary)
        all_lines.extend(lines)
    if args.list:
        save_split_list(split_list_path(args.out, args.list), all_lines)
        print(f"{len(all_lines)} sample(s) -> {split_list_path(args.out, args.list)}")
    return 0
