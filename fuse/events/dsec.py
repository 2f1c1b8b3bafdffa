"""DSEC event files (``<seq>/events/{left,right}/events.h5``) behind the streaming :class:`EventReader`.

The published format (uzh-rpg/DSEC ``README.md`` "Data Format" up to commit 8ce1de3, since then
<https://dsec.ifi.uzh.ch/data-format/>, and their ``scripts/utils/eventslicer.py``):

* ``events/{t,x,y,p}``: time in microseconds *relative to* ``t_offset``, column, row, polarity
  in {0, 1}; raw sensor coordinates of the 640x480 camera, neither undistorted nor rectified;
* ``t_offset``: microseconds to add to ``events/t`` to reach the clock of the images, the
  disparity maps and the other camera (absent: 0, as their slicer reads it);
* ``ms_to_idx``: for every millisecond ``ms`` the first event index with ``t >= ms * 1000``
  (so ``t[ms_to_idx[ms] - 1] < ms * 1000``), used here to find window bounds by reading one
  millisecond of timestamps instead of bisecting the whole column;
* the datasets are compressed with Blosc + zstd, an HDF5 filter h5py reads only with the
  optional ``hdf5plugin`` package installed (``pip install hdf5plugin``). A file that needs a
  filter this process lacks is refused with one message saying so; uncompressed files (such as
  the tests' generated ones) need nothing.

Rectification: ``rectify_map.h5`` beside each ``events.h5`` holds ``rectify_map`` (H, W, 2), the
rectified (undistorted) sub-pixel ``(x, y)`` of every raw pixel, ``rectify_map[y, x]``. The
disparity ground truth lives in the rectified frame of the left event camera, so preparation
rectifies (:meth:`DsecEvents.rectify`); a reader opened with ``rectify_map=`` returns rectified
pixels from :meth:`DsecEvents.window` itself (the sub-pixel position truncated, as the voxel grid
bins it, events that land outside the image dropped). ``open_events`` opens files unrectified:
the events as the sensor recorded them.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from fuse.events.readers import EVENT_DTYPE, EventFileError, EventReader, ReaderFormat, register_reader

try:  # registers the Blosc / zstd HDF5 filters DSEC compresses with; optional (module docstring)
    import hdf5plugin  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    hdf5plugin = None

__all__ = ["DSEC_SENSOR_SIZE", "DsecEvents", "read_rectify_map", "is_dsec_events"]

#: (height, width) of DSEC's event cameras (Prophesee Gen3.1, VGA).
DSEC_SENSOR_SIZE = (480, 640)
EVENT_KEYS = ("events/t", "events/x", "events/y", "events/p")
MS_TO_IDX_KEY = "ms_to_idx"
T_OFFSET_KEY = "t_offset"
RECTIFY_KEY = "rectify_map"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CHUNK_CACHE_BYTES = 64 << 20
_INSTALL = "install the optional package hdf5plugin (pip install hdf5plugin) and rerun"


def is_dsec_events(path: Path, head: bytes = b"") -> bool:
    """True for an hdf5 file with DSEC's ``events/t`` and ``ms_to_idx`` (the sniffer of ``open_events``)."""
    if head and not head.startswith(_HDF5_MAGIC):
        return False
    try:
        with h5py.File(path, "r") as handle:
            group = handle.get("events")
            return isinstance(group, h5py.Group) and "t" in group and MS_TO_IDX_KEY in handle
    except (OSError, KeyError, ValueError, TypeError):
        return False


def _missing_filters(dataset: h5py.Dataset) -> list[str]:
    """Names of the HDF5 filters ``dataset`` is stored with that this process cannot decode."""
    plist = dataset.id.get_create_plist()
    missing = []
    for i in range(plist.get_nfilters()):
        code, _flags, _values, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            missing.append(f"{label or 'filter'} (HDF5 filter {code})")
    return missing


def _check_readable(path: Path, dataset: h5py.Dataset) -> None:
    missing = _missing_filters(dataset)
    if missing:
        raise EventFileError(f"{path}: {dataset.name.lstrip('/')} is compressed with {', '.join(missing)}, which "
                             f"h5py cannot decode in this environment (DSEC uses Blosc + zstd); {_INSTALL}")


def _read(path: Path, dataset: h5py.Dataset, selection) -> np.ndarray:
    """Read from hdf5, turning h5py's OSError on damaged files (or missing filters) into one message."""
    try:
        return dataset[selection]
    except OSError as err:
        name = dataset.name.lstrip("/")
        hint = f"; {_INSTALL}" if _missing_filters(dataset) else " (truncated or corrupt file?)"
        raise EventFileError(f"{path}: cannot read {name}: {err}{hint}") from None


