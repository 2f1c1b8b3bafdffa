"""What the preparation commands share: options, source pairing, event windows, and writing
samples of the prepared layout (``fuse.data.layout``) restartably.

Every file is written to a temporary name in its folder and moved into place (``fuse.atomic``),
so an interrupted run never leaves a truncated file under a final name; a rerun keeps whole
files and rewrites damaged ones. When an input turns out bad, the files and folders the run
created are removed again (:class:`Rollback`). The split data sets (DENSE, EventScape) share
their whole command (:func:`main`); each describes itself as a :class:`SplitDataSet`.
"""
from __future__ import annotations

import argparse
import functools
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fuse.atomic import remove_stale_temps, save_npy_atomic
from fuse.cli import run_command
from fuse.cli.ranges import non_negative_float, positive_int
from fuse.data.layout import (FOLDERS, load_depth, load_image, npy_header, png_header, sample_line, sample_paths,
                              sample_stem, save_image, save_split_list, split_list_path)
from fuse.errors import PrepError
from fuse.events import voxel_grid
from fuse.provenance import SAMPLE_PATTERNS, OutputFolder, files_identity


# ----------------------------------------------------------------------------- options


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


# ----------------------------------------------------------------------------- source frames and event windows


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


# ----------------------------------------------------------------------------- writing samples


class Rollback:
    """The files and folders a run created, so that a run whose input turns out bad can remove them."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def note(self, path: Path) -> None:
        """Remember ``path`` and its missing parent folders (outermost first) if they do not exist yet;
        call it before creating them."""
        missing = []
        while not path.exists() and path != path.parent:
            missing.append(path)
            path = path.parent
        self.paths.extend(reversed(missing))

    def undo(self) -> None:
        """Delete the noted files, then the noted folders if they are empty."""
        for path in reversed(self.paths):
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.exists():
                path.unlink()
        self.paths.clear()


def sample_is_done(seq_dir: Path, stem: str, num_bins: int, save_events: bool) -> bool:
    """True if every output of the sample exists whole; a voxel with another bin count is an error.

    A file cut short (a copy interrupted, a disk that filled up under another tool) counts as
    missing, so a rerun writes it again.
    """
    paths = sample_paths(seq_dir, stem)
    headers = {kind: npy_header(paths[kind]) for kind in ["depth", "voxel"] + (["events"] if save_events else [])}
    if None in headers.values() or png_header(paths["image"]) is None:
        return False
    bins = headers["voxel"][0][0]
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
    save_image(paths["image"], image)
    save_npy_atomic(paths["depth"], depth.astype(np.float32, copy=False))
    save_npy_atomic(paths["voxel"], events_to_voxel(events, num_bins, height, width))
    if save_events:
        save_npy_atomic(paths["events"], events)


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
    rollback = Rollback()
    try:
        with tqdm(total=total, desc=desc, unit="frame") as bar:
            for (name, samples), folder in zip(plan, folders):
                seq_out = out_dir / name
                rollback.note(folder.manifest)
                folder.start()
                for kind_folder in FOLDERS.values():
                    remove_stale_temps(seq_out / kind_folder)  # left by a run killed mid-write
                lines = []
                for sample in samples:
                    stem = sample_stem(sample.frame)
                    if overwrite or not sample_is_done(seq_out, stem, num_bins, save_events):
                        for path in sample_paths(seq_out, stem).values():
                            rollback.note(path)
                        convert(sample, seq_out, stem)
                        written += 1
                    lines.append(sample_line(name, stem))
                    split_lines.append(sample_line(f"{split}/{name}", stem))
                    bar.update()
                rollback.note(split_list_path(out_dir, name))
                save_split_list(split_list_path(out_dir, name), lines)
        rollback.note(split_list_path(out_root, split))
        save_split_list(split_list_path(out_root, split), split_lines)
    except PrepError:
        rollback.undo()
        raise
    return total, written


# ----------------------------------------------------------------------------- split data sets


def _unchanged(depth: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """Depth a data set stores in metres already."""
    return depth


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A data set without options of its own."""


