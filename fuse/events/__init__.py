"""Event handling: voxel grids and time windows (voxel.py) and the MVSEC recording reader
(mvsec.py); ``fuse.prep.mvsec`` writes the prepared per-frame files from it."""
from fuse.events.mvsec import FrameInfo, MvsecRecording, RecordingError, Sample
from fuse.events.voxel import normalize_voxel, voxel_grid, voxel_grids, window_indices

__all__ = [
    "FrameInfo",
    "MvsecRecording",
    "RecordingError",
    "Sample",
    "normalize_voxel",
    "voxel_grid",
    "voxel_grids",
    "window_indices",
]
