"""Vectorized decoders of Prophesee's EVT 2.0 and EVT 3.0 word streams (the data of RAW files).

Why hand-written: the maintained libraries that read RAW files either decode EVT 3.0 time stamps
wrongly on a real Gen4.1 file (expelliarmus 1.1.12 takes every backward step of the 12-bit
time-low field for a wrap of the time-high field and adds 4096 us) or decode the whole file into
a dataframe for every read (evlib 0.13, with ~700 MB of dependencies); neither can resume at a
point of the file, which reading by time window needs. docs/event_files.md has the comparison.

Both decoders take one chunk of words and the decoder state left by the previous chunk, and
return the chunk's events (:data:`~fuse.events.readers.EVENT_DTYPE`) and the state after it, so a
file can be decoded chunk by chunk from any chunk boundary whose state was recorded.

Formats (Prophesee's published word layouts):

* EVT 2.0, little-endian 32-bit words, type in bits 28-31. ``CD_OFF`` (0x0) / ``CD_ON`` (0x1):
  time stamp bits 0-5 in bits 22-27, x in bits 11-21, y in bits 0-10. ``EV_TIME_HIGH`` (0x8):
  time stamp bits 6-33 in bits 0-27. Other types (triggers, ``OTHERS``, ``CONTINUED``) carry no
  change-detection event and are skipped.
* EVT 3.0, little-endian 16-bit words, type in bits 12-15. ``EVT_ADDR_Y`` (0x0): y in bits 0-10;
  ``EVT_ADDR_X`` (0x2): one event at x (bits 0-10), polarity bit 11; ``VECT_BASE_X`` (0x3): x base
  (bits 0-10) and polarity (bit 11) of the vectors that follow; ``VECT_12`` (0x4) / ``VECT_8``
  (0x5): a 12- / 8-bit mask of events at x base + bit, after which the base moves on by 12 / 8;
  ``EVT_TIME_LOW`` (0x6) / ``EVT_TIME_HIGH`` (0x8): time stamp bits 0-11 / 12-23. Time stamps are
  24-bit and wrap every 16.8 s; a time-high value that drops by more than half its range
  counts as a wrap.

Events before the first time-high word (and, for EVT 3.0, before the first y address) have no
defined time or row and are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fuse.events.readers import EVENT_DTYPE

__all__ = ["Evt2State", "Evt3State", "decode_evt2", "decode_evt3"]

_UNSET = -1


def _forward_fill(present: np.ndarray, values: np.ndarray, previous: int) -> np.ndarray:
    """For every word, the value at the latest word (up to and including it) where ``present``
    holds; ``previous`` (the state carried in) before the first such word."""
    last = np.maximum.accumulate(np.where(present, np.arange(len(present)), -1))
    return np.where(last >= 0, values[np.maximum(last, 0)], previous)


def _unwrap(raw: np.ndarray, previous: int, loops: int, period: int) -> tuple[np.ndarray, int]:
    """Time-high values plus ``period`` for each wrap (a drop by more than half the period), given
    the last value and wrap count before them; returns the unwrapped values and the new wrap count."""
    if not len(raw):
        return raw.astype(np.int64), loops
    steps = np.diff(raw.astype(np.int64), prepend=raw[0] if previous == _UNSET else previous)
    count = loops + np.cumsum(steps < -period // 2)
    return raw.astype(np.int64) + count * period, int(count[-1])


@dataclass(frozen=True)
class Evt2State:
    """What an EVT 2.0 decoder carries between chunks: the last time-high field and its wrap count."""

    time_high: int = _UNSET
    loops: int = 0


def decode_evt2(words: np.ndarray, state: Evt2State = Evt2State()) -> tuple[np.ndarray, Evt2State]:
    """Events of a chunk of EVT 2.0 words (uint32) and the state after it."""
    kind = words >> 28
    is_high = kind == 0x8
    highs, loops = _unwrap(words[is_high] & 0x0FFFFFFF, state.time_high, state.loops, 1 << 28)
    filled = np.full(len(words), -1, np.int64)
    filled[is_high] = highs
    current = state.time_high + state.loops * (1 << 28) if state.time_high != _UNSET else -1
    high = _forward_fill(is_high, filled, current)
    cd = np.flatnonzero(((kind == 0x0) | (kind == 0x1)) & (high >= 0))
    word = words[cd]
    events = np.empty(len(cd), EVENT_DTYPE)
    events["t"] = (high[cd] << 6) | ((word >> 22) & 0x3F).astype(np.int64)
    events["x"] = (word >> 11) & 0x7FF
    events["y"] = word & 0x7FF
    events["p"] = np.where(kind[cd] == 0x1, 1, -1)
    if is_high.any():
        state = Evt2State(int(words[is_high][-1] & 0x0FFFFFFF), loops)
    return events, state


@dataclass(frozen=True)
class Evt3State:
    """What an EVT 3.0 decoder carries between chunks: time fields (and wrap count), the row, and
    the x base and polarity of the vectors (the base already moved past earlier vectors)."""

    time_high: int = _UNSET
    loops: int = 0
    time_low: int = 0
    y: int = _UNSET
    base_x: int = 0
    polarity: int = 0


# EVT 3.0 word types.
_ADDR_Y, _ADDR_X, _VECT_BASE_X, _VECT_12, _VECT_8, _TIME_LOW, _TIME_HIGH = 0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8


def decode_evt3(words: np.ndarray, state: Evt3State = Evt3State()) -> tuple[np.ndarray, Evt3State]:
    """Events of a chunk of EVT 3.0 words (uint16) and the state after it.

    Every word's time, row, x base and polarity are the values of the latest word that set them
    (forward fills); each event word becomes a 16-bit mask (``EVT_ADDR_X``: bit 0 at its own x,
    vectors: their bits at x base + bit), so the set bits, word by word, are the events in stream
    order.
    """
    n = len(words)
    kind = (words >> 12).astype(np.uint8)
    payload = (words & 0x7FF).astype(np.int32)
    is_high = kind == _TIME_HIGH
    highs, loops = _unwrap(words[is_high] & 0xFFF, state.time_high, state.loops, 1 << 12)
    values = np.zeros(n, np.int64)
    values[is_high] = highs
    current_high = state.time_high + state.loops * (1 << 12) if state.time_high != _UNSET else -1
    high = _forward_fill(is_high, values, current_high)
    low = _forward_fill(kind == _TIME_LOW, (words & 0xFFF).astype(np.int32), state.time_low)
    y = _forward_fill(kind == _ADDR_Y, payload, state.y)

    is_base = kind == _VECT_BASE_X
    polarity = _forward_fill(is_base, ((words >> 11) & 1).astype(np.int8), state.polarity)
    # The x base of a vector: the last VECT_BASE_X value plus 12 / 8 for every vector since then.
    is_v12, is_v8 = kind == _VECT_12, kind == _VECT_8
    step = (is_v12 * 12 + is_v8 * 8).astype(np.int32)
    before = np.cumsum(step, dtype=np.int32) - step  # steps of the words before each word
    last_base = np.maximum.accumulate(np.where(is_base, np.arange(n, dtype=np.int32), -1))
    at_base = np.maximum(last_base, 0)
    base = np.where(last_base >= 0, payload[at_base] - before[at_base], state.base_x) + before

    is_single = kind == _ADDR_X
    mask = np.where(is_single, 1, np.where(is_v12, words & 0xFFF, np.where(is_v8, words & 0xFF, 0)))
    mask = np.where((high >= 0) & (y >= 0), mask, 0).astype("<u2")
    bits = np.unpackbits(mask.view(np.uint8), bitorder="little")  # 16 per word, in stream order
    word, bit = np.divmod(np.flatnonzero(bits), 16)
    single = is_single[word]
    events = np.empty(len(word), EVENT_DTYPE)
    events["t"] = (high[word] << 12) | low[word]
    events["x"] = np.where(single, payload[word], base[word] + bit)
    events["y"] = y[word]
    events["p"] = np.where(np.where(single, (words[word] >> 11) & 1, polarity[word]) == 1, 1, -1)

    if n:
        new_high = int(words[is_high][-1] & 0xFFF) if is_high.any() else state.time_high
        state = Evt3State(new_high, loops, int(low[-1]), int(y[-1]), int(base[-1] + step[-1]), int(polarity[-1]))
    return events, state
