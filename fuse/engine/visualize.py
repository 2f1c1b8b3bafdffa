"""Pictures of inputs and predictions: colored depth, event voxels, side-by-side panels, video.

Every function returns uint8 BGR arrays (OpenCV's channel order), so they can be written with
:func:`write_png_atomic` or :class:`Mp4Writer` as they are.

Metric depth is colored on a fixed per-dataset scale, so that a color means the same distance
in every frame of a run: the normalized log depth of spec §7 with the dataset's ``max_depth``
and ``reg_factor`` (``max_depth * exp(-reg_factor)`` is the evaluation's nearest depth), near
shown warm and far cold. Relative (inverse-depth) outputs have no scale, so each frame is
stretched between robust percentiles instead. Pixels without a value are black; the default
colormap (TURBO) never produces black, so holes stay visible.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from fuse.atomic import temp_path_for, write_bytes_atomic

DEFAULT_COLORMAP = cv2.COLORMAP_TURBO
RELATIVE_PERCENTILES = (2.0, 98.0)
EVENT_PERCENTILE = 99.0
LABEL_COLOR = (255, 255, 255)
LABEL_BACKGROUND = (0, 0, 0)


def _apply_colormap(values: np.ndarray, valid: np.ndarray, colormap: int) -> np.ndarray:
    """Map values in [0, 1] through an OpenCV colormap; invalid pixels become black."""
    scaled = np.zeros(values.shape, dtype=np.uint8)
    scaled[valid] = np.round(np.clip(values[valid], 0.0, 1.0) * 255.0).astype(np.uint8)
    colored = cv2.applyColorMap(scaled, colormap)
    colored[~valid] = 0
    return colored


def colorize_depth(depth: np.ndarray, max_depth: float, reg_factor: float,
                   colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """Color an H×W metric depth map on the fixed log scale of one dataset (near = warm).

    Depths outside ``[max_depth * exp(-reg_factor), max_depth]`` are clamped to the ends of
    the scale; NaN, inf and non-positive depths are black.
    """
    depth = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
        normalized_log = np.log(np.where(valid, depth, 1.0) / max_depth) / reg_factor + 1.0
    return _apply_colormap(1.0 - normalized_log, valid, colormap)


def colorize_disparity(disparity: np.ndarray, colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """Color an H×W relative inverse depth (large = near = warm), stretched per frame.

    A relative output has no absolute scale, so the 2nd and 98th percentiles of its finite
    values span the colormap; non-finite pixels are black.
    """
    disparity = np.asarray(disparity, dtype=np.float64)
    valid = np.isfinite(disparity)
    if not valid.any():
        return _apply_colormap(disparity, valid, colormap)
    low, high = np.percentile(disparity[valid], RELATIVE_PERCENTILES)
    span = high - low if high > low else 1.0
    return _apply_colormap((disparity - low) / span, valid, colormap)


def colorize_voxel(voxel: np.ndarray, background: str = "white") -> np.ndarray:
    """Color a bins×H×W voxel grid by the sign of its sum over bins: red positive, blue negative.

    The color strength is the absolute sum relative to its 99th percentile over non-zero
    pixels, so a few hot pixels do not wash out the rest. ``background`` is "white" or "black".
    """
    if background not in ("white", "black"):
        raise ValueError(f"background must be 'white' or 'black', got {background!r}")
    total = np.asarray(voxel, dtype=np.float64).sum(axis=0)
    magnitude = np.abs(total)
    active = magnitude[magnitude > 0]
    scale = np.percentile(active, EVENT_PERCENTILE) if active.size else 1.0
    strength = np.clip(magnitude / scale, 0.0, 1.0)
    if background == "white":
        out = np.repeat((1.0 - strength)[..., None], 3, axis=2)
        own = np.ones_like(strength)
    else:
        out = np.zeros((*total.shape, 3))
        own = strength
    # BGR: positive sums keep the red channel (2) at full color, negative ones the blue (0).
    out[..., 2] = np.where(total > 0, own, out[..., 2])
    out[..., 0] = np.where(total < 0, own, out[..., 0])
    return np.round(out * 255.0).astype(np.uint8)


def image_to_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 BGR copy of an RGB image given as H×W, H×W×1 or H×W×3 (uint8 or float in [0, 1])."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.floating):
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def label_tile(tile: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``tile`` with ``text`` in its top-left corner, white on a black box."""
    out = tile.copy()
    scale = max(0.3, tile.shape[0] / 650.0)
    thickness = 1
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, int(round(height * 0.3)))
    cv2.rectangle(out, (0, 0), (width + 2 * pad, height + baseline + 2 * pad), LABEL_BACKGROUND, cv2.FILLED)
    cv2.putText(out, text, (pad, pad + height), cv2.FONT_HERSHEY_SIMPLEX, scale, LABEL_COLOR, thickness, cv2.LINE_AA)
    return out


def make_panel(tiles: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Labelled tiles of equal size side by side, left to right."""
    if not tiles:
        raise ValueError("a panel needs at least one tile")
    shape = tiles[0][1].shape
    for label, tile in tiles:
        if tile.shape != shape:
            raise ValueError(f"tile {label!r} has shape {tile.shape}, expected {shape} like the first tile")
    return np.concatenate([label_tile(tile, label) for label, tile in tiles], axis=1)


def prediction_panel(image: np.ndarray, voxel: np.ndarray | None, prediction: np.ndarray,
                     ground_truth: np.ndarray | None = None) -> np.ndarray:
    """"image | events | prediction | ground truth" from an RGB image and colored (BGR) depths.

    The events tile is left out when there is no voxel (image-only model), the ground-truth tile
    when there is no ground truth.
    """
    tiles = [("image", image_to_bgr(image))]
    if voxel is not None:
        tiles.append(("events", colorize_voxel(voxel)))
    tiles.append(("prediction", prediction))
    if ground_truth is not None:
        tiles.append(("ground truth", ground_truth))
    return make_panel(tiles)


def write_png_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 BGR (or gray) image as PNG via a temp file and a rename.

    An interrupted run leaves either no file or a complete one under ``path``.
    """
    path = Path(path)
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"PNG encoding failed for {path} (array {array.dtype} {array.shape})")
    return write_bytes_atomic(path, buffer.tobytes())


class Mp4Writer:
    """MP4 (mp4v) writer that only shows up under its final name once it is complete.

    Frames go to a temp file in the same folder; ``close()`` renames it into place. Leaving the
    ``with`` block through an exception deletes the temp file instead. Frames of another size
    than the first are resized to it (a video has one frame size).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0) -> None:
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The temp name keeps the .mp4 ending: OpenCV picks the container from it.
        self._tmp = temp_path_for(self.path, ".mp4")

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 BGR frame."""
        if self._writer is None:
            self._size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write mp4v video to {self._tmp} (no video backend?)")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the video and move it into place; returns its path, or None without frames."""
        if self._writer is None:
            self.abort()
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished video."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
