"""Tiny recordings in the MVSEC hdf5 layout (``<seq>_data.hdf5`` + ``<seq>_gt.hdf5``) for tests.

Depth frames come every 50 ms (with jitter), images near each depth frame plus one in
between, events uniformly in time. Particular frames can be given no image within 10 ms or
an empty event window, and a few events sit exactly on window edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

T0 = 1.5e9  # MVSEC timestamps are Unix seconds; large values exercise float64 rounding.


@dataclass
class Recording:
    """What was written, for computing expected outputs independently of the reader."""

    data_path: Path
    gt_path: Path
    events: np.ndarray  # (N, 4) columns x, y, t, p as stored
    images: np.ndarray
    image_ts: np.ndarray
    depths: np.ndarray
    depth_ts: np.ndarray
    height: int
    width: int
    no_image_frames: tuple[int, ...] = field(default_factory=tuple)
    empty_window_frames: tuple[int, ...] = field(default_factory=tuple)

    def window(self, k: int, duration: float = 0.05) -> np.ndarray:
        """Events of depth frame k by brute force, as (t, x, y, p)."""
        t = self.events[:, 2]
        d = self.depth_ts[k]
        rows = self.events[(t >= d - duration) & (t <= d)]
        return rows[:, [2, 0, 1, 3]]

    def nearest_image(self, k: int) -> int:
        return int(np.argmin(np.abs(self.image_ts - self.depth_ts[k])))

    def kept_frames(self) -> list[int]:
        """Frames with an image within 10 ms and a non-empty window, by brute force."""
        return [
            k for k in range(len(self.depth_ts))
            if abs(self.image_ts[self.nearest_image(k)] - self.depth_ts[k]) <= 0.010 and len(self.window(k))
        ]


def write_recording(
    root: Path,
    sequence: str = "seq",
    *,
    num_depth: int = 20,
    height: int = 12,
    width: int = 16,
    events_per_frame: int = 150,
    no_image_frames: tuple[int, ...] = (12,),
    image_offsets: dict[int, float] | None = None,
    empty_window_frames: tuple[int, ...] = (7,),
    edge_frame: int = 3,
    seed: int = 0,
    drop_keys: tuple[str, ...] = (),
) -> Recording:
    """Write ``<root>/<sequence>_data.hdf5`` and ``_gt.hdf5``.

    Frames in ``no_image_frames`` get no image near them; ``image_offsets`` sets the image
    offset of some frames (default: 16 just over, 17 just under 10 ms); frame ``edge_frame``
    gets events exactly at both ends of its window."""
    rng = np.random.default_rng(seed)
    depth_ts = T0 + 0.05 * np.arange(1, num_depth + 1) + rng.uniform(-0.002, 0.002, num_depth)

    near = depth_ts + rng.uniform(-0.008, 0.008, num_depth)
    offsets = {16: 0.0105, 17: -0.0095} if image_offsets is None else image_offsets
    for k, offset in offsets.items():
        near[k] = depth_ts[k] + offset
    between = depth_ts + 0.025
    keep = np.ones(num_depth, bool)
    keep[list(no_image_frames)] = False
    image_ts = np.sort(np.concatenate([near[keep], between]))
    images = rng.integers(0, 256, (len(image_ts), height, width), dtype=np.uint8)

    n = num_depth * events_per_frame
    t = np.sort(rng.uniform(T0, depth_ts[-1] + 0.02, n))
    for k in empty_window_frames:
        t = t[~((t >= depth_ts[k] - 0.05) & (t <= depth_ts[k]))]
    edge = depth_ts[edge_frame]
    t = np.sort(np.concatenate([t, [edge - 0.05, edge, edge]]))
    n = len(t)
    x = rng.integers(0, width, n).astype(np.float64)
    y = rng.integers(0, height, n).astype(np.float64)
    p = rng.choice([-1.0, 1.0], n)
    events = np.stack([x, y, t, p], axis=1)

    depths = rng.uniform(2.0, 80.0, (num_depth, height, width)).astype(np.float32)
    depths[rng.random(depths.shape) < 0.2] = np.nan

    rec = Recording(
        root / f"{sequence}_data.hdf5", root / f"{sequence}_gt.hdf5", events, images, image_ts,
        depths, depth_ts, height, width, tuple(no_image_frames), tuple(empty_window_frames),
    )
    write_files(rec, drop_keys=drop_keys)
    return rec


def write_files(rec: Recording, *, drop_keys: tuple[str, ...] = ()) -> None:
    """(Re)write the two hdf5 files of ``rec``, leaving out ``drop_keys``."""
    data = {
        "davis/left/events": rec.events,
        "davis/left/image_raw": rec.images,
        "davis/left/image_raw_ts": rec.image_ts,
    }
    gt = {
        "davis/left/depth_image_rect": rec.depths,
        "davis/left/depth_image_rect_ts": rec.depth_ts,
    }
    for path, content in ((rec.data_path, data), (rec.gt_path, gt)):
        with h5py.File(path, "w") as f:
            for key, value in content.items():
                if key not in drop_keys:
                    f.create_dataset(key, data=value)