def read_rectify_map(path: str | os.PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """``rectify_map`` (H, W, 2) float32 of a DSEC ``rectify_map.h5``, checked for shape and finiteness.

    ``sensor_size`` (H, W), when given, is the raw sensor it must cover.
    """
    path = Path(path)
    if not path.is_file():
        raise EventFileError(f"{path}: DSEC rectify_map.h5 not found; it is part of the sequence's events download "
                             "(events/left/rectify_map.h5 beside events.h5)")
    try:
        with h5py.File(path, "r") as handle:
            node = handle.get(RECTIFY_KEY)
            if not isinstance(node, h5py.Dataset):
                raise EventFileError(f"{path}: no dataset '{RECTIFY_KEY}'; is this DSEC's rectify_map.h5?")
            _check_readable(path, node)
            table = np.asarray(_read(path, node, ()), dtype=np.float32)
    except OSError as err:
        raise EventFileError(f"{path}: cannot open as hdf5 (truncated or corrupt file?): {err}") from None
    if table.ndim != 3 or table.shape[2] != 2:
        raise EventFileError(f"{path}: {RECTIFY_KEY} has shape {table.shape}, expected (H, W, 2)")
    if sensor_size is not None and table.shape[:2] != tuple(sensor_size):
        raise EventFileError(f"{path}: {RECTIFY_KEY} covers {table.shape[1]}x{table.shape[0]} pixels, but the events "
                             f"come from a {sensor_size[1]}x{sensor_size[0]} sensor")
    if not np.isfinite(table).all():
        raise EventFileError(f"{path}: {RECTIFY_KEY} holds NaN or inf")
    return table


class DsecEvents(EventReader):
    """One DSEC ``events.h5`` read by time window through ``ms_to_idx`` (times in microseconds on
    the images' clock, i.e. ``t_offset`` added).

    ``rectify_map``: a ``rectify_map.h5`` path (or the (H, W, 2) table itself) to return rectified
    pixels from :meth:`window`; ``sensor_size`` (H, W): the raw sensor, by default the rectify
    map's size, else DSEC's 480x640.

    >>> with DsecEvents("zurich_city_04_a/events/left/events.h5") as events:   # doctest: +SKIP
    ...     window = events.window(t_us - 50_000, t_us + 1)
    """

    def __init__(self, path: str | os.PathLike, *, rectify_map: str | os.PathLike | np.ndarray | None = None,
                 sensor_size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        table = None
        if rectify_map is not None:
            table = rectify_map if isinstance(rectify_map, np.ndarray) else read_rectify_map(rectify_map, sensor_size)
            sensor_size = sensor_size or tuple(int(v) for v in table.shape[:2])
        self.sensor_size = tuple(int(v) for v in (sensor_size or DSEC_SENSOR_SIZE))
        if table is not None and table.shape != (*self.sensor_size, 2):
            raise EventFileError(f"{self.path}: the rectify map has shape {table.shape}, expected "
                                 f"{(*self.sensor_size, 2)} for this sensor")
        self.rectify_map = None if table is None else np.asarray(table, np.float32)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        if not self.path.is_file():
            raise EventFileError(f"{self.path}: DSEC events file not found")
        try:
            # A chunk cache that holds a few compressed chunks of every column: consecutive windows and
            # the millisecond reads that bound them fall in the same chunks.
            self._file = h5py.File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
        except OSError as err:
            raise EventFileError(f"{self.path}: cannot open as hdf5 (truncated or corrupt file?): {err}") from None
        columns = {}
        for key in EVENT_KEYS:
            node = self._file.get(key)
            if not isinstance(node, h5py.Dataset) or node.ndim != 1:
                raise EventFileError(f"{self.path}: missing 1-D dataset '{key}'; this is not a DSEC events.h5 "
                                     "(events/{t,x,y,p}, ms_to_idx, t_offset)")
            _check_readable(self.path, node)
            columns[key.split("/")[1]] = node
        lengths = {name: node.shape[0] for name, node in columns.items()}
        if len(set(lengths.values())) != 1:
            raise EventFileError(f"{self.path}: events/t, x, y, p differ in length: {lengths}")
        self._t, self._x, self._y, self._p = columns["t"], columns["x"], columns["y"], columns["p"]
        self._n = lengths["t"]
        index = self._file.get(MS_TO_IDX_KEY)
        if not isinstance(index, h5py.Dataset):
            raise EventFileError(f"{self.path}: missing dataset '{MS_TO_IDX_KEY}' (DSEC's millisecond -> event index "
                                 "table); this is not a DSEC events.h5")
        _check_readable(self.path, index)
        self._ms_to_idx = np.asarray(_read(self.path, index, ()), dtype=np.int64).reshape(-1)
        table = self._ms_to_idx
        if (len(table) == 0 or table[0] != 0 or np.any(np.diff(table) < 0) or table[-1] > self._n
                or table.min() < 0):
            raise EventFileError(f"{self.path}: {MS_TO_IDX_KEY} must start at 0 and be non-decreasing indices up to "
                                 f"the {self._n} events (file damaged?)")
        offset = self._file.get(T_OFFSET_KEY)
        self.t_offset = int(np.asarray(_read(self.path, offset, ())).reshape(-1)[0]) if offset is not None else 0

    # ------------------------------------------------------------------ EventReader

    def __len__(self) -> int:
        return self._n

    def time_range(self) -> tuple[int, int]:
        """First and last event time, microseconds on the images' clock."""
        if not self._n:
            raise EventFileError(f"{self.path}: holds no events")
        first, last = int(_read(self.path, self._t, 0)), int(_read(self.path, self._t, self._n - 1))
        return first + self.t_offset, last + self.t_offset

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Events with ``t_start_us <= t < t_end_us`` (:data:`EVENT_DTYPE`); rectified pixels when the
        reader has a rectify map (module docstring)."""
        events = self.raw_window(t_start_us, t_end_us)
        if self.rectify_map is None:
            return events
        xy = self.rectify(events)
        keep = self.inside(xy)
        events = events[keep]
        events["x"] = np.floor(xy[keep, 0])
        events["y"] = np.floor(xy[keep, 1])
        return events

    # ------------------------------------------------------------------ DSEC specifics

    def window_columns(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """``(N, 4)`` float64 ``t`` (seconds), ``x``, ``y``, ``p`` (±1) of the window ``[t_start_us, t_end_us)``,
        with the rectified *sub-pixel* positions when the reader has a rectify map (events landing
        outside the image dropped): the prepared layout's raw windows and the voxel grid's input."""
        events = self.raw_window(t_start_us, t_end_us)
        columns = np.empty((len(events), 4), np.float64)
        columns[:, 0] = events["t"] * 1e-6
        columns[:, 3] = events["p"]
        if self.rectify_map is None:
            columns[:, 1], columns[:, 2] = events["x"], events["y"]
            return columns
        xy = self.rectify(events)
        columns[:, 1:3] = xy
        return columns[self.inside(xy)]

    def raw_window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Events with ``t_start_us <= t < t_end_us`` at the raw (distorted) sensor pixels."""
        return self._window(t_start_us, t_end_us)

    def rectify(self, events: np.ndarray) -> np.ndarray:
        """``(N, 2)`` float32 rectified sub-pixel ``x, y`` of raw events: ``rectify_map[y, x]``."""
        if self.rectify_map is None:
            raise EventFileError(f"{self.path}: opened without a rectify map; pass rectify_map= to rectify")
        return self.rectify_map[events["y"].astype(np.intp), events["x"].astype(np.intp)]

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """Mask of rectified positions that fall on the (rectified) image of the sensor's size."""
        height, width = self.sensor_size
        return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)

    def index(self, t_us: int) -> int:
        """First event index with time ``>= t_us`` (microseconds on the images' clock).

        ``ms_to_idx`` brackets the answer within one millisecond of events: rows before
        ``ms_to_idx[ms]`` are earlier than ``ms * 1000 <= t`` and rows from ``ms_to_idx[ms + 1]`` on
        are not earlier than ``(ms + 1) * 1000 > t``; only the rows between are read.
        """
        relative = int(t_us) - self.t_offset
        if relative <= 0 or not self._n:
            return 0
        ms = relative // 1000
        table = self._ms_to_idx
        start_ms = min(ms, len(table) - 1)
        lo = int(table[start_ms])
        hi = int(table[ms + 1]) if ms + 1 < len(table) else self._n
        times = np.asarray(_read(self.path, self._t, np.s_[lo:hi]), dtype=np.int64)
        if times.size and (np.any(np.diff(times) < 0) or times[0] < start_ms * 1000
                           or (ms + 1 < len(table) and times[-1] >= (ms + 1) * 1000)):
            raise EventFileError(f"{self.path}: {MS_TO_IDX_KEY} does not match events/t around {ms} ms (or the "
                                 "timestamps are not sorted); file damaged?")
        return lo + int(np.searchsorted(times, relative, side="left"))

    def _window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        t_start_us, t_end_us = int(t_start_us), int(t_end_us)
        if t_end_us <= t_start_us:
            return np.empty(0, EVENT_DTYPE)
        first, last = self.index(t_start_us), self.index(t_end_us)
        rows = np.s_[first:last]
        events = np.empty(last - first, EVENT_DTYPE)
        times = np.asarray(_read(self.path, self._t, rows), dtype=np.int64)
        if np.any(np.diff(times) < 0):
            raise EventFileError(f"{self.path}: events/t is not sorted between rows {first} and {last}")
        events["t"] = times + self.t_offset
        x, y = _read(self.path, self._x, rows), _read(self.path, self._y, rows)
        p = np.asarray(_read(self.path, self._p, rows))
        height, width = self.sensor_size
        off = (x >= width) | (y >= height) | (np.asarray(x) < 0) | (np.asarray(y) < 0)
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise EventFileError(f"{self.path}: event {first + i} at x={x[i]}, y={y[i]} is outside the "
                                 f"{width}x{height} sensor")
        bad = (p != 0) & (p != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EventFileError(f"{self.path}: event {first + i} has polarity {p[i]}, expected 0 or 1")
        events["x"], events["y"] = x, y
        events["p"] = np.where(p == 1, 1, -1)
        return events

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


register_reader(ReaderFormat(
    name="dsec",
    description="DSEC events.h5 (events/{t,x,y,p}, ms_to_idx, t_offset)",
    sniff=is_dsec_events,
    suffixes=(".h5",),
    open=DsecEvents,
    requires="hdf5plugin",
))
