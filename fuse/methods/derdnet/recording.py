"""What DERD-Net reads from an MVSEC-format recording besides the events
(``fuse.events.mvsec.MvsecEvents``) and the poses (``fuse.methods.derdnet.poses.read_mvsec_poses``):
the left camera's raw depth maps and the calibration yaml.

The ground truth is MVSEC's *raw* (distorted) left depth, undistorted like the DSIs (spec §6):
``davis/left/depth_image_raw`` + ``_ts`` of ``<name>_gt.hdf5``, which ``fuse.events.mvsec`` does not
read (the FUSE export takes the rectified maps), so this small reader lives here.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from fuse.errors import MissingDataError, RecordingError, UsageError

__all__ = ["RawDepth", "find_calibration"]

DEPTH_KEY = "davis/left/depth_image_raw"
DEPTH_TS_KEY = "davis/left/depth_image_raw_ts"


def _dataset(handle: h5py.File, key: str, what: str) -> h5py.Dataset:
    """``handle[key]`` or a ``RecordingError`` naming the file, the key and what needs it."""
    node = handle.get(key)
    if not isinstance(node, h5py.Dataset):
        raise RecordingError(f"{handle.filename}: missing dataset '{key}'; {what}")
    return node


class RawDepth:
    """MVSEC's raw left depth maps (metres, NaN = no depth) and their timestamps."""

    def __init__(self, handle: h5py.File) -> None:
        what = "DERD-Net's ground truth is the raw left depth (spec §6); pass an MVSEC <sequence>_gt.hdf5 file"
        self.maps = _dataset(handle, DEPTH_KEY, what)
        self.times = _dataset(handle, DEPTH_TS_KEY, what)[()].astype(np.float64).reshape(-1)
        if self.maps.ndim != 3 or len(self.maps) != len(self.times) or len(self.times) == 0:
            raise RecordingError(f"{handle.filename}: {DEPTH_KEY} {self.maps.shape} and {DEPTH_TS_KEY} "
                                 f"{self.times.shape} do not pair up as (K, H, W) maps with K > 0 timestamps")
        if np.any(np.diff(self.times) < 0):
            raise RecordingError(f"{handle.filename}: {DEPTH_TS_KEY} is not sorted")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.maps.shape[1]), int(self.maps.shape[2])

    def nearest(self, t: float) -> tuple[int, float]:
        """Index of the depth map nearest in time to ``t`` (ties: the earlier) and its offset in seconds."""
        right = int(np.searchsorted(self.times, t))
        candidates = [i for i in (right - 1, right) if 0 <= i < len(self.times)]
        index = min(candidates, key=lambda i: (abs(self.times[i] - t), i))
        return index, float(self.times[index] - t)

    def read(self, index: int) -> np.ndarray:
        try:
            return np.asarray(self.maps[index], dtype=np.float32)
        except OSError as error:
            raise RecordingError(f"{self.maps.file.filename}: cannot read {DEPTH_KEY}[{index}] (truncated file?): "
                                 f"{error}") from None


def find_calibration(data_path: Path, given: str | None) -> Path:
    """The calibration yaml: ``given``, else next to the recording ``<name>_calib.yaml`` (the synthetic
    rooms of ``fuse.demo.room``), the one ``camchain*.yaml`` (MVSEC's) or the one ``*.yaml``; none or
    several is a usage error asking for ``--calibration``."""
    if given is not None:
        if not Path(given).is_file():
            raise MissingDataError(f"calibration file {given} not found; pass MVSEC's camchain-imucam-*.yaml")
        return Path(given)
    folder = data_path.parent
    own = data_path.with_name(data_path.name.removesuffix("_data.hdf5") + "_calib.yaml")
    found = [own] if own.is_file() else sorted(folder.glob("camchain*.yaml")) or sorted(folder.glob("*.yaml"))
    if len(found) != 1:
        listed = ", ".join(path.name for path in found) or "none"
        raise UsageError(f"{folder} holds {len(found)} calibration yaml files ({listed}); pass --calibration "
                         "camchain-imucam-<scene>.yaml")
    return found[0]