@dataclass(frozen=True)
class SplitDataSet:
    """What sets one split data set's converter (DENSE, EventScape) apart; the command is shared."""

    layout: FolderLayout
    description: str  # the command's --help text
    root_help: str
    split_folders: dict[str, tuple[str, ...]]  # split -> names its folder may have under the root, in order
    find_sequences: Callable[[Path], list[tuple[str, Path]]]  # (output name, folder) of a split's sequences
    load_events: Callable[[Path], np.ndarray]  # a raw event window as (N, 4) t, x, y, p
    to_metres: Callable[[np.ndarray, argparse.Namespace], np.ndarray] = _unchanged  # stored depth -> metres
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments


# Options that do not change what a prepared file holds (everything else is recorded as a setting).
OPERATIONAL_OPTIONS = frozenset({"root", "out", "splits", "overwrite", "debug", "save_events", "numbins"})


def main(data_set: SplitDataSet, argv: list[str] | None = None) -> int:
    """The command of a split data set: convert every asked split of ``--root`` into ``--out``."""
    parser = argparse.ArgumentParser(description=data_set.description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_dataset_arguments(parser, data_set.root_help, tuple(data_set.split_folders))
    data_set.add_arguments(parser)
    return run_script(parser, functools.partial(run_splits, data_set), argv)


def split_folder(root: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that is a folder under ``root``, None when none is."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def run_splits(data_set: SplitDataSet, args: argparse.Namespace) -> int:
    """Check the root and every asked split before converting any, then convert each."""
    label = data_set.layout.label
    if not args.root.is_dir():
        raise PrepError(f"{label} root not found: {args.root}")
    folders = {split: split_folder(args.root, names) for split, names in data_set.split_folders.items()}
    chosen = args.splits or [split for split, folder in folders.items() if folder is not None]
    if not chosen:
        raise PrepError(f"{args.root} holds no split folder of {label} (expected one of {', '.join(folders)})")
    missing = [split for split in chosen if folders[split] is None]
    if missing:
        raise PrepError(f"split folder not found for {missing[0]!r} in {args.root}")
    for split in chosen:
        process_split(data_set, split, folders[split], args)
    return 0


def process_split(data_set: SplitDataSet, split: str, split_dir: Path, args: argparse.Namespace) -> None:
    """Pair and convert every sequence of one split, write its lists, print a summary line."""
    plan, unpaired = [], 0
    for name, folder in data_set.find_sequences(split_dir):
        samples, dropped = pair_sequence(folder, data_set.layout, args.match, args.sync_tol)
        unpaired += dropped
        plan.append((name, samples))
    if not any(samples for _, samples in plan):
        raise PrepError(f"no event window of {split_dir} could be paired with an RGB frame and a depth map")
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
                if key not in OPERATIONAL_OPTIONS}
    convert = functools.partial(convert_sample, data_set, args)
    total, written = convert_split(args.out, split, plan, convert, args.numbins, args.save_events,
                                   args.overwrite, desc=f"{data_set.layout.label} {split}", settings=settings)
    print(
        f"{split}: {len(plan)} sequence(s), {total} sample(s) ({written} written, {total - written} already there), "
        f"{unpaired} unpaired event window(s) -> {split_list_path(args.out, split)}"
    )


def convert_sample(data_set: SplitDataSet, args: argparse.Namespace, sample: SourceSample, seq_dir: Path,
                   stem: str) -> None:
    """Read one source frame (RGB image, depth, raw event window), check it and write its sample."""
    image = load_image(sample.image, PrepError, gray=False)
    height, width = image.shape[:2]
    depth = load_depth(sample.depth, (height, width), PrepError).astype(np.float32, copy=False)
    depth = data_set.to_metres(depth, args)
    events = standardize_events(data_set.load_events(sample.events), height, width, sample.events)
    write_sample(seq_dir, stem, image, depth, events, args.numbins, args.save_events)
