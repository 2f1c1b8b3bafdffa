"""Helpers shared by the preparation scripts (``scripts/process_*.py``, ``scripts/change_bins.py``).

They write the processed layout every loader reads::

    <out>/<seq>/images/000123.png   uint8 image
    <out>/<seq>/depths/000123.npy   float32 (H, W) metres, NaN = no depth
    <out>/<seq>/voxels/000123.npy   float32 (bins, H, W), not normalized
    <out>/<seq>/events/000123.npy   optional float64 (N, 4) t, x, y, p with p in {-1, +1}
    <out>/<seq>.txt                 "<seq>/images/… <seq>/depths/… <seq>/voxels/…" per sample

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so an interrupted run never leaves a truncated file under a final name.
"""
from __future__ import annotations

import argparse
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fuse.atomic import remove_stale_temps, save_npy_atomic, write_bytes_atomic, write_text_atomic
from fuse.cli import run_command
from fuse.cli.ranges import non_negative_float, positive_int
from fuse.events import voxel_grid
from fuse.data import dataset
from fuse.errors import PrepError
from fuse.provenance import SAMPLE_PATTERNS, OutputFolder, files_identity


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    parser.add_argument("--debug", action="store_true", help="show the traceback of input errors")


def add_split_dataset_arguments(parser: argparse.ArgumentParser, root_help: str, splits: Sequence[str]) -> None:
    """Options shared by the converters of split data sets (DENSE, EventScape), plus the common ones."""
    parser.add_argument("--root", type=Path, required=True, help=root_help)
    parser.add_argument("--out", type=Path, required=True, help="output folder of the processed layout")
    parser.add_argument("--splits", nargs="+", choices=tuple(splits), help="splits to convert (default: every one present)")
    parser.add_argument("--numbins", type=positive_int, default=3, help="voxel bins (default 3, what FUSE's encoder takes)")
    parser.add_argument(
        "--match",
        choices=("auto", "timestamps", "index"),
        default="auto",
        help="pair event windows with frames by timestamps.txt or by file index (auto: timestamps when present)",
    )
    parser.add_argument("--sync-tol", type=non_negative_float, default=1e-5, help="timestamp pairing tolerance, in file units")
    parser.add_argument("--save-events", action="store_true", help="also store each raw window as events/<frame>.npy")
    add_common_arguments(parser)


def run_script(
    parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], argv: list[str] | None
) -> int:
    """Parse ``argv`` and call ``run`` through ``fuse.cli.run_command`` (bad input: ``error: …``, 2)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage; hand back its code
        return int(exc.code or 0)
    return run_command(run, args)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Atomically write ``array`` as ``.npy``."""
    save_npy_atomic(path, array)


def save_png(path: Path, image: np.ndarray) -> None:
    """Atomically write a uint8 image given as H×W (gray) or H×W×3 RGB."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise PrepError(f"PNG encoding failed for {path}")
    write_bytes_atomic(path, buffer.tobytes())


def save_text(path: Path, lines: Iterable[str]) -> None:
    """Atomically write lines, each terminated by a newline."""
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))


def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """The dataset's ``.npy`` reader, reporting unreadable files as ``PrepError``."""
    return dataset.load_npy(path, PrepError, mmap_mode)


def npy_shape(path: Path) -> tuple[int, ...]:
    """Shape stored in a ``.npy`` header, without reading the data."""
    return tuple(load_npy(path, mmap_mode="r").shape)


def png_complete(path: Path) -> bool:
    """True if the file ends with a PNG's closing IEND chunk (a truncated PNG does not)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < len(_PNG_END):
            return False
        handle.seek(-len(_PNG_END), os.SEEK_END)
        return handle.read() == _PNG_END


def load_rgb(path: Path) -> np.ndarray:
    """uint8 H×W×3 RGB from an 8-bit PNG (alpha dropped)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PrepError(f"cannot decode image (corrupt or truncated?): {path}")
    if image.dtype != np.uint8:
        raise PrepError(f"expected an 8-bit image, got {image.dtype}: {path}")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise PrepError(f"expected an RGB image, got shape {image.shape}: {path}")


def check_depth(depth: np.ndarray, shape: tuple[int, int], path: Path) -> np.ndarray:
    """float32 H×W depth of the image's size."""
    if depth.shape != shape or not np.issubdtype(depth.dtype, np.floating):
        raise PrepError(f"depth must be a float array of shape {shape}, got {depth.dtype} {depth.shape}: {path}")
    return depth.astype(np.float32, copy=False)


