"""Turn MVSEC hdf5 recordings into the per-frame files the MVSEC loader reads.

Layout per sequence (a contract with the dataset code):

    <out>/<seq>/images/000123.png   uint8 grayscale image as in the source
    <out>/<seq>/depths/000123.npy   float32 (H, W) metres, NaN kept
    <out>/<seq>/voxels/000123.npy   float32 (bins, H, W), not normalized
    <out>/<seq>/events/000123.npy   optional float64 (N, 4) window, columns t, x, y, p (p = ±1)
    <out>/<seq>.txt                 one line per kept frame: image, depth and voxel paths
                                    relative to <out>

The number is the depth-frame index in the gt file (FUSE upstream uses 5 digits; this
layout uses 6). Every file is written under a temporary name in its folder and renamed, the
split list last, so an interrupted run leaves only complete files; on a rerun, complete
files are kept and damaged or mismatching ones rewritten. When the input turns out to be
bad (RecordingError), the files this run created are removed again.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import cv2
import numpy as np
from tqdm import tqdm

from fuse.atomic import TEMP_SUFFIX, atomic_write
from fuse.events.mvsec import FrameInfo, MvsecRecording, RecordingError
from fuse.events.voxel import voxel_grid
from fuse.provenance import SAMPLE_PATTERNS, OutputFolder, file_identity

__all__ = ["DEFAULT_SEQUENCES", "ExportSummary", "export_sequence", "split_line"]

DEFAULT_SEQUENCES = ("outdoor_day1", "outdoor_day2", "outdoor_night1", "outdoor_night2", "outdoor_night3")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


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


def split_line(sequence: str, depth_index: int) -> str:
    """Split-list line of one frame: image, depth and voxel paths relative to the output root."""
    name = f"{depth_index:06d}"
    return f"{sequence}/images/{name}.png {sequence}/depths/{name}.npy {sequence}/voxels/{name}.npy"


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
    out = os.fspath(out)
    summary = ExportSummary(sequence)
    created: list[str] = []
    with MvsecRecording.from_root(root, sequence, chunk_size=chunk_size) as rec:
        summary.frames = rec.num_frames
        output = OutputFolder(os.path.join(out, sequence), "process_mvsec_hdf5",
                              {"source": {"data": file_identity(rec.data_path, content=False),
                                          "gt": file_identity(rec.gt_path, content=False)},
                               "num_bins": num_bins}, SAMPLE_PATTERNS, overwrite=overwrite)
        output.check()
        try:
            folders = {kind: os.path.join(out, sequence, kind) for kind in ("images", "depths", "voxels", "events")}
            for kind, folder in folders.items():
                if kind != "events" or save_events:
                    _make_dirs(folder, created)
                    _remove_partials(folder, ".")
            _remove_partials(out, f".{sequence}.txt.")
            if not output.manifest.exists():
                created.append(os.fspath(output.manifest))
            output.start()

            lines = []
            show = None if progress is None else not progress
            with tqdm(rec.frames(), total=rec.num_frames, desc=sequence, unit="frame", disable=show) as bar:
                for info in bar:
                    if not info.kept:
                        summary.skipped[info.skip_reason] += 1
                        continue
                    wrote = _export_frame(rec, info, folders, num_bins, save_events, overwrite, created)
                    summary.written += wrote
                    summary.present += not wrote
                    lines.append(split_line(sequence, info.depth_index) + "\n")

            list_path = os.path.join(out, f"{sequence}.txt")
            text = "".join(lines).encode()
            if overwrite or not _has_content(list_path, text):
                _write_atomic(list_path, lambda f: f.write(text), created)
        except RecordingError:
            _remove_created(created)
            raise
    return summary


def _export_frame(
    rec: MvsecRecording,
    info: FrameInfo,
    folders: dict[str, str],
    num_bins: int,
    save_events: bool,
    overwrite: bool,
    created: list[str],
) -> bool:
    """Write the missing or damaged files of one frame; True if anything was written."""
    name = f"{info.depth_index:06d}"
    h, w = rec.height, rec.width
    image_path = os.path.join(folders["images"], name + ".png")
    depth_path = os.path.join(folders["depths"], name + ".npy")
    voxel_path = os.path.join(folders["voxels"], name + ".npy")
    events_path = os.path.join(folders["events"], name + ".npy")

    need_image = overwrite or not _png_ok(image_path, h, w)
    need_depth = overwrite or not _npy_ok(depth_path, (h, w), np.float32)
    need_voxel = overwrite or not _npy_ok(voxel_path, (num_bins, h, w), np.float32)
    need_events = save_events and (overwrite or not _npy_ok(events_path, (info.num_events, 4), np.float64))

    if need_image:
        ok, png = cv2.imencode(".png", rec.read_image(info.image_index))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode image {info.image_index} of {rec.data_path}")
        _write_atomic(image_path, lambda f: f.write(png.tobytes()), created)
    if need_depth:
        depth = rec.read_depth(info.depth_index)
        _write_atomic(depth_path, lambda f: np.save(f, depth), created)
    if need_voxel or need_events:
        events = rec.read_events(info.event_start, info.event_stop)
        if need_voxel:
            voxel = voxel_grid(events, num_bins, h, w)
            _write_atomic(voxel_path, lambda f: np.save(f, voxel), created)
        if need_events:
            _write_atomic(events_path, lambda f: np.save(f, events), created)
    return need_image or need_depth or need_voxel or need_events


def _write_atomic(path: str, write: Callable[[BinaryIO], object], created: list[str]) -> None:
    """Atomic write (``fuse.atomic``), remembering files this run created so a failure can remove them."""
    existed = os.path.exists(path)
    atomic_write(path, write)
    if not existed:
        created.append(path)


def _make_dirs(folder: str, created: list[str]) -> None:
    """Create ``folder`` and missing parents, remembering them for a rollback."""
    missing = []
    path = os.path.abspath(folder)
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        os.mkdir(path)
        created.append(path)


def _remove_created(created: list[str]) -> None:
    """Undo this run: delete created files, then created folders if they are empty."""
    for path in reversed(created):
        if os.path.isdir(path):
            if not os.listdir(path):
                os.rmdir(path)
        elif os.path.exists(path):
            os.remove(path)
    created.clear()


def _remove_partials(folder: str, prefix: str) -> None:
    """Delete temporary files ``<prefix>*.partial`` left in ``folder`` by an interrupted run."""
    if not os.path.isdir(folder):
        return
    for entry in os.scandir(folder):
        if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
            os.remove(entry.path)


def _has_content(path: str, content: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read() == content
    except FileNotFoundError:
        return False


def _npy_ok(path: str, shape: tuple[int, ...], dtype: type) -> bool:
    """True if ``path`` is a complete .npy file of exactly this shape and dtype."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            read_header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            file_shape, _, file_dtype = read_header(f)
            size = f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
            return file_shape == tuple(shape) and file_dtype == np.dtype(dtype) and os.fstat(f.fileno()).st_size == size
    except (OSError, ValueError):
        return False


def _png_ok(path: str, height: int, width: int) -> bool:
    """True if ``path`` is a whole 8-bit grayscale PNG of this size (header and end chunk)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            f.seek(-len(_PNG_END), os.SEEK_END)
            tail = f.read()
    except OSError:
        return False
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR" or tail != _PNG_END:
        return False
    file_width, file_height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return (file_width, file_height) == (width, height) and head[24] == 8 and head[25] == 0
