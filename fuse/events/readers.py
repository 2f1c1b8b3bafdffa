"""Event files of real cameras behind one streaming interface.

Why one interface: the voxel grid, DERD-Net's DSI builder and ``python -m fuse infer`` need time
windows of events, whatever camera or file format recorded them. Each format has a reader class
(:class:`EventReader`) registered with :func:`register_reader`; :func:`open_events` picks the
reader by the file's first bytes (magic numbers, headers) or else its suffix.

Conventions, the same for every format:

* events are a structured array of :data:`EVENT_DTYPE`: ``t`` int64 microseconds (on the
  file's own clock, not shifted to start at 0), ``x``, ``y`` uint16 pixel column and row,
  ``p`` int8 polarity in {-1, +1} (+1 = brightness increase);
* ``sensor_size`` is ``(height, width)``;
* :meth:`EventReader.window` returns the events with ``t_start_us <= t < t_end_us`` in time
  order (file order among equal times), reading only what the window needs for large files.

:func:`as_columns` turns events into the ``(N, 4)`` float64 ``t, x, y, p`` columns (t in seconds)
the voxel grid and the MVSEC reader use.

Adding a format: a module ``fuse/events/<format>.py`` defines an :class:`EventReader` subclass
and calls :func:`register_reader` at import; :func:`open_events` imports every module of
``fuse.events`` before dispatching, so nothing else names the format.
"""
from __future__ import annotations

import abc
import importlib
import math
import os
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from fuse.errors import RecordingError

__all__ = ["EVENT_DTYPE", "EventFileError", "EventReader", "ReaderFormat", "register_reader", "reader_formats",
           "open_events", "read_events", "as_columns", "empty_events", "KEEP_EVENTS", "Piece", "kept_pieces",
           "window_of"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])

# Bytes read from the start of a file for sniffing: enough for every magic number and header line.
SNIFF_BYTES = 4096


class EventFileError(RecordingError):
    """An event file that is missing, of an unknown format, or corrupt; the message names the file and the fix.

    A ``RecordingError`` (so a ``FuseError``: the command line prints one line and exits with 2)."""


_Reader = TypeVar("_Reader", bound="EventReader")


class EventReader(abc.ABC):
    """One event file opened for reading by time window.

    Subclasses set ``path`` and ``sensor_size`` (height, width) when opened and implement
    :meth:`time_range`, :meth:`window`, ``__len__`` and, if the format can hold them,
    :meth:`frames`. Errors a user can fix are :class:`EventFileError` s naming the file.
    """

    path: Path
    sensor_size: tuple[int, int]

    @abc.abstractmethod
    def time_range(self) -> tuple[int, int]:
        """First and last event time in microseconds; raises EventFileError for a file without events."""

    @abc.abstractmethod
    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Events (:data:`EVENT_DTYPE`) with ``t_start_us <= t < t_end_us``, in time order."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of events in the file."""

    @property
    def count(self) -> int:
        return len(self)

    def between(self, start_s: float, stop_s: float) -> np.ndarray:
        """Rows ``t`` (seconds), ``x, y, p`` (float64, :func:`as_columns`) with ``start_s <= t <= stop_s``.

        Why: this is the ``EventSource`` of DERD-Net's DSI builder (``fuse.methods.derdnet.dsi``),
        which works in seconds with both ends inclusive, so any event file can feed it."""
        columns = as_columns(self.window(math.floor(start_s * 1e6), math.floor(stop_s * 1e6) + 1))
        return columns[(columns[:, 0] >= start_s) & (columns[:, 0] <= stop_s)]

    def frames(self) -> Iterator[tuple[int, np.ndarray]] | None:
        """``(t_us, image)`` pairs (uint8, H×W gray or H×W×3 RGB) in time order, or None when the file
        holds no frames."""
        return None

    def close(self) -> None:
        """Release the file; nothing by default."""

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        height, width = self.sensor_size
        return f"{type(self).__name__}({str(self.path)!r}, {width}x{height})"


@dataclass(frozen=True)
class ReaderFormat:
    """A registered file format.

    ``sniff(path, head)`` says whether the file whose first :data:`SNIFF_BYTES` bytes are ``head``
    is of this format (the path is there for formats that need more, e.g. hdf5 keys); ``suffixes``
    (lower case, with the dot) are the fallback when no sniffer claims a file; ``open`` makes the
    reader (and says, with an EventFileError, when an optional package it needs is missing).
    ``requires`` names that package, for the list of formats an unknown file's message gives.
    """

    name: str
    description: str
    sniff: Callable[[Path, bytes], bool]
    suffixes: tuple[str, ...]
    open: Callable[[Path], EventReader]
    requires: str | None = None


_FORMATS: dict[str, ReaderFormat] = {}


