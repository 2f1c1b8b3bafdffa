"""Prophesee event files: RAW (EVT 2.0 / EVT 3.0 word streams) and DAT (fixed 8-byte records).

Both start with text header lines beginning with ``%``. A RAW header names its encoding
(``% evt 3.0``, or ``% format EVT3;height=720;width=1280`` in newer files) and may give the sensor
size (``% geometry 1280x720`` or in ``format``); files of older firmware name only the camera
plugin (``% plugin_name hal_plugin_gen41_evk3``), whose sensor size :data:`SENSOR_SIZES` knows.
A DAT header may give ``% Width`` and ``% Height`` (else the sensor size is the largest
coordinate + 1); two bytes (event type, event size 8) follow the
header, then records of uint32 time (us) and uint32 x (bits 0-13), y (bits 14-27), polarity
(bit 28).

Why two ways of reading: a RAW file is a stateful word stream, so windows need an index. The
first call that needs it decodes the file once in chunks of :data:`CHUNK_WORDS` words
(``fuse.events.evt``) and keeps, per chunk, the decoder state at its start and its time range;
a window then decodes only the chunks it overlaps. A DAT file is a plain record array: it is
memory-mapped and windows are found by binary search on the time column, reading nothing else.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fuse.events.evt import Evt2State, Evt3State, decode_evt2, decode_evt3
from fuse.events.readers import (EVENT_DTYPE, KEEP_EVENTS, EventFileError, EventReader, Piece, ReaderFormat,
                                 kept_pieces, register_reader, window_of)

__all__ = ["RawReader", "DatReader", "SENSOR_SIZES", "read_header"]

# Words decoded per chunk of a RAW file: 1-2 MiB of words, up to ~5e5 events, under ~100 MB of temporaries.
CHUNK_WORDS = 1 << 19

# (height, width) of Prophesee sensors, by the camera-plugin name's sensor part (older RAW headers
# name no geometry). Longest names first, so "gen41" is not taken for "gen4".
SENSOR_SIZES = {
    "imx636": (720, 1280), "imx646": (720, 1280), "gen41": (720, 1280), "gen4": (720, 1280),
    "gen31": (480, 640), "gen3": (480, 640), "imx8": (480, 640), "genx320": (320, 320), "gen1": (240, 304),
    "atis": (240, 304),
}


def read_header(head: bytes) -> tuple[dict[str, str], int]:
    """The ``%`` header lines of a Prophesee file as ``{key (lower case): value}`` and where the data start.

    The header ends at a ``% end`` line (newer files) or at the first line not starting with
    ``%``. Only ``head`` (the file's first bytes) is looked at, so a header longer than it counts
    as no header.
    """
    fields: dict[str, str] = {}
    position = 0
    while head.startswith(b"%", position):
        end = head.find(b"\n", position)
        if end < 0:
            return {}, 0
        line = head[position + 1:end].decode("latin-1").strip()
        position = end + 1
        if line.lower() == "end":
            break
        key, _, value = line.partition(" ")
        fields[key.lower()] = value.strip()
    return fields, position


def _raw_encoding(fields: dict[str, str]) -> str | None:
    """'evt2', 'evt3', another named encoding (lower case), or None when the header names none."""
    if "evt" in fields:
        return "evt" + fields["evt"].replace(".0", "").replace(".", "")
    if "format" in fields:
        return fields["format"].split(";")[0].strip().lower()
    return None


def _raw_sensor_size(path: Path, fields: dict[str, str]) -> tuple[int, int]:
    geometry = re.fullmatch(r"(\d+)x(\d+)", fields.get("geometry", ""))
    if geometry:
        return int(geometry[2]), int(geometry[1])
    options = dict(part.split("=", 1) for part in fields.get("format", "").split(";")[1:] if "=" in part)
    if "height" in options and "width" in options:
        return int(options["height"]), int(options["width"])
    plugin = fields.get("plugin_name", "").lower()
    for name, size in SENSOR_SIZES.items():
        if name in plugin:
            return size
    raise EventFileError(
        f"{path}: the RAW header gives no sensor size (no '% geometry' line, no known plugin_name); add a "
        f"line such as '% geometry 1280x720' at the top of the file")


@dataclass(frozen=True)
class _Encoding:
    word: str
    decode: Callable
    initial: object


_ENCODINGS = {
    "evt2": _Encoding("<u4", decode_evt2, Evt2State()),
    "evt3": _Encoding("<u2", decode_evt3, Evt3State()),
}


@dataclass(frozen=True)
class _Chunk:
    """One chunk of a RAW file: the decoder state at its start, its events' count and time range."""

    state: object
    count: int
    t_min: int
    t_max: int


class RawReader(EventReader):
    """A Prophesee RAW file (EVT 2.0 or EVT 3.0), read by time window through a chunk index.

    ``time_low_wraps`` (EVT 3.0 only, default off) reads a time-low field that steps back without a
    time-high word as a wrap (+4096 us from there on), as expelliarmus does (its ``evt3_sample.npy``);
    off, the time words are taken as written, as Prophesee's format description and evlib do."""

    def __init__(self, path: Path, time_low_wraps: bool = False) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            head = handle.read(1 << 16)
        fields, self._data_start = read_header(head)
        encoding = _raw_encoding(fields)
        if encoding not in _ENCODINGS:
            named = f"encoding '{encoding}'" if encoding else "no encoding ('% evt 3.0' or '% format EVT3')"
            raise EventFileError(
                f"{self.path}: the RAW header names {named}; fuse reads EVT 2.0 and EVT 3.0 RAW files: convert "
                f"it with Metavision's metavision_file_to_dat or re-record in EVT 3.0")
        self.encoding = encoding
        self._format = _ENCODINGS[encoding]
        self._initial = (replace(self._format.initial, time_low_wraps=time_low_wraps) if encoding == "evt3"
                         else self._format.initial)
        self.sensor_size = _raw_sensor_size(self.path, fields)
        word_bytes = np.dtype(self._format.word).itemsize
        self._words = np.memmap(self.path, dtype=self._format.word, mode="r", offset=self._data_start,
                                shape=((self.path.stat().st_size - self._data_start) // word_bytes,))
        self._chunks: list[_Chunk] | None = None
        self._recent: dict[int, Piece] = {}  # decoded chunks kept for the next windows

    def _decode(self, chunk: int, state: object) -> tuple[np.ndarray, object]:
        start = chunk * CHUNK_WORDS
        events, state = self._format.decode(np.asarray(self._words[start:start + CHUNK_WORDS]), state)
        height, width = self.sensor_size
        outside = (events["x"] >= width) | (events["y"] >= height)
        if outside.any():
            bad = events[np.flatnonzero(outside)[0]]
            raise EventFileError(
                f"{self.path}: event at x={bad['x']}, y={bad['y']} outside the {width}x{height} sensor near byte "
                f"{self._data_start + start * self._words.itemsize}: the file is corrupt or not "
                f"{self.encoding.upper()}; re-export it from the camera software")
        return events, state

    def _decoded(self, chunks: list[int]) -> list[Piece]:
        """The given chunks decoded; kept ones are reused (consecutive windows share chunks)."""
        index = self._index()
        decoded = {k: self._recent[k] if k in self._recent else Piece.of(self._decode(k, index[k].state)[0])
                   for k in chunks}
        self._recent = kept_pieces(self._recent, decoded)
        return [decoded[k] for k in chunks]

    def _index(self) -> list[_Chunk]:
        """Decode the file once, chunk by chunk, keeping each chunk's start state and time range; the
        first :data:`~fuse.events.readers.KEEP_EVENTS` events stay decoded for the first window (so a
        small file, read whole, is decoded once)."""
        if self._chunks is None:
            chunks, state, kept = [], self._initial, 0
            for k in range((len(self._words) + CHUNK_WORDS - 1) // CHUNK_WORDS):
                events, next_state = self._decode(k, state)
                piece = Piece.of(events)
                t_min, t_max = (int(piece.times.min()), int(piece.times.max())) if len(events) else (0, -1)
                chunks.append(_Chunk(state, len(events), t_min, t_max))
                state = next_state
                if kept + len(events) <= KEEP_EVENTS:
                    self._recent[k] = piece
                    kept += len(events)
            self._chunks = chunks
        return self._chunks

    def __len__(self) -> int:
        return sum(chunk.count for chunk in self._index())

    def time_range(self) -> tuple[int, int]:
        chunks = [chunk for chunk in self._index() if chunk.count]
        if not chunks:
            raise EventFileError(f"{self.path}: the file holds no events")
        return min(c.t_min for c in chunks), max(c.t_max for c in chunks)

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        wanted = [k for k, chunk in enumerate(self._index())
                  if chunk.count and chunk.t_min < t_end_us and chunk.t_max >= t_start_us]
        return window_of(self._decoded(wanted), t_start_us, t_end_us)

    def close(self) -> None:
        self._words = np.empty(0, self._format.word)
        self._recent = {}


# DAT records: uint32 time (us), uint32 x (bits 0-13) | y (bits 14-27) | polarity (bit 28).
_DAT_RECORD = np.dtype([("t", "<u4"), ("data", "<u4")])
# Records per step when scanning a file for its largest coordinates.
_SCAN_RECORDS = 1 << 22


class DatReader(EventReader):
    """A Prophesee DAT file: memory-mapped records, windows by binary search on time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            head = handle.read(1 << 16)
        fields, start = read_header(head)
        if len(head) < start + 2:
            raise EventFileError(f"{self.path}: the DAT file ends inside its header: the file is truncated")
        event_type, event_size = head[start], head[start + 1]
        if event_size != _DAT_RECORD.itemsize:
            raise EventFileError(
                f"{self.path}: DAT events of {event_size} bytes (type {event_type}); fuse reads 8-byte "
                f"change-detection events: export CD events to DAT with Metavision")
        size = self.path.stat().st_size - start - 2
        self._records = np.memmap(self.path, dtype=_DAT_RECORD, mode="r", offset=start + 2,
                                  shape=(size // _DAT_RECORD.itemsize,))
        if "height" in fields and "width" in fields:
            self.sensor_size = int(fields["height"]), int(fields["width"])
        else:
            self.sensor_size = self._extent()

    def _extent(self) -> tuple[int, int]:
        """(largest y + 1, largest x + 1): the sensor size of files whose header gives none (Gen1
        ATIS recordings, files written by expelliarmus), one pass over the data column in steps."""
        if not len(self):
            raise EventFileError(f"{self.path}: the DAT file holds no events and its header gives no sensor size")
        height = width = 0
        for start in range(0, len(self), _SCAN_RECORDS):
            data = np.asarray(self._records["data"][start:start + _SCAN_RECORDS])
            width = max(width, int((data & 0x3FFF).max()) + 1)
            height = max(height, int(((data >> 14) & 0x3FFF).max()) + 1)
        return height, width

    def __len__(self) -> int:
        return len(self._records)

    def time_range(self) -> tuple[int, int]:
        if not len(self):
            raise EventFileError(f"{self.path}: the file holds no events")
        return int(self._records["t"][0]), int(self._records["t"][-1])

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        times = self._records["t"]
        low = int(np.searchsorted(times, max(t_start_us, 0), side="left"))
        high = int(np.searchsorted(times, max(t_end_us, 0), side="left"))
        rows = np.asarray(self._records[low:high])
        if np.any(np.diff(rows["t"].astype(np.int64)) < 0):
            raise EventFileError(f"{self.path}: time stamps are not sorted near event {low}: the file is corrupt")
        events = np.empty(len(rows), EVENT_DTYPE)
        events["t"] = rows["t"]
        events["x"] = rows["data"] & 0x3FFF
        events["y"] = (rows["data"] >> 14) & 0x3FFF
        events["p"] = np.where((rows["data"] >> 28) & 1, 1, -1)
        height, width = self.sensor_size
        outside = (events["x"] >= width) | (events["y"] >= height)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise EventFileError(f"{self.path}: event {low + i} at x={events['x'][i]}, y={events['y'][i]} outside the "
                                 f"{width}x{height} sensor: the file is corrupt or the header's size is wrong")
        return events

    def close(self) -> None:
        self._records = np.empty(0, _DAT_RECORD)


register_reader(ReaderFormat(
    "prophesee_raw", "Prophesee RAW EVT 2.0 / 3.0", lambda path, head: _raw_encoding(read_header(head)[0]) is not None,
    (".raw",), RawReader))
register_reader(ReaderFormat(
    "prophesee_dat", "Prophesee DAT",
    lambda path, head: (path.suffix.lower() == ".dat" and head.startswith(b"%")
                        and _raw_encoding(read_header(head)[0]) is None),
    (".dat",), DatReader))
