"""Pictures of inputs and predictions: colored depth, event voxels, side-by-side panels, video.

Every function returns uint8 BGR arrays (OpenCV's channel order), so they can be written with
:func:`write_png_atomic` or :class:`Mp4Writer` as they are.

Metric depth is colored on a fixed per-dataset scale, so that a color means the same distance
in every frame of a run: the normalized log depth of spec §7 with the dataset's ``max_depth``
and ``reg_factor`` (``max_depth * exp(-reg_factor)`` is the evaluation's nearest depth), near
shown warm and far cold. Relative (inverse-depth) outputs have no scale, so each frame is
stretched between robust percentiles instead. Pixels without a value are black; the default
colormap (TURBO) never produces black, so holes stay visible. A color bar
(:func:`depth_colorbar`, :func:`relative_colorbar`) next to the tiles gives the colors a scale.
"""
from __future__ import annotations

import errno
import math
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from fuse.atomic import WriteError, temp_path_for, write_bytes_atomic, write_error

DEFAULT_COLORMAP = cv2.COLORMAP_TURBO
RELATIVE_PERCENTILES = (2.0, 98.0)
EVENT_PERCENTILE = 99.0
LABEL_COLOR = (255, 255, 255)
LABEL_BACKGROUND = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_DEPTH_TICKS = 6
MP4_CODEC = "mp4v"


def _levels(values: np.ndarray) -> np.ndarray:
    """Colormap indices of positions in [0, 1] (clamped); tiles and color bars share this rounding."""
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _apply_colormap(values: np.ndarray, valid: np.ndarray, colormap: int) -> np.ndarray:
    """Map values in [0, 1] through an OpenCV colormap; invalid pixels become black."""
    scaled = np.zeros(values.shape, dtype=np.uint8)
    scaled[valid] = _levels(values[valid])
    colored = cv2.applyColorMap(scaled, colormap)
    colored[~valid] = 0
    return colored


def _depth_position(depth: np.ndarray, max_depth: float, reg_factor: float) -> np.ndarray:
    """Colormap position of positive depths: 1 - normalized log depth (1 at the nearest depth, 0 at max)."""
    return 1.0 - (np.log(depth / max_depth) / reg_factor + 1.0)


