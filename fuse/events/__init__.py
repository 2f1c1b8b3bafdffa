"""Event handling: voxel grids and time windows (voxel.py), the MVSEC recording reader
(mvsec.py; ``fuse.prep.mvsec`` writes the prepared per-frame files from it) and event files of
real cameras behind one streaming interface (readers.py: ``open_events``, ``read_events``)."""
from fuse.events.mvsec import FrameInfo, MvsecRecording, RecordingError, Sample
from fuse.events.readers import EVENT_DTYPE, EventFileError, EventReader, open_events, read_events
from fuse.events.voxel import normalize_voxel, voxel_grid, voxel_grids, window_indices

__all__ = [
    "EVENT_DTYPE",
    "EventFileError",
    "EventReader",
    "FrameInfo",
    "MvsecRecording",
    "RecordingError",
    "Sample",
    "normalize_voxel",
    "open_events",
    "read_events",
    "voxel_grid",
    "voxel_grids",
    "window_indices",
]