def standardize_events(events: np.ndarray, height: int, width: int, source: Path) -> np.ndarray:
    """float64 (N, 4) t, x, y, p sorted by t, with polarity 0 mapped to -1 (spec §6).

    Rejects non-finite values, pixels outside the sensor and polarities other than
    {0, 1} / {-1, +1}, naming ``source`` in the error.
    """
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] != 4:
        raise PrepError(f"events must be an (N, 4) array t, x, y, p, got shape {events.shape}: {source}")
    events = events.astype(np.float64, copy=True)
    if not np.isfinite(events).all():
        raise PrepError(f"events contain NaN or inf: {source}")
    xs, ys, ps = events[:, 1], events[:, 2], events[:, 3]
    if len(events) and (xs.min() < 0 or xs.max() >= width or ys.min() < 0 or ys.max() >= height):
        raise PrepError(
            f"event pixel outside the {width}x{height} sensor "
            f"(x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}]): {source}"
        )
    if not np.isin(ps, (-1.0, 0.0, 1.0)).all():
        raise PrepError(f"event polarity must be 0/1 or -1/+1: {source}")
    ps[ps == 0] = -1.0
    if len(events) > 1 and np.any(np.diff(events[:, 0]) < 0):
        events = events[np.argsort(events[:, 0], kind="stable")]
    return events


def events_to_voxel(events: np.ndarray, num_bins: int, height: int, width: int) -> np.ndarray:
    """float32 (bins, H, W) voxel grid; an empty window gives an all-zero grid."""
    if len(events) == 0:
        return np.zeros((num_bins, height, width), dtype=np.float32)
    return np.asarray(voxel_grid(events, num_bins, height, width), dtype=np.float32)


