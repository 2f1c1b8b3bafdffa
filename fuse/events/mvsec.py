"""Streaming reader for MVSEC recordings (``<seq>_data.hdf5`` + ``<seq>_gt.hdf5``, spec §7).

Real recordings hold 10^8+ events, so the events dataset is never loaded whole: window
bounds are found by bisecting over the timestamps at chunk boundaries and searching inside
one chunk, and only the rows of each window are read. Every event row that is read is
checked (finite, sorted timestamps; coordinates on the sensor; polarity in {-1, 0, 1}).

Frame selection follows FUSE's ``dataset/mvsec/process_mvsec_hdf5.py``: for every depth
frame of ``davis/left/depth_image_rect``

* the image is the one nearest in time (on a tie the earlier one); the frame is skipped
  when it is more than 10 ms away;
* the event window holds the events with ``t_depth - 0.05 <= t <= t_depth`` (both ends
  inclusive); the frame is skipped when it is empty.

Upstream walks the image timestamps greedily, which on duplicated image timestamps can stop
before the true nearest image; here the nearest image is always found.

:class:`MvsecEvents` reads either camera's events (``davis/left/events`` or
``davis/right/events``) by time window, the same way, for DERD-Net's DSIs.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from fuse.errors import RecordingError

__all__ = ["RecordingError", "FrameInfo", "Sample", "MvsecRecording", "MvsecEvents", "recording_files",
           "recording_paths", "EVENTS_KEY", "RIGHT_EVENTS_KEY", "IMAGES_KEY", "IMAGE_TS_KEY", "DEPTH_KEY",
           "DEPTH_TS_KEY"]

EVENTS_KEY = "davis/left/events"
RIGHT_EVENTS_KEY = "davis/right/events"
IMAGES_KEY = "davis/left/image_raw"
IMAGE_TS_KEY = "davis/left/image_raw_ts"
DEPTH_KEY = "davis/left/depth_image_rect"
DEPTH_TS_KEY = "davis/left/depth_image_rect_ts"

# Column order of the events dataset in MVSEC files.
_X, _Y, _T, _P = 0, 1, 2, 3
# The two files of a recording: <name>_data.hdf5 (events, images) and <name>_gt.hdf5 (depth).
_DATA_ENDING, _GT_ENDING = "_data.hdf5", "_gt.hdf5"


def recording_files(folder: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """The data and ground-truth files that make the MVSEC recording ``name`` in ``folder``."""
    return Path(folder, name + _DATA_ENDING), Path(folder, name + _GT_ENDING)


def recording_paths(recording: str | os.PathLike) -> tuple[Path, Path]:
    """``DIR/NAME``, or the path of either of its files, -> the recording's data and ground-truth files."""
    text = os.fspath(recording)
    for ending in (_DATA_ENDING, _GT_ENDING):
        text = text.removesuffix(ending)
    return recording_files(*os.path.split(text))


@dataclass(frozen=True)
class FrameInfo:
    """Selection for one depth frame: its image, its event rows, or why it is skipped."""

    depth_index: int
    depth_ts: float
    image_index: int
    image_ts: float
    event_start: int
    event_stop: int
    skip_reason: str | None = None

    @property
    def kept(self) -> bool:
        return self.skip_reason is None

    @property
    def num_events(self) -> int:
        return self.event_stop - self.event_start


@dataclass(frozen=True)
class Sample:
    """One kept depth frame with its data: image (H, W) uint8, depth (H, W) float32 metres
    (NaN = no depth), events (N, 4) float64 columns t, x, y, p with p in {-1, +1}."""

    info: FrameInfo
    image: np.ndarray
    depth: np.ndarray
    events: np.ndarray


