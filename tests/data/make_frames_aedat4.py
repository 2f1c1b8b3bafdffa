"""Writes ``frames_80x60.aedat4``: a small AEDAT 4.0 file with events and frames, as a DAVIS camera
records them, for the tests of ``fuse.events.aedat4`` and ``infer --events`` with image+event models.

The file is written by iniVation's own writer (dv-processing, not a dependency of the project:
``pip install dv-processing`` to run this) so that the reader is tested on a file made by the
format's maintainers. The tests compare what they read with :func:`events` and :func:`frame`.

    python tests/data/make_frames_aedat4.py tests/data/frames_80x60.aedat4
"""
from __future__ import annotations

import sys

import numpy as np

WIDTH, HEIGHT = 80, 60
T0 = 1_000_000  # us
FRAMES = 4
FRAME_US = 50_000


def events() -> np.ndarray:
    """The file's events: columns t (us), x, y, p (±1), sorted by time."""
    rng = np.random.default_rng(0)
    n = 2000
    t = T0 + np.sort(rng.integers(0, FRAMES * FRAME_US, n))
    return np.stack([t, rng.integers(0, WIDTH, n), rng.integers(0, HEIGHT, n), np.where(rng.random(n) < 0.5, 1, -1)], 1)


def frame(k: int) -> np.ndarray:
    """Frame ``k`` (at ``T0 + k * FRAME_US``): a gray ramp that moves with k."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return ((xx * 3 + yy * 2 + 40 * k) % 256).astype(np.uint8)


def main(path: str) -> None:
    import dv_processing as dv

    config = dv.io.MonoCameraWriter.Config("DAVIS346_fuse_test")
    config.addEventStream((WIDTH, HEIGHT))
    config.addFrameStream((WIDTH, HEIGHT))
    writer = dv.io.MonoCameraWriter(path, config)
    table = events()
    for k in range(FRAMES):  # each frame, then the events up to the next one, as a camera interleaves them
        writer.writeFrame(dv.Frame(T0 + k * FRAME_US, frame(k)))
        store = dv.EventStore()
        for t, x, y, p in table[(table[:, 0] >= T0 + k * FRAME_US) & (table[:, 0] < T0 + (k + 1) * FRAME_US)]:
            store.push_back(int(t), int(x), int(y), bool(p > 0))
        writer.writeEvents(store)
    del writer  # closing writes the file's packet table


if __name__ == "__main__":
    main(sys.argv[1])