def read_timestamps(path: Path) -> np.ndarray:
    """Timestamps of a ``timestamps.txt`` (lines ``index time``): row i belongs to file index i.

    This positional reading is how E2Depth's and RAM-Net's loaders use these files.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise PrepError(f"cannot parse timestamps (expected lines 'index time'): {path}: {exc}") from exc
    if table.size == 0:
        raise PrepError(f"timestamps file is empty: {path}")
    if table.shape[1] < 2:
        raise PrepError(f"timestamps need two columns 'index time': {path}")
    return table[:, 1]


def match_to_frames(event_ts: np.ndarray, frame_ts: np.ndarray, tol: float) -> dict[int, int]:
    """Map each event-window index to the frame index with the nearest timestamp within ``tol``.

    E2Depth / RAM-Net pair an event tensor with the first frame whose timestamp is >= the
    tensor's and require the two to coincide; nearest-within-tolerance is the same pairing
    without depending on float round-off.
    """
    if len(frame_ts) == 0:
        return {}
    order = np.argsort(frame_ts, kind="stable")
    ordered = frame_ts[order]
    after = np.searchsorted(ordered, event_ts)
    before = np.clip(after - 1, 0, len(ordered) - 1)
    after = np.clip(after, 0, len(ordered) - 1)
    closer_before = np.abs(ordered[before] - event_ts) < np.abs(ordered[after] - event_ts)
    nearest = np.where(closer_before, before, after)
    within = np.abs(ordered[nearest] - event_ts) <= tol
    return {int(i): int(order[nearest[i]]) for i in np.flatnonzero(within)}


@dataclass(frozen=True)
class SourceSample:
    """One frame of a source data set: its index and the files the sample is built from."""

    frame: int
    image: Path
    depth: Path
    events: Path


def indexed_files(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    """Files of ``folder`` whose name matches ``pattern``, keyed by the integer its last group captures."""
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if not match:
            continue
        index = int(match.groups()[-1])
        if index in files:
            raise PrepError(f"two files with frame index {index} in {folder}: {files[index].name}, {path.name}")
        files[index] = path
    return files


def pair_windows(
    frames: dict[int, Path],
    depths: dict[int, Path],
    windows: dict[int, Path],
    event_stamps: Path,
    depth_stamps: Path,
    match: str,
    tol: float,
) -> tuple[list[SourceSample], int]:
    """Pair event windows with (RGB, depth) frames; returns samples sorted by frame and the unpaired count.

    ``match="timestamps"`` pairs window i with the depth frame of the same timestamp (the RGB
    frame shares the depth frame's index, as in E2Depth and RAM-Net); ``"index"`` pairs equal
    file indices; ``"auto"`` uses timestamps when both timestamp files exist.
    """
    use_stamps = match == "timestamps" or (match == "auto" and event_stamps.is_file() and depth_stamps.is_file())
    if use_stamps:
        for stamps in (event_stamps, depth_stamps):
            if not stamps.is_file():
                raise PrepError(f"pairing by timestamps needs {stamps}")
        event_ts, depth_ts = read_timestamps(event_stamps), read_timestamps(depth_stamps)
        for stamps, times, files in ((event_stamps, event_ts, windows), (depth_stamps, depth_ts, depths)):
            unstamped = [path.name for index, path in sorted(files.items()) if index >= len(times)]
            if unstamped:
                raise PrepError(f"{stamps} has {len(times)} row(s) but {len(unstamped)} file(s) have none (first: "
                                f"{unstamped[0]}; row i is the time of file index i): cut short, or another "
                                "sequence's file?")
        pairs = match_to_frames(event_ts, depth_ts, tol)
    else:
        pairs = {index: index for index in windows}

    samples: dict[int, SourceSample] = {}
    for window, path in windows.items():
        frame = pairs.get(window)
        if frame is None or frame not in frames or frame not in depths:
            continue
        if frame in samples:
            raise PrepError(f"event windows {samples[frame].events.name} and {path.name} both pair with frame {frame}")
        samples[frame] = SourceSample(frame, frames[frame], depths[frame], path)
    return [samples[k] for k in sorted(samples)], len(windows) - len(samples)


def sample_stem(index: int) -> str:
    """Output file stem of a frame index (``000123``)."""
    return f"{index:06d}"


def sample_line(seq: str, stem: str) -> str:
    """Split-list line of one sample, relative to the folder holding ``<seq>``."""
    return f"{seq}/images/{stem}.png {seq}/depths/{stem}.npy {seq}/voxels/{stem}.npy"


def sample_paths(seq_dir: Path, stem: str) -> dict[str, Path]:
    return {
        "image": seq_dir / "images" / f"{stem}.png",
        "depth": seq_dir / "depths" / f"{stem}.npy",
        "voxel": seq_dir / "voxels" / f"{stem}.npy",
        "events": seq_dir / "events" / f"{stem}.npy",
    }


def sample_is_done(seq_dir: Path, stem: str, num_bins: int, save_events: bool) -> bool:
    """True if every output of the sample exists whole; a voxel with another bin count is an error.

    A file cut short (a copy interrupted, a disk that filled up under another tool) counts as
    missing, so a rerun writes it again.
    """
    paths = sample_paths(seq_dir, stem)
    needed = ["image", "depth", "voxel"] + (["events"] if save_events else [])
    if not all(paths[key].is_file() for key in needed):
        return False
    try:
        shapes = {key: npy_shape(paths[key]) for key in needed if key != "image"}
    except PrepError:
        return False
    if not png_complete(paths["image"]):
        return False
    bins = shapes["voxel"][0]
    if bins != num_bins:
        raise PrepError(f"{paths['voxel']} has {bins} bins, not {num_bins}; rerun with --overwrite")
    return True


def write_sample(
    seq_dir: Path,
    stem: str,
    image: np.ndarray,
    depth: np.ndarray,
    events: np.ndarray,
    num_bins: int,
    save_events: bool,
) -> None:
    """Write image, depth, voxel (and optionally the raw window) of one sample."""
    height, width = image.shape[:2]
    paths = sample_paths(seq_dir, stem)
    save_png(paths["image"], image)
    save_npy(paths["depth"], depth.astype(np.float32, copy=False))
    save_npy(paths["voxel"], events_to_voxel(events, num_bins, height, width))
    if save_events:
        save_npy(paths["events"], events)


def convert_split(
    out_root: Path,
    split: str,
    plan: Sequence[tuple[str, Sequence[SourceSample]]],
    convert: Callable[[SourceSample, Path, str], None],
    num_bins: int,
    save_events: bool,
    overwrite: bool,
    desc: str,
    settings: dict | None = None,
) -> tuple[int, int]:
    """Convert every planned sample of a split and write its split lists.

    Writes ``<out_root>/<split>/<seq>.txt`` per sequence and ``<out_root>/<split>.txt`` for
    the split; finished samples are skipped unless ``overwrite``, and reused only when the
    sequence folder's ``provenance.json`` names the same source files and ``settings``
    (``fuse.provenance``). Returns (samples, written).
    """
    out_dir = out_root / split
    total = sum(len(samples) for _, samples in plan)
    folders = [OutputFolder(out_dir / name, "preparation",
                            {"source": files_identity(path for sample in samples
                                                      for path in (sample.image, sample.depth, sample.events)),
                             "num_bins": num_bins, "settings": settings or {}},
                            SAMPLE_PATTERNS, overwrite=overwrite) for name, samples in plan]
    for folder in folders:
        folder.check()
    split_lines, written = [], 0
    created: list[Path] = []  # files and folders this run made: removed again when an input turns out bad
    try:
        with tqdm(total=total, desc=desc, unit="frame") as bar:
            for (name, samples), folder in zip(plan, folders):
                seq_out = out_dir / name
                _note_new(folder.manifest, created)
                folder.start()
                for folder in ("images", "depths", "voxels", "events"):
                    remove_stale_temps(seq_out / folder)  # left by a run killed mid-write
                lines = []
                for sample in samples:
                    stem = sample_stem(sample.frame)
                    if overwrite or not sample_is_done(seq_out, stem, num_bins, save_events):
                        for path in sample_paths(seq_out, stem).values():
                            _note_new(path, created)
                        convert(sample, seq_out, stem)
                        written += 1
                    lines.append(sample_line(name, stem))
                    split_lines.append(sample_line(f"{split}/{name}", stem))
                    bar.update()
                _note_new(out_dir / f"{name}.txt", created)
                save_text(out_dir / f"{name}.txt", lines)
        _note_new(out_root / f"{split}.txt", created)
        save_text(out_root / f"{split}.txt", split_lines)
    except PrepError:
        _remove_created(created)
        raise
    return total, written


def _note_new(path: Path, created: list[Path]) -> None:
    """Remember ``path`` and its missing parent folders (outermost first) if they do not exist yet."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    created.extend(reversed(missing))


def _remove_created(created: list[Path]) -> None:
    """Undo a failed run: delete the files it created, then the folders it created if they are empty."""
    for path in reversed(created):
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.exists():
            path.unlink()


@dataclass(frozen=True)
class FolderLayout:
    """Where a split data set keeps each modality of a sequence and how its files are named."""

    label: str  # data set name for messages and progress bars
    subdirs: dict[str, Path]  # "rgb", "depth", "events" -> folder inside a sequence
    frame_re: re.Pattern[str]
    depth_re: re.Pattern[str]
    events_re: re.Pattern[str]


def pair_sequence(seq_dir: Path, layout: FolderLayout, match: str, tol: float) -> tuple[list[SourceSample], int]:
    """Samples of one sequence sorted by frame, and the number of unpaired event windows."""
    return pair_windows(
        frames=indexed_files(seq_dir / layout.subdirs["rgb"], layout.frame_re),
        depths=indexed_files(seq_dir / layout.subdirs["depth"], layout.depth_re),
        windows=indexed_files(seq_dir / layout.subdirs["events"], layout.events_re),
        event_stamps=seq_dir / layout.subdirs["events"] / "timestamps.txt",
        depth_stamps=seq_dir / layout.subdirs["depth"] / "timestamps.txt",
        match=match,
        tol=tol,
    )


def run_splits(args: argparse.Namespace, label: str, splits: Sequence[str], find: Callable[[str], Path | None],
               process: Callable[[str, argparse.Namespace], int]) -> int:
    """The split data sets' ``run``: check the root and every asked split (``find(split)`` gives its
    folder or None) before converting any, then convert each."""
    if not args.root.is_dir():
        raise PrepError(f"{label} root not found: {args.root}")
    folders = {split: find(split) for split in splits}
    chosen = args.splits or [split for split, folder in folders.items() if folder is not None]
    if not chosen:
        raise PrepError(f"{args.root} holds no split folder of {label} (expected one of {', '.join(splits)})")
    missing = [split for split in chosen if folders[split] is None]
    if missing:
        raise PrepError(f"split folder not found for {missing[0]!r} in {args.root}")
    for split in chosen:
        process(split, args)
    return 0


# Options that do not change what a prepared file holds (everything else is recorded as a setting).
OPERATIONAL_OPTIONS = frozenset({"root", "out", "splits", "overwrite", "debug", "save_events", "numbins"})


def process_split(
    split: str,
    split_dir: Path,
    sequences: Sequence[tuple[str, Path]],
    layout: FolderLayout,
    convert_sample: Callable[[SourceSample, Path, str], None],
    args: argparse.Namespace,
) -> int:
    """Pair and convert every sequence of one split, write its lists, print a summary line."""
    plan, unpaired = [], 0
    for name, folder in sequences:
        samples, dropped = pair_sequence(folder, layout, args.match, args.sync_tol)
        unpaired += dropped
        plan.append((name, samples))
    if not any(samples for _, samples in plan):
        raise PrepError(f"no event window of {split_dir} could be paired with an RGB frame and a depth map")
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
                if key not in OPERATIONAL_OPTIONS}
    total, written = convert_split(args.out, split, plan, convert_sample, args.numbins, args.save_events,
                                   args.overwrite, desc=f"{layout.label} {split}", settings=settings)
    print(
        f"{split}: {len(plan)} sequence(s), {total} sample(s) ({written} written, {total - written} already there), "
        f"{unpaired} unpaired event window(s) -> {args.out / f'{split}.txt'}"
    )
    return total