class _ChunkedTimes:
    """``searchsorted`` over one column of a sorted on-disk dataset, reading one chunk at a time.

    The value at every ``chunk_size``-th row is read once (N / chunk_size numbers); a search
    bisects those, then loads and searches a single chunk. The two most recent chunks are
    cached because consecutive windows start and end in neighbouring chunks.
    """

    def __init__(self, dataset: h5py.Dataset, column: int, chunk_size: int, path: str, name: str) -> None:
        self._ds = dataset
        self._name = name
        self._col = column
        self._size = chunk_size
        self._path = path
        self._n = dataset.shape[0]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bounds = _read(path, dataset, np.s_[0 : self._n : chunk_size, column]).astype(np.float64)
        _check_times(self._bounds, path, name, step=chunk_size)

    def searchsorted(self, value: float, side: str) -> int:
        """First row whose time is ``>= value`` (side 'left') or ``> value`` (side 'right')."""
        chunk = int(np.searchsorted(self._bounds, value, side=side)) - 1
        if chunk < 0:
            return 0
        return chunk * self._size + int(np.searchsorted(self._chunk(chunk), value, side=side))

    def _chunk(self, k: int) -> np.ndarray:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        start = k * self._size
        stop = min(start + self._size, self._n)
        times = _read(self._path, self._ds, np.s_[start:stop, self._col]).astype(np.float64)
        _check_times(times, self._path, self._name, first_row=start)
        if k + 1 < len(self._bounds) and times[-1] > self._bounds[k + 1]:
            raise RecordingError(
                f"{self._path}: timestamps in {self._name} are not sorted (row {stop} is earlier than row {stop - 1})"
            )
        self._cache[k] = times
        if len(self._cache) > 2:
            self._cache.popitem(last=False)
        return times


def _read(path: str, dataset: h5py.Dataset, selection: tuple | slice | int) -> np.ndarray:
    """Read from hdf5, turning h5py's OSError on damaged files into a RecordingError."""
    try:
        return dataset[selection]
    except OSError as err:
        name = dataset.name.lstrip("/")
        raise RecordingError(f"{path}: cannot read {name} (truncated or corrupt file?): {err}") from None


def _check_times(times: np.ndarray, path: str, what: str, first_row: int = 0, step: int = 1) -> None:
    """Timestamps must be finite and non-decreasing; ``times[i]`` is row ``first_row + i * step``."""
    if not np.all(np.isfinite(times)):
        row = first_row + step * int(np.flatnonzero(~np.isfinite(times))[0])
        raise RecordingError(f"{path}: non-finite timestamp in {what} at row {row}")
    decreasing = np.flatnonzero(np.diff(times) < 0)
    if decreasing.size:
        row = first_row + step * int(decreasing[0])
        raise RecordingError(
            f"{path}: timestamps in {what} are not sorted (row {row + step} is earlier than row {row})"
        )