def register_reader(fmt: ReaderFormat) -> ReaderFormat:
    """Add a format; a later registration of the same name replaces the earlier one."""
    _FORMATS[fmt.name] = fmt
    return fmt


def reader_formats() -> list[ReaderFormat]:
    """The registered formats, with the built-in readers loaded."""
    _load_builtin_readers()
    return list(_FORMATS.values())


def _load_builtin_readers() -> None:
    """Import every module of ``fuse.events`` once: a format's module registers its reader on
    import, so adding a format (``fuse/events/<format>.py``) edits no other file."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import fuse.events

    for module in pkgutil.iter_modules(fuse.events.__path__):
        importlib.import_module(f"fuse.events.{module.name}")


_loaded = False


def _known_formats() -> str:
    return ", ".join(f"{fmt.description} ({' '.join(fmt.suffixes)}{', needs ' + fmt.requires if fmt.requires else ''})"
                     for fmt in _FORMATS.values())


def detect_format(path: str | os.PathLike) -> ReaderFormat:
    """The format of the file at ``path``: a sniffer that claims its first bytes, else its suffix."""
    path = Path(path)
    _load_builtin_readers()
    if not path.is_file():
        raise EventFileError(f"{path}: event file not found")
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as err:
        raise EventFileError(f"{path}: cannot read: {err.strerror}") from None
    for fmt in _FORMATS.values():
        if fmt.sniff(path, head):
            return fmt
    suffix = path.suffix.lower()
    for fmt in _FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    raise EventFileError(
        f"{path}: not an event file of a known format; convert it to one of: {_known_formats()}")


def open_events(path: str | os.PathLike) -> EventReader:
    """Open an event file of any registered format for reading by time window."""
    return detect_format(path).open(Path(path))


def read_events(path: str | os.PathLike) -> np.ndarray:
    """All events of a (small) file as one :data:`EVENT_DTYPE` array in time order.

    Loads the whole file: for large recordings use :func:`open_events` and windows.
    """
    with open_events(path) as reader:
        if not len(reader):
            return empty_events()
        first, last = reader.time_range()
        return reader.window(first, last + 1)


def empty_events() -> np.ndarray:
    return np.empty(0, EVENT_DTYPE)


# Events a reader's index pass keeps decoded for the first window (about 40 MB with their times).
KEEP_EVENTS = 1 << 21


@dataclass(frozen=True)
class Piece:
    """A decoded piece of a file (a chunk, a packet) as readers keep it between windows: its events,
    their times as a contiguous array (binary search on the strided field of a packed record array
    would copy it on every call) and whether they are in time order."""

    events: np.ndarray
    times: np.ndarray
    ordered: bool

    @classmethod
    def of(cls, events: np.ndarray) -> "Piece":
        times = np.ascontiguousarray(events["t"])
        return cls(events, times, bool(np.all(times[1:] >= times[:-1])))


def kept_pieces(recent: dict[int, Piece], window: dict[int, Piece]) -> dict[int, Piece]:
    """What a reader keeps decoded after a window: the window's pieces and the kept ones after them
    (windows come in time order, so those are what the next windows read); earlier ones go."""
    if not window:
        return recent
    first = min(window)
    return {k: piece for k, piece in sorted({**recent, **window}.items()) if k >= first}


def window_of(parts: list[Piece], t_start_us: int, t_end_us: int) -> np.ndarray:
    """The events of ``parts`` (consecutive decoded pieces of a file) with ``t_start_us <= t < t_end_us``,
    in time order (file order among equal times).

    For readers that decode a file in pieces. Why not boolean masks, ``np.concatenate`` and ``argsort``
    throughout: on the packed 13-byte records of :data:`EVENT_DTYPE` those copy field by field,
    several times slower than slicing ordered pieces and joining them as raw records."""
    pieces = []
    for part in parts:
        if part.ordered:
            pieces.append(part.events[np.searchsorted(part.times, t_start_us):np.searchsorted(part.times, t_end_us)])
        else:
            pieces.append(part.events[(part.times >= t_start_us) & (part.times < t_end_us)])
    if not pieces:
        return empty_events()
    raw = (np.void, EVENT_DTYPE.itemsize)
    joined = np.concatenate([piece.view(raw) for piece in pieces]).view(EVENT_DTYPE)
    t = joined["t"]
    return joined if np.all(t[1:] >= t[:-1]) else joined[np.argsort(t, kind="stable")]


def as_columns(events: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float64 columns ``t`` (seconds), ``x``, ``y``, ``p`` (±1): the voxel grid's input."""
    columns = np.empty((len(events), 4), np.float64)
    columns[:, 0] = events["t"] * 1e-6
    columns[:, 1] = events["x"]
    columns[:, 2] = events["y"]
    columns[:, 3] = events["p"]
    return columns
