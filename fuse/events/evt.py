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


def _forward_fill(positions: np.ndarray, values: np.ndarray, previous: int, n: int) -> np.ndarray:
    """For each of ``n`` words, the value of the latest word (up to and including it) among
    ``positions`` (sorted), whose values are ``values``; ``previous`` (the state carried in) before
    the first. One pass: the values repeated over the runs of words between those positions."""
    runs = np.diff(positions, prepend=0, append=n)
    return np.repeat(np.concatenate(([previous], values)).astype(values.dtype, copy=False), runs)


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
    at_high = np.flatnonzero(kind == 0x8)
    highs, loops = _unwrap(words[at_high] & 0x0FFFFFFF, state.time_high, state.loops, 1 << 28)
    current = state.time_high + state.loops * (1 << 28) if state.time_high != _UNSET else -1
    high = _forward_fill(at_high, highs, current, len(words))
    cd = np.flatnonzero(kind <= 0x1)  # CD_OFF, CD_ON
    if current < 0:  # no time yet: events before the first time-high word are dropped
        cd = cd[cd > (at_high[0] if len(at_high) else len(words))]
    word = words[cd]
    events = np.empty(len(cd), EVENT_DTYPE)
    events["t"] = (high[cd] << 6) | ((word >> 22) & 0x3F).astype(np.int64)
    events["x"] = (word >> 11) & 0x7FF
    events["y"] = word & 0x7FF
    events["p"] = 2 * kind[cd].astype(np.int8) - 1
    if len(at_high):
        state = Evt2State(int(words[at_high[-1]] & 0x0FFFFFFF), loops)
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
    # time_low_wraps: expelliarmus' reading (its evt3_sample.npy): every time-low value below the previous
    # one adds 4096 us to all later events, also where a time-high word already advanced the time (so such
    # a wrap counts twice); off: the time words as written (Prophesee's format description, evlib).
    # low_steps: such steps so far.
    time_low_wraps: bool = False
    low_steps: int = 0


# EVT 3.0 word types.
_ADDR_Y, _ADDR_X, _VECT_BASE_X, _VECT_12, _VECT_8, _TIME_LOW, _TIME_HIGH = 0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8


def _vector_bases(words: np.ndarray, kind: np.ndarray, state: Evt3State) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                 int, int]:
    """Positions of the chunk's vector words, each one's x base and polarity, and the x base and
    polarity after the chunk. Works on the vector and ``VECT_BASE_X`` words only (few)."""
    at_vector = np.flatnonzero((kind == _VECT_12) | (kind == _VECT_8))
    at_base = np.flatnonzero(kind == _VECT_BASE_X)
    # steps[i]: how far the vectors before vector i moved the base.
    steps = np.concatenate(([0], np.cumsum(np.where(kind[at_vector] == _VECT_12, 12, 8))))
    origin = np.concatenate(([state.base_x], (words[at_base] & 0x7FF) - steps[np.searchsorted(at_vector, at_base)]))
    polarity = np.concatenate(([state.polarity], (words[at_base] >> 11) & 1)).astype(np.int8)
    latest = np.searchsorted(at_base, at_vector)  # 1 + the latest base word before each vector (0: none)
    return at_vector, origin[latest] + steps[:-1], polarity[latest], int(origin[-1] + steps[-1]), int(polarity[-1])


def decode_evt3(words: np.ndarray, state: Evt3State = Evt3State()) -> tuple[np.ndarray, Evt3State]:
    """Events of a chunk of EVT 3.0 words (uint16) and the state after it.

    Every word's time and row are those of the latest words that set them (forward fills over
    the chunk); an ``EVT_ADDR_X`` word is one event at its own x and polarity, a vector one event
    per set bit of its mask at x base + bit, with the x base and polarity of the latest
    ``VECT_BASE_X`` word moved on by 12 / 8 for every vector since. Events stay in stream order.
    """
    n = len(words)
    kind = (words >> 12).astype(np.uint8)
    at_high = np.flatnonzero(kind == _TIME_HIGH)
    highs, loops = _unwrap(words[at_high] & 0xFFF, state.time_high, state.loops, 1 << 12)
    current_high = state.time_high + state.loops * (1 << 12) if state.time_high != _UNSET else -1
    at_low = np.flatnonzero(kind == _TIME_LOW)
    at_y = np.flatnonzero(kind == _ADDR_Y)
    high = _forward_fill(at_high, highs, current_high, n)
    low = _forward_fill(at_low, (words[at_low] & 0xFFF).astype(np.int64), state.time_low, n)
    y = _forward_fill(at_y, (words[at_y] & 0x7FF).astype(np.int32), state.y, n)
    at_vector, bases, polarities, base_after, polarity_after = _vector_bases(words, kind, state)
    steps, low_steps = _low_steps(words, at_low, state)

    # Event words in stream order; in a file's first chunk, those before its first time-high and row words have
    # no time or row and are dropped.
    rows = np.flatnonzero((kind == _ADDR_X) | (kind == _VECT_12) | (kind == _VECT_8))
    starts = [at[0] if len(at) else n for at, unset in ((at_high, current_high < 0), (at_y, state.y == _UNSET))
              if unset]
    if starts:
        rows = rows[rows > max(starts)]
    vector = kind[rows] != _ADDR_X
    which = np.searchsorted(at_vector, rows[vector])  # the kept vectors among the chunk's
    vector_words = words[at_vector[which]]
    masks = np.where(kind[at_vector[which]] == _VECT_12, vector_words & 0xFFF, vector_words & 0xFF).astype("<u2")
    bits = np.unpackbits(masks.view(np.uint8), bitorder="little").reshape(-1, 16)
    counts = np.ones(len(rows), np.int64)
    counts[vector] = bits.sum(axis=1)
    word = np.repeat(rows, counts)
    from_vector = np.repeat(vector, counts)
    single = word[~from_vector]
    vector_row, bit = np.nonzero(bits)  # row by row: the vectors' events in stream order
    events = np.empty(len(word), EVENT_DTYPE)
    events["t"] = ((high[word] << 12) | low[word]) + 4096 * steps[word]
    events["y"] = y[word]
    x = np.empty(len(word), np.int64)
    x[~from_vector] = words[single] & 0x7FF
    x[from_vector] = bases[which][vector_row] + bit
    events["x"] = x
    p = np.empty(len(word), np.int8)
    p[~from_vector] = (words[single] >> 11) & 1
    p[from_vector] = polarities[which][vector_row]
    events["p"] = 2 * p - 1

    if n:
        state = Evt3State(int(words[at_high[-1]] & 0xFFF) if len(at_high) else state.time_high, loops,
                          int(low[-1]), int(y[-1]), base_after, polarity_after, state.time_low_wraps, low_steps)
    return events, state


def _low_steps(words: np.ndarray, at_low: np.ndarray, state: Evt3State) -> tuple[np.ndarray, int]:
    """Per word, the time-low step-backs counted so far (all 0 unless ``state.time_low_wraps``) and
    the count after the chunk."""
    if not state.time_low_wraps:
        return np.zeros(len(words), np.int64), state.low_steps
    lows = (words[at_low] & 0xFFF).astype(np.int64)
    counts = state.low_steps + np.cumsum(lows < np.concatenate(([state.time_low], lows[:-1])))
    steps = _forward_fill(at_low, counts, state.low_steps, len(words))
    return steps, int(counts[-1]) if len(counts) else state.low_steps