def colorize_depth(depth: np.ndarray, max_depth: float, reg_factor: float,
                   colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """Color an H×W metric depth map on the fixed log scale of one dataset (near = warm).

    Depths outside ``[max_depth * exp(-reg_factor), max_depth]`` are clamped to the ends of
    the scale; NaN, inf and non-positive depths are black.
    """
    depth = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
        position = _depth_position(np.where(valid, depth, 1.0), max_depth, reg_factor)
    return _apply_colormap(position, valid, colormap)


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


def _font_scale(height: int) -> float:
    """Text size for a picture ``height`` pixels tall: small, yet readable on 260-px sensor frames."""
    return max(0.3, height / 650.0)


def _text_padding(text_height: int) -> int:
    """Room around text, in proportion to it so that labels look alike at every size."""
    return max(2, int(round(text_height * 0.3)))


def label_tile(tile: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``tile`` with ``text`` in its top-left corner, white on a black box."""
    out = tile.copy()
    scale = _font_scale(tile.shape[0])
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    pad = _text_padding(height)
    cv2.rectangle(out, (0, 0), (width + 2 * pad, height + baseline + 2 * pad), LABEL_BACKGROUND, cv2.FILLED)
    cv2.putText(out, text, (pad, pad + height), FONT, scale, LABEL_COLOR, 1, cv2.LINE_AA)
    return out


def depth_ticks(max_depth: float, reg_factor: float, most: int = MAX_DEPTH_TICKS) -> list[float]:
    """Round depths to label a metric color bar, far to near: ``max_depth``, then 1-2-5 steps.

    Wide ranges fall back to 1-3 steps, then decades, so that at most ``most`` ticks remain
    where possible; all lie in ``[max_depth * exp(-reg_factor), max_depth]``.
    """
    nearest = max_depth * math.exp(-reg_factor)
    exponents = range(math.floor(math.log10(nearest)), math.floor(math.log10(max_depth)) + 1)
    for steps in ((1, 2, 5), (1, 3), (1,)):
        # float("2e-1") is the decimal 0.2 exactly as a label would print it, unlike 2 * 10 ** -1.
        rounds = sorted((float(f"{step}e{exponent}") for exponent in exponents for step in steps), reverse=True)
        ticks = [max_depth] + [value for value in rounds if nearest <= value < max_depth]
        if len(ticks) <= most:
            break
    return ticks


def depth_colorbar(height: int, max_depth: float, reg_factor: float,
                   colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """Color bar for tiles of :func:`colorize_depth` (same scale): far at the top, ticks in metres."""
    ticks = depth_ticks(max_depth, reg_factor)
    positions = _depth_position(np.array(ticks, dtype=np.float64), max_depth, reg_factor)
    return _colorbar(height, list(zip(positions, (f"{tick:g}" for tick in ticks))), "depth [m]", colormap)


def relative_colorbar(height: int, colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """Color bar for tiles of :func:`colorize_disparity`: far to near, no unit (each frame is stretched)."""
    return _colorbar(height, [(0.0, "far"), (1.0, "near")], "relative", colormap)


def _colorbar(height: int, ticks: Sequence[tuple[float, str]], title: str, colormap: int) -> np.ndarray:
    """A bar ``height`` px tall: colormap position 0 at the top of the strip, 1 at its bottom.

    ``ticks`` are (position, label) with the positions the tiles' colors come from. The strip
    is linear in position, bent by under half a row so that each tick's row shows exactly the
    tick's color. Ticks whose labels would overlap are left out (the upper one stays); a bar
    too short for text shows the colors only.
    """
    scale = _font_scale(height)
    sizes = [cv2.getTextSize(text, FONT, scale, 1) for text in [title, *(label for _, label in ticks)]]
    text_height = max(height for (_, height), _ in sizes)
    line = text_height + max(baseline for _, baseline in sizes)
    title_width, label_width = sizes[0][0][0], max(width for (width, _), _ in sizes[1:])
    pad = _text_padding(text_height)
    label_x = 3 * pad + text_height  # pad, strip (text_height wide), tick mark (pad long), pad
    width = max(title_width + 2 * pad, label_x + label_width + pad)
    bar = np.zeros((height, width, 3), np.uint8)

    title_band, margin = line + 2 * pad, line // 2 + 2
    with_text = height - title_band - 2 * margin >= 2 * line
    top, bottom = (title_band + margin, height - 1 - margin) if with_text else (0, height - 1)
    marks: dict[int, str] = {}
    anchors = {top: 0, bottom: 255}
    for position, label in sorted(ticks) if with_text else []:
        row = top + int(round(position * (bottom - top)))
        if all(abs(row - kept) > line for kept in marks):
            marks[row] = label
            anchors[row] = int(_levels(np.asarray(position)))
    rows = sorted(anchors)
    levels = np.round(np.interp(np.arange(top, bottom + 1), rows, [anchors[row] for row in rows])).astype(np.uint8)
    bar[top:bottom + 1, pad:pad + text_height] = cv2.applyColorMap(levels[:, None], colormap)
    for row, label in marks.items():
        bar[row, pad + text_height:2 * pad + text_height] = LABEL_COLOR
        cv2.putText(bar, label, (label_x, row + text_height // 2), FONT, scale, LABEL_COLOR, 1, cv2.LINE_AA)
    if with_text:
        cv2.putText(bar, title, (pad, pad + text_height), FONT, scale, LABEL_COLOR, 1, cv2.LINE_AA)
    return bar


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
                     ground_truth: np.ndarray | None = None, colorbar: np.ndarray | None = None) -> np.ndarray:
    """"image | events | prediction | ground truth | color bar" from an RGB image and colored (BGR) depths.

    The events tile is left out when there is no voxel (image-only model), the ground-truth tile
    when there is no ground truth, the color bar (as tall as the tiles) when none is given.
    """
    tiles = [("image", image_to_bgr(image))]
    if voxel is not None:
        tiles.append(("events", colorize_voxel(voxel)))
    tiles.append(("prediction", prediction))
    if ground_truth is not None:
        tiles.append(("ground truth", ground_truth))
    panel = make_panel(tiles)
    if colorbar is None:
        return panel
    if colorbar.shape[0] != panel.shape[0]:
        raise ValueError(f"the color bar is {colorbar.shape[0]} px tall, the tiles {panel.shape[0]} px")
    return np.concatenate([panel, colorbar], axis=1)


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
    than the first are resized to it (a video has one frame size). A video OpenCV cannot write
    (folder refusing writes, no codec) raises ``WriteError`` on construction, before any frame is made.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0) -> None:
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_error(self.path, error) from None
        # The temp name keeps the .mp4 ending: OpenCV picks the container from it.
        self._tmp = temp_path_for(self.path, ".mp4")
        # The frame size only comes with the first frame: a trial video finds a refusal now.
        self._open((16, 16)).release()
        self._tmp.unlink(missing_ok=True)

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        """An OpenCV writer on the temp file, or ``WriteError`` (and no temp file) when it cannot open."""
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*MP4_CODEC), self.fps, size)
        if writer.isOpened():
            return writer
        writer.release()
        self._tmp.unlink(missing_ok=True)
        raise WriteError(errno.EIO, f"cannot write {self.path}: OpenCV cannot open a video writer there ({MP4_CODEC}, "
                         f"{self.fps:g} fps); check that the folder is writable, the frame rate positive and "
                         "OpenCV built with FFmpeg (pip install opencv-python), or write no video",
                         os.fspath(self.path))

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 BGR frame."""
        if self._writer is None:
            self._size = (frame.shape[1], frame.shape[0])
            self._writer = self._open(self._size)
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
        try:
            os.replace(self._tmp, self.path)
        except OSError as error:
            self._tmp.unlink(missing_ok=True)
            raise write_error(self.path, error) from None
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