def _nearest(sorted_times: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the nearest entry for each query; ties go to the earlier entry (as upstream)."""
    if len(sorted_times) < 2:
        return np.full(len(queries), len(sorted_times) - 1, dtype=np.intp)
    right = np.clip(np.searchsorted(sorted_times, queries, side="left"), 1, len(sorted_times) - 1)
    left = right - 1
    closer_right = np.abs(sorted_times[right] - queries) < np.abs(sorted_times[left] - queries)
    return np.where(closer_right, right, left)


class MvsecRecording:
    """One MVSEC sequence opened for streaming: frames() to select, load() to read data.

    >>> with MvsecRecording.from_root(root, "outdoor_day1") as rec:   # doctest: +SKIP
    ...     for sample in rec.samples():
    ...         ...
    """

    def __init__(
        self,
        data_path: str | os.PathLike,
        gt_path: str | os.PathLike,
        *,
        chunk_size: int = 1 << 20,
        window_s: float = 0.05,
        max_image_offset_ms: float = 10.0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.data_path = os.fspath(data_path)
        self.gt_path = os.fspath(gt_path)
        self.window_s = window_s
        self.max_image_offset_ms = max_image_offset_ms
        self._files: list[h5py.File] = []
        try:
            self._open(chunk_size)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_root(cls, root: str | os.PathLike, sequence: str, **kwargs) -> "MvsecRecording":
        """Open the recording ``sequence`` of folder ``root`` (:func:`recording_files`)."""
        return cls(*recording_files(root, sequence), **kwargs)

    def _open(self, chunk_size: int) -> None:
        data = self._open_file(self.data_path, "data")
        gt = self._open_file(self.gt_path, "ground-truth")
        self._events = self._dataset(data, self.data_path, EVENTS_KEY, "data")
        self._images = self._dataset(data, self.data_path, IMAGES_KEY, "data")
        image_ts = self._dataset(data, self.data_path, IMAGE_TS_KEY, "data")
        self._depths = self._dataset(gt, self.gt_path, DEPTH_KEY, "ground-truth")
        depth_ts = self._dataset(gt, self.gt_path, DEPTH_TS_KEY, "ground-truth")

        if self._events.ndim != 2 or self._events.shape[1] != 4:
            raise RecordingError(
                f"{self.data_path}: {EVENTS_KEY} has shape {self._events.shape}, expected (N, 4) columns x, y, t, p"
            )
        if self._images.ndim != 3 or self._images.dtype != np.uint8:
            raise RecordingError(
                f"{self.data_path}: {IMAGES_KEY} is {self._images.dtype} {self._images.shape}, expected uint8 (M, H, W)"
            )
        self.height, self.width = (int(v) for v in self._images.shape[1:])
        if self._depths.ndim != 3 or tuple(self._depths.shape[1:]) != (self.height, self.width):
            raise RecordingError(
                f"{self.gt_path}: {DEPTH_KEY} has shape {self._depths.shape}, "
                f"expected (K, {self.height}, {self.width}) like the images"
            )
        self.image_ts = _read(self.data_path, image_ts, ()).astype(np.float64).reshape(-1)
        self.depth_ts = _read(self.gt_path, depth_ts, ()).astype(np.float64).reshape(-1)
        if len(self.image_ts) != len(self._images):
            raise RecordingError(
                f"{self.data_path}: {len(self._images)} images but {len(self.image_ts)} entries in {IMAGE_TS_KEY}"
            )
        if len(self.depth_ts) != len(self._depths):
            raise RecordingError(
                f"{self.gt_path}: {len(self._depths)} depth maps but {len(self.depth_ts)} entries in {DEPTH_TS_KEY}"
            )
        _check_times(self.image_ts, self.data_path, IMAGE_TS_KEY)
        _check_times(self.depth_ts, self.gt_path, DEPTH_TS_KEY)
        self._times = _ChunkedTimes(self._events, _T, chunk_size, self.data_path, EVENTS_KEY)

    def _open_file(self, path: str, kind: str) -> h5py.File:
        if not os.path.isfile(path):
            raise RecordingError(f"{path}: MVSEC {kind} file not found")
        try:
            handle = h5py.File(path, "r")
        except OSError as err:
            raise RecordingError(f"{path}: cannot open as hdf5 (truncated or corrupt file?): {err}") from None
        self._files.append(handle)
        return handle

    @staticmethod
    def _dataset(handle: h5py.File, path: str, key: str, kind: str) -> h5py.Dataset:
        try:
            node = handle.get(key)
        except (OSError, KeyError) as err:
            raise RecordingError(f"{path}: cannot read '{key}' (truncated or corrupt file?): {err}") from None
        if not isinstance(node, h5py.Dataset):
            raise RecordingError(f"{path}: missing dataset '{key}'; this may not be an MVSEC {kind} file")
        return node

    @property
    def num_frames(self) -> int:
        """Number of depth frames (kept or not)."""
        return len(self.depth_ts)

    @property
    def num_events(self) -> int:
        return int(self._events.shape[0])

    def frames(self) -> Iterator[FrameInfo]:
        """Selection for every depth frame in order, without reading images or depth maps."""
        nearest = _nearest(self.image_ts, self.depth_ts)
        for k, (depth_time, image_index) in enumerate(zip(self.depth_ts, nearest)):
            depth_time = float(depth_time)
            start = self._times.searchsorted(depth_time - self.window_s, "left")
            stop = max(start, self._times.searchsorted(depth_time, "right"))
            image_time = float(self.image_ts[image_index]) if image_index >= 0 else float("nan")
            reason = None
            if image_index < 0 or abs(depth_time - image_time) * 1000 > self.max_image_offset_ms:
                reason = f"no image within {self.max_image_offset_ms:g} ms"
            elif stop == start:
                reason = f"no events in the {self.window_s * 1000:g} ms window"
            yield FrameInfo(k, depth_time, int(image_index), image_time, start, stop, reason)

    def samples(self) -> Iterator[Sample]:
        """Data of every kept frame, in depth-frame order."""
        for info in self.frames():
            if info.kept:
                yield self.load(info)

    def load(self, info: FrameInfo) -> Sample:
        return Sample(info, self.read_image(info.image_index), self.read_depth(info.depth_index),
                      self.read_events(info.event_start, info.event_stop))

    def read_image(self, index: int) -> np.ndarray:
        return _read(self.data_path, self._images, index)

    def read_depth(self, index: int) -> np.ndarray:
        return _read(self.gt_path, self._depths, index).astype(np.float32, copy=False)

    def read_events(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as float64 ``(t, x, y, p)`` with p in {-1, +1}, after validation."""
        raw = _read(self.data_path, self._events, np.s_[start:stop])
        events = raw[:, [_T, _X, _Y, _P]].astype(np.float64, copy=False)
        _check_times(events[:, 0], self.data_path, EVENTS_KEY, first_row=start)
        off_sensor = ~np.all((events[:, 1:3] >= 0) & (events[:, 1:3] < (self.width, self.height)), axis=1)
        if off_sensor.any():
            i = int(np.flatnonzero(off_sensor)[0])
            raise RecordingError(
                f"{self.data_path}: event {start + i} at x={events[i, 1]}, y={events[i, 2]} "
                f"is outside the {self.width}x{self.height} sensor"
            )
        p = events[:, 3]
        bad_polarity = (p != 1) & (p != -1) & (p != 0)
        if bad_polarity.any():
            i = int(np.flatnonzero(bad_polarity)[0])
            raise RecordingError(f"{self.data_path}: event {start + i} has polarity {p[i]}, expected -1/+1 (or 0/1)")
        p[p == 0] = -1.0
        return events

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()

    def __enter__(self) -> "MvsecRecording":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MvsecEvents:
    """One DAVIS camera's events in an MVSEC data file, read one time window at a time.

    Why: DERD-Net's DSIs need both cameras' events in 1 s windows of recordings with 10^8+ events
    (``fuse.methods.derdnet.dsi.EventSource``). Windows are found as :class:`MvsecRecording` finds
    them (bisection over the timestamps at chunk boundaries, then one chunk), and only their rows
    are read. Timestamps of the rows read are checked; coordinates are checked by whoever knows
    the sensor (the DSI builder checks them against the calibration). The camera's poses are
    ``fuse.methods.derdnet.poses.read_mvsec_poses`` (``davis/left/pose`` + ``pose_ts``).

    >>> with MvsecEvents(data_path, "right") as right:   # doctest: +SKIP
    ...     window = right.between(t0 + 10.0, t0 + 11.0)
    """

    def __init__(self, data_path: str | os.PathLike, camera: str = "left", *, chunk_size: int = 1 << 20) -> None:
        if camera not in ("left", "right"):
            raise ValueError(f"camera must be 'left' or 'right', got {camera!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.data_path = os.fspath(data_path)
        self.key = RIGHT_EVENTS_KEY if camera == "right" else EVENTS_KEY
        self._file: h5py.File | None = None
        try:
            self._open(chunk_size)
        except BaseException:
            self.close()
            raise

    def _open(self, chunk_size: int) -> None:
        if not os.path.isfile(self.data_path):
            raise RecordingError(f"{self.data_path}: MVSEC data file not found")
        try:
            self._file = h5py.File(self.data_path, "r")
        except OSError as err:
            raise RecordingError(f"{self.data_path}: cannot open as hdf5 (truncated or corrupt file?): {err}") from None
        if self.key == RIGHT_EVENTS_KEY and self.key not in self._file:
            raise RecordingError(f"recording {self.data_path} has no {self.key}: stereo DSIs need the right camera; "
                                 "use mono")
        self._events = MvsecRecording._dataset(self._file, self.data_path, self.key, "data")
        if self._events.ndim != 2 or self._events.shape[1] != 4:
            raise RecordingError(
                f"{self.data_path}: {self.key} has shape {self._events.shape}, expected (N, 4) columns x, y, t, p"
            )
        self._times = _ChunkedTimes(self._events, _T, chunk_size, self.data_path, self.key)

    def __len__(self) -> int:
        return int(self._events.shape[0])

    @property
    def first_time(self) -> float:
        """Timestamp of the first event: for the left camera, DERD-Net's time origin t0 (spec §2.2)."""
        if not len(self):
            raise RecordingError(f"{self.data_path}: {self.key} holds no events")
        return float(_read(self.data_path, self._events, (0, _T)))

    def between(self, start: float, stop: float) -> np.ndarray:
        """Rows ``(t, x, y, p)`` float64 with ``start <= t <= stop``, polarity as stored."""
        first = self._times.searchsorted(start, "left")
        last = max(first, self._times.searchsorted(stop, "right"))
        rows = _read(self.data_path, self._events, np.s_[first:last])
        events = rows[:, [_T, _X, _Y, _P]].astype(np.float64, copy=False)
        _check_times(events[:, 0], self.data_path, self.key, first_row=first)
        return events

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "MvsecEvents":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
