"""Plain event files: numpy ``.npy`` and text (``.txt``, ``.csv``) holding columns t, x, y, p.

Conventions (docs/event_files.md):

* ``.npy``: a structured array with fields ``t, x, y, p``, or an ``(N, 4)`` array of columns
  ``t, x, y, p``; integer time stamps are microseconds, floating ones seconds. The file is
  memory-mapped and windows are found by binary search, so large files are never loaded whole.
* text: one event per line, ``t x y p`` separated by spaces or commas, ``#`` comments allowed;
  an optional first line of two integers ``width height`` gives the sensor size (the rpg /
  E2VID text format). Time stamps are seconds if any has a fractional part, else microseconds.
  Text files are parsed whole (they are for small recordings: convert large ones to ``.npy``).
* polarity ``p > 0`` is ON (+1), anything else OFF (-1), so {0, 1} and {-1, +1} both work;
* without a sensor size in the file, it is the largest coordinate + 1.

Time stamps must be sorted; a window that finds them out of order says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fuse.events.readers import EVENT_DTYPE, EventFileError, EventReader, ReaderFormat, register_reader

__all__ = ["ColumnsReader", "open_npy", "open_text"]

# Rows per step when scanning a memory-mapped file for its largest coordinates.
_SCAN_ROWS = 1 << 22


class ColumnsReader(EventReader):
    """Events held as columns (in memory or memory-mapped); ``seconds``: time stamps are seconds, else microseconds."""

    def __init__(self, path: Path, t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, *, seconds: bool,
                 sensor_size: tuple[int, int] | None = None) -> None:
        self.path = path
        self._t, self._x, self._y, self._p = t, x, y, p
        self._seconds = seconds
        self.sensor_size = sensor_size or self._extent()

    def _extent(self) -> tuple[int, int]:
        """(largest y + 1, largest x + 1), scanning the columns in steps."""
        if not len(self):
            raise EventFileError(f"{self.path}: the file holds no events, so it gives no sensor size")
        height = width = 0
        for start in range(0, len(self), _SCAN_ROWS):
            rows = slice(start, start + _SCAN_ROWS)
            width = max(width, int(np.max(self._x[rows])) + 1)
            height = max(height, int(np.max(self._y[rows])) + 1)
        return height, width

    def _us(self, t: np.ndarray) -> np.ndarray:
        return np.round(t * 1e6).astype(np.int64) if self._seconds else t.astype(np.int64)

    def __len__(self) -> int:
        return len(self._t)

    def time_range(self) -> tuple[int, int]:
        if not len(self):
            raise EventFileError(f"{self.path}: the file holds no events")
        first, last = self._us(np.asarray(self._t[[0, -1]]))
        if first > last:
            raise EventFileError(f"{self.path}: time stamps are not sorted (the last is earlier than the first); "
                                 "sort the file by time")
        return int(first), int(last)

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        # Search with one microsecond of slack (seconds do not round-trip exactly), then cut exactly.
        scale = 1e-6 if self._seconds else 1
        low = int(np.searchsorted(self._t, (t_start_us - 1) * scale, side="left"))
        high = int(np.searchsorted(self._t, (t_end_us + 1) * scale, side="right"))
        t = self._us(np.asarray(self._t[low:high]))
        if np.any(np.diff(t) < 0):
            raise EventFileError(f"{self.path}: time stamps are not sorted near event {low}; sort the file by time")
        keep = np.flatnonzero((t >= t_start_us) & (t < t_end_us))
        rows = slice(low + keep[0], low + keep[-1] + 1) if len(keep) else slice(0, 0)
        events = np.empty(len(keep), EVENT_DTYPE)
        events["t"] = t[keep]
        for name, column in (("x", self._x), ("y", self._y)):
            values = np.asarray(column[rows])
            if len(values) and (values.min() < 0 or values.max() >= self.sensor_size[1 if name == "x" else 0]):
                raise EventFileError(f"{self.path}: {name} coordinates outside the {self.sensor_size[1]}x"
                                     f"{self.sensor_size[0]} sensor near event {low}")
            events[name] = values
        events["p"] = np.where(np.asarray(self._p[rows]) > 0, 1, -1)
        return events


def open_npy(path: Path) -> ColumnsReader:
    """A ``.npy`` file, memory-mapped."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise EventFileError(f"{path}: cannot read as .npy ({err}): the file is truncated or corrupt") from None
    if array.dtype.names and {"t", "x", "y", "p"} <= set(array.dtype.names) and array.ndim == 1:
        columns = [array[name] for name in "txyp"]
    elif array.dtype.names is None and array.ndim == 2 and array.shape[1] == 4 and array.dtype.kind in "iuf":
        columns = [array[:, k] for k in range(4)]
    else:
        raise EventFileError(f"{path}: a .npy event file holds a structured array with fields t, x, y, p or an (N, 4) "
                             f"array of columns t, x, y, p; this one is {array.dtype} {array.shape}")
    return ColumnsReader(path, *columns, seconds=columns[0].dtype.kind == "f")


def open_text(path: Path) -> ColumnsReader:
    """A text file, parsed whole (see the module docstring for the layout)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        number, first = next(((k, line) for k, line in enumerate(handle)
                              if line.strip() and not line.lstrip().startswith("#")), (0, ""))
    fields = first.replace(",", " ").split()
    sensor_size = None
    skip = 0
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        sensor_size, skip = (int(fields[1]), int(fields[0])), number + 1
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            table = np.loadtxt((line.replace(",", " ") for line in handle), skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise EventFileError(f"{path}: not an event text file ({err}); write one event per line as 't x y p'") from None
    if table.shape[1] != 4:
        raise EventFileError(f"{path}: {table.shape[1]} columns per line; write one event per line as 't x y p'")
    t = table[:, 0]
    seconds = bool(np.any(t != np.floor(t)))
    return ColumnsReader(path, t, table[:, 1], table[:, 2], table[:, 3], seconds=seconds, sensor_size=sensor_size)


register_reader(ReaderFormat("npy", "numpy t, x, y, p", lambda path, head: head.startswith(b"\x93NUMPY"),
                             (".npy",), open_npy))
register_reader(ReaderFormat("text", "text 't x y p' lines", lambda path, head: False, (".txt", ".csv"), open_text))
