"""iniVation AEDAT 4.0 files (DV software, DAVIS / DVXplorer cameras), decoded by the ``aedat`` package.

Why ``aedat`` (docs/event_files.md has the measurements): it decodes the LZ4 / zstd-compressed
flatbuffer packets of AEDAT 4.0 in Rust, events and frames, in a 1 MB wheel with numpy as its only
dependency; iniVation's dv-processing reads the same files (and seeks with the file's packet
table) but weighs 56 MB. ``aedat`` decodes packets in file order only, so the reader:

* on first need, decodes the file once and keeps each event packet's position, count and time
  range (the index);
* reads a window by decoding from the start of the file, or, for windows in time order (what
  ``infer`` and the DSI builder ask for), by going on from where the previous window stopped;
  decoded packets not yet behind the windows are kept (those of the previous window, and the
  first ones the index pass decoded), so no packet is decoded twice in a sweep.

The first event stream of the file is read (stereo files: the first camera); frames come from
its first frame stream, if any.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuse.events.readers import (EVENT_DTYPE, KEEP_EVENTS, EventFileError, EventReader, Piece, ReaderFormat,
                                 kept_pieces, register_reader, window_of)

__all__ = ["Aedat4Reader"]

MAGIC = b"#!AER-DAT"


def _decoder(path: Path):
    """A fresh ``aedat.Decoder``; its RuntimeErrors (missing, truncated, not AEDAT 4) become EventFileErrors."""
    try:
        import aedat
    except ImportError:
        raise EventFileError(f"{path}: reading AEDAT 4.0 files needs the optional package aedat: pip install aedat "
                             f"(or pip install 'fuse-depth[cameras]')") from None
    try:
        return aedat.Decoder(str(path))
    except RuntimeError as err:
        raise EventFileError(f"{path}: cannot read as AEDAT 4.0 ({err}): the file is truncated or corrupt; "
                             f"re-export it with iniVation's DV software") from None


@dataclass(frozen=True)
class _Packet:
    """An event packet: its position among all packets of the file, count and time range."""

    ordinal: int
    count: int
    t_min: int
    t_max: int


class Aedat4Reader(EventReader):
    """The events (and frames) of an AEDAT 4.0 file; see the module docstring for how windows are read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            magic = handle.read(16)
        if not magic.startswith(MAGIC):
            raise EventFileError(f"{self.path}: not an AEDAT file (it does not start with '#!AER-DAT'): the file is "
                                 f"corrupt or of another format")
        if not magic.startswith(MAGIC + b"4.0"):
            version = magic[len(MAGIC):].split(b"\r")[0].decode("latin-1", "replace")
            raise EventFileError(f"{self.path}: AEDAT {version} file; fuse reads AEDAT 4.0: convert it with "
                                 f"iniVation's DV software (or dv_processing) to AEDAT 4.0")
        streams = _decoder(self.path).id_to_stream()
        events = [sid for sid, info in sorted(streams.items()) if info["type"] == "events"]
        if not events:
            raise EventFileError(f"{self.path}: the AEDAT 4.0 file holds no event stream")
        self._events_id = events[0]
        self.sensor_size = int(streams[self._events_id]["height"]), int(streams[self._events_id]["width"])
        frames = [sid for sid, info in sorted(streams.items()) if info["type"] == "frame"]
        self._frames_id = frames[0] if frames else None
        self._packets: list[_Packet] | None = None
        self._cursor: tuple[Iterator[dict], int] | None = None  # decoder and the ordinal of its next packet
        self._recent: dict[int, Piece] = {}  # decoded packets kept for the next windows, by ordinal

    def _read(self, decoder) -> Iterator[tuple[int, dict]]:
        """``(ordinal, packet)`` of every packet, with decoding errors as EventFileErrors."""
        ordinal = 0
        while True:
            try:
                packet = next(decoder)
            except StopIteration:
                return
            except RuntimeError as err:
                raise EventFileError(f"{self.path}: AEDAT 4.0 packet {ordinal} cannot be decoded ({err}): the file is "
                                     f"truncated or corrupt; re-export it with iniVation's DV software") from None
            yield ordinal, packet
            ordinal += 1

    def _converted(self, raw: np.ndarray) -> np.ndarray:
        events = np.empty(len(raw), EVENT_DTYPE)
        events["t"] = raw["t"]
        events["x"] = raw["x"]
        events["y"] = raw["y"]
        events["p"] = np.where(raw["on"], 1, -1)
        height, width = self.sensor_size
        if len(events) and (events["x"].max() >= width or events["y"].max() >= height):
            raise EventFileError(f"{self.path}: events outside the {width}x{height} sensor: the file is corrupt")
        return events

    def _index(self) -> list[_Packet]:
        """The event packets; the first :data:`~fuse.events.readers.KEEP_EVENTS` events stay decoded
        for the first windows (so a small file, read whole, is decoded once)."""
        if self._packets is None:
            packets, kept = [], 0
            for ordinal, packet in self._read(_decoder(self.path)):
                if packet["stream_id"] == self._events_id and len(packet["events"]):
                    t = packet["events"]["t"]
                    packets.append(_Packet(ordinal, len(t), int(t.min()), int(t.max())))
                    if kept + len(t) <= KEEP_EVENTS:
                        self._recent[ordinal] = Piece.of(self._converted(packet["events"]))
                        kept += len(t)
            self._packets = packets
        return self._packets

    def __len__(self) -> int:
        return sum(packet.count for packet in self._index())

    def time_range(self) -> tuple[int, int]:
        packets = self._index()
        if not packets:
            raise EventFileError(f"{self.path}: the file holds no events")
        return min(p.t_min for p in packets), max(p.t_max for p in packets)

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        wanted = [p.ordinal for p in self._index() if p.t_min < t_end_us and p.t_max >= t_start_us]
        decoded = {ordinal: self._recent[ordinal] for ordinal in wanted if ordinal in self._recent}
        missing = [ordinal for ordinal in wanted if ordinal not in decoded]
        if missing:
            needed = set(missing)
            if self._cursor is None or self._cursor[1] > missing[0]:
                self._cursor = (self._read(_decoder(self.path)), 0)
            packets, _ = self._cursor
            for ordinal, packet in packets:
                if ordinal in needed:
                    decoded[ordinal] = Piece.of(self._converted(packet["events"]))
                if ordinal == missing[-1]:
                    break
            self._cursor = (packets, missing[-1] + 1)
        self._recent = kept_pieces(self._recent, decoded)
        return window_of([decoded[ordinal] for ordinal in wanted], t_start_us, t_end_us)

    def frames(self) -> Iterator[tuple[int, np.ndarray]] | None:
        if self._frames_id is None:
            return None
        return self._frame_packets()

    def _frame_packets(self) -> Iterator[tuple[int, np.ndarray]]:
        for _, packet in self._read(_decoder(self.path)):
            if packet["stream_id"] == self._frames_id and "frame" in packet:
                frame = packet["frame"]
                pixels = frame["pixels"]
                yield int(frame["t"]), pixels[..., :3] if pixels.ndim == 3 else pixels

    def close(self) -> None:
        self._cursor = None
        self._recent = {}


register_reader(ReaderFormat("aedat4", "iniVation AEDAT 4.0", lambda path, head: head.startswith(MAGIC),
                             (".aedat4",), Aedat4Reader, requires="aedat"))
