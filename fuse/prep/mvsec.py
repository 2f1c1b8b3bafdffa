"""Turn MVSEC hdf5 recordings into the prepared layout (``fuse.data.layout``).

Each sequence gets ``<out>/<seq>/{images,depths,voxels[,events]}/000123.*`` and the split list
``<out>/<seq>.txt``, one line per kept frame. Images are grayscale as in the source, depth is
kept with its NaN, and the number is the depth-frame index in the gt file (FUSE upstream uses 5
digits; this layout uses 6). Every file is written under a temporary name in its folder and
renamed, the split list last, so an interrupted run leaves only complete files; on a rerun,
complete files are kept and damaged or mismatching ones rewritten. When the input turns out to
be bad (RecordingError), the files this run created are removed again.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fuse.atomic import remove_stale_temps, save_npy_atomic
from fuse.data.layout import (FOLDERS, npy_header, png_header, sample_line, sample_paths, sample_stem, save_image,
                              save_split_list, split_list_path, split_list_text)
from fuse.events.mvsec import FrameInfo, MvsecRecording, RecordingError
from fuse.events.voxel import voxel_grid
from fuse.prep.common import Rollback
from fuse.provenance import SAMPLE_PATTERNS, OutputFolder, file_identity

__all__ = ["DEFAULT_SEQUENCES", "ExportSummary", "export_sequence"]

DEFAULT_SEQUENCES = ("outdoor_day1", "outdoor_day2", "outdoor_night1", "outdoor_night2", "outdoor_night3")


@dataclass
class ExportSummary:
    """What one sequence export did, for the final report."""

    sequence: str
    frames: int = 0
    written: int = 0
    present: int = 0
    skipped: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return self.written + self.present

    def __str__(self) -> str:
        text = (
            f"{self.sequence}: {self.frames} depth frames, kept {self.kept} "
            f"({self.written} written, {self.present} already present)"
        )
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f", skipped {sum(self.skipped.values())} ({reasons})"
        return text


def export_sequence(
    root: str | os.PathLike,
    out: str | os.PathLike,
    sequence: str,
    *,
    num_bins: int = 3,
    save_events: bool = False,
    overwrite: bool = False,
    chunk_size: int = 1 << 20,
    progress: bool | None = None,
) -> ExportSummary:
    """Write the files of every kept frame of ``<root>/<sequence>_{data,gt}.hdf5`` under ``out``.

    ``progress=None`` shows a tqdm bar only on a terminal. Raises RecordingError for bad
    input, after removing what this call created.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be positive, got {num_bins}")
    out = Path(out)
    seq_dir = out / sequence
    summary = ExportSummary(sequence)
    rollback = Rollback()
    with MvsecRecording.from_root(root, sequence, chunk_size=chunk_size) as rec:
        summary.frames = rec.num_frames
        output = OutputFolder(seq_dir, "process_mvsec_hdf5",
                              {"source": {"data": file_identity(rec.data_path, content=False),
                                          "gt": file_identity(rec.gt_path, content=False)},
                               "num_bins": num_bins}, SAMPLE_PATTERNS, overwrite=overwrite)
        output.check()
        try:
            for kind in _kinds(save_events):
                folder = seq_dir / FOLDERS[kind]
                rollback.note(folder)
                folder.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(folder)  # left by a run killed mid-write
            remove_stale_temps(out, split_list_path(out, sequence).name)
            rollback.note(output.manifest)
            output.start()

            lines = []
            show = None if progress is None else not progress
            with tqdm(rec.frames(), total=rec.num_frames, desc=sequence, unit="frame", disable=show) as bar:
                for info in bar:
                    if not info.kept:
                        summary.skipped[info.skip_reason] += 1
                        continue
                    wrote = _export_frame(rec, info, seq_dir, num_bins, save_events, overwrite, rollback)
                    summary.written += wrote
                    summary.present += not wrote
                    lines.append(sample_line(sequence, sample_stem(info.depth_index)))

            list_path = split_list_path(out, sequence)
            if overwrite or not _has_content(list_path, split_list_text(lines).encode()):
                rollback.note(list_path)
                save_split_list(list_path, lines)
        except RecordingError:
            rollback.undo()
            raise
    return summary


def _export_frame(
    rec: MvsecRecording,
    info: FrameInfo,
    seq_dir: Path,
    num_bins: int,
    save_events: bool,
    overwrite: bool,
    rollback: Rollback,
) -> bool:
    """Write the missing or damaged files of one frame; True if anything was written."""
    h, w = rec.height, rec.width
    paths = sample_paths(seq_dir, sample_stem(info.depth_index))
    expected = {"image": (h, w, 8, 0),  # 8-bit grayscale PNG
                "depth": ((h, w), np.dtype(np.float32)),
                "voxel": ((num_bins, h, w), np.dtype(np.float32)),
                "events": ((info.num_events, 4), np.dtype(np.float64))}
    needed = [kind for kind in _kinds(save_events) if overwrite or not _is_whole(paths[kind], expected[kind])]
    for kind in needed:
        rollback.note(paths[kind])

    if "image" in needed:
        save_image(paths["image"], rec.read_image(info.image_index))
    if "depth" in needed:
        save_npy_atomic(paths["depth"], rec.read_depth(info.depth_index))
    if "voxel" in needed or "events" in needed:
        events = rec.read_events(info.event_start, info.event_stop)
        if "voxel" in needed:
            save_npy_atomic(paths["voxel"], voxel_grid(events, num_bins, h, w))
        if "events" in needed:
            save_npy_atomic(paths["events"], events)
    return bool(needed)


def _kinds(save_events: bool) -> tuple[str, ...]:
    """The file kinds written per frame: the raw window only with ``save_events``."""
    return ("image", "depth", "voxel") + (("events",) if save_events else ())


def _is_whole(path: Path, header: tuple) -> bool:
    """True if ``path`` is a complete file with this header (PNG: height, width, bit depth, colour
    type; ``.npy``: shape, dtype), so a rerun keeps it."""
    return (png_header(path) if path.suffix == ".png" else npy_header(path)) == header


def _has_content(path: Path, content: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read() == content
    except FileNotFoundError:
        return False
