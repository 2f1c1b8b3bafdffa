"""``python -m fuse fcfrnet-from-events``: event-depth completion data, DERD-Net's semi-dense depth as
FCFR-Net's sparse input, on MVSEC-format recordings.

    python -m fuse derdnet-prepare --recording DIR/NAME --out PREP ...
    python -m fuse derdnet-infer --prepared PREP --argmax --out INFER      # or --checkpoint C
    python -m fuse fcfrnet-from-events --recording DIR/NAME --prepared PREP --infer INFER \\
        --root KITTI --split train --windows even [--sparse derdnet|gt|none] [--folder velodyne_raw] \\
        [--nn-out DIR] [--gt-out DIR] [--sparse-out DIR]

writes one KITTI depth-completion frame per window of ``derdnet-infer``'s output, in the layout
``kitti.py`` reads (drive ``<NAME>_sync``, camera ``image_02``, frame = the window index):

* ``<date>/<drive>/image_02/data/<frame>.png``: the left DAVIS image nearest in time to the window's
  reference time (``t0 + t_ref`` of the prepared record), gray replicated to 8-bit RGB;
* ``<split>/<drive>/proj_depth/<folder>/image_02/<frame>.png`` (folder default ``velodyne_raw``):
  the sparse depth as a 16-bit PNG (metres x 256, NaN -> 0). ``--sparse derdnet``: DERD-Net's
  depths; ``gt``: the ground truth at the pixels DERD-Net selected (projected sparse GT); ``none``:
  all zero, the input of the image-only baseline (STD trained on images with its depth input zeroed);
* ``<split>/<drive>/proj_depth/groundtruth/image_02/<frame>.png``: the window's GT (NaN -> 0).

Sizes: frames keep the sensor's size (MVSEC 346 x 260). The networks need multiples of 16 and
see ``kitti.bottom_crop``'s bottom, horizontally centred crop: by default the largest multiples of
16 that fit (MVSEC: 256 x 336, i.e. 4 rows off the top and 5 columns off each side), printed by
the command and passed to training (``fcfrnet.crop``) and ``fcfrnet-predict --crop``. Nothing is
padded. ``--gt-out`` and ``--nn-out`` write, for that crop, ``<frame name>.npy`` (the names
``fcfrnet-predict --out`` gives): the GT (NaN = none) and the nearest-neighbour fill of the sparse
map, the baseline; ``--sparse-out`` the sparse map itself (NaN = no point: DERD-Net's depth, scored on its
own points); ``python -m fuse eval --protocol e2depth --dataset mvsec`` scores them.
Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from fuse.atomic import check_writable, save_npy_atomic, write_bytes_atomic
from fuse.cli import Command, register_command
from fuse.errors import DataFormatError, MissingDataError, RecordingError, UsageError
from fuse.events.mvsec import IMAGE_TS_KEY, IMAGES_KEY, recording_paths
from fuse.methods.derdnet.data import SPLITS as WINDOW_SPLITS, PreparedFolder
from fuse.methods.fcfrnet.kitti import SPARSE, bottom_crop
from fuse.methods.fcfrnet.model import STRIDE
from fuse.methods.fcfrnet.predict import depth_png

SPARSE_SOURCES = ("derdnet", "gt", "none")
CAMERA = "image_02"
TREE_SPLITS = ("train", "val")


def default_crop(height: int, width: int) -> tuple[int, int]:
    """The largest multiples of the networks' stride (16) that fit in a frame."""
    crop = (height // STRIDE * STRIDE, width // STRIDE * STRIDE)
    if min(crop) == 0:
        raise DataFormatError(f"a {height}x{width} frame is smaller than the networks' stride {STRIDE}")
    return crop


def nearest_fill(sparse: np.ndarray) -> np.ndarray:
    """Every pixel takes the depth of its nearest point (``sparse > 0``); all 0 if there is none.

    The distances are OpenCV's 5 x 5 chamfer distance (``cv2.distanceTransformWithLabels``,
    ``DIST_LABEL_PIXEL``: every point gets its own label), an approximation of the Euclidean one,
    within about 2 %; ties go to either point. (scipy is not in requirements.txt.)
    """
    points = np.isfinite(sparse) & (sparse > 0)
    if not points.any():
        return np.zeros(sparse.shape, np.float32)
    source = np.where(points, 0, 255).astype(np.uint8)  # the points are the zero pixels
    _, labels = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lookup = np.zeros(int(labels.max()) + 1, np.float32)
    lookup[labels[points]] = sparse[points]
    return lookup[labels]


def sparse_input(depth: np.ndarray, gt: np.ndarray, source: str) -> np.ndarray:
    """The sparse depth map in metres, 0 = no point: DERD-Net's, the GT at its points, or none."""
    selected = np.isfinite(depth)
    if source == "derdnet":
        values = np.where(selected, depth, 0.0)
    elif source == "gt":
        values = np.where(selected & np.isfinite(gt), gt, 0.0)
    elif source == "none":
        values = np.zeros(depth.shape)
    else:
        raise UsageError(f"--sparse is one of {SPARSE_SOURCES}, got {source!r}")
    return np.maximum(values, 0.0).astype(np.float32)


@dataclass(frozen=True)
class Images:
    """The left DAVIS images of a recording (kept open) and their timestamps."""

    path: Path
    handle: h5py.File
    times: np.ndarray

    @classmethod
    def open(cls, recording: str | Path) -> Images:
        data_path, _ = recording_paths(recording)
        if not data_path.is_file():
            raise MissingDataError(f"{data_path}: MVSEC recording file not found (give --recording DIR/NAME for "
                                   "NAME_data.hdf5)")
        try:
            handle = h5py.File(data_path, "r")
        except OSError as error:
            raise RecordingError(f"{data_path}: cannot open as hdf5 (truncated or corrupt file?): {error}") from None
        missing = [key for key in (IMAGES_KEY, IMAGE_TS_KEY) if key not in handle]
        if missing:
            handle.close()
            raise RecordingError(f"{data_path}: no {' and no '.join(missing)}; event-depth completion pairs each "
                                 "depth window with the left DAVIS image nearest in time")
        times = np.asarray(handle[IMAGE_TS_KEY][:], np.float64)
        if len(times) == 0 or len(times) != len(handle[IMAGES_KEY]):
            handle.close()
            raise RecordingError(f"{data_path}: {IMAGES_KEY} and {IMAGE_TS_KEY} are empty or differ in length")
        return cls(data_path, handle, times)

    def nearest(self, t: float) -> tuple[np.ndarray, float]:
        """uint8 H x W x 3 RGB of the image nearest to time ``t`` and its offset in seconds."""
        index = int(np.argmin(np.abs(self.times - t)))
        image = np.asarray(self.handle[IMAGES_KEY][index])
        if image.dtype != np.uint8:
            raise RecordingError(f"{self.path}: {IMAGES_KEY} holds {image.dtype}, expected 8-bit images")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return image, float(self.times[index] - t)

    def close(self) -> None:
        self.handle.close()


@dataclass(frozen=True)
class TreeResult:
    frames: int
    crop: tuple[int, int]
    drive: str
    max_offset_s: float


def frame_name(drive: str, stem: str) -> str:
    """``kitti.split_frames``' name of a frame: ``<drive>_<10-digit frame>_<camera>``."""
    return f"{drive}_{int(stem):010d}_{CAMERA}"


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return encoded.tobytes()


def _load_window(infer: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    paths = [infer / kind / f"{stem}.npy" for kind in ("depth", "gt")]
    for path in paths:
        if not path.is_file():
            raise MissingDataError(f"{path} not found: --infer is a derdnet-infer output of --prepared (run "
                                   "python -m fuse derdnet-infer --prepared PREP --split ... --out INFER first, "
                                   "covering the windows asked for)")
    depth, gt = (np.load(path).astype(np.float32) for path in paths)
    if depth.shape != gt.shape or depth.ndim != 2:
        raise DataFormatError(f"{paths[0]} and {paths[1]}: shapes {depth.shape} and {gt.shape}, expected one "
                              "H x W for both")
    return depth, gt


def write_tree(recording: str | Path, prepared: str | Path, infer: str | Path, root: str | Path, split: str,
               windows: str = "all", sparse: str = "derdnet", folder: str = SPARSE,
               crop: tuple[int, int] | None = None, nn_out: str | Path | None = None,
               gt_out: str | Path | None = None, sparse_out: str | Path | None = None) -> TreeResult:
    """Write the windows of ``windows`` (even, odd, all) as KITTI frames of ``split`` (module docstring)."""
    if split not in TREE_SPLITS:
        raise UsageError(f"--split is one of {TREE_SPLITS}, got {split!r}")
    if sparse not in SPARSE_SOURCES:
        raise UsageError(f"--sparse is one of {SPARSE_SOURCES}, got {sparse!r}")
    if Path(folder).name != folder or folder == "groundtruth":
        raise UsageError(f"--folder is a folder name beside groundtruth (default {SPARSE}), got {folder!r}")
    infer = Path(infer)
    if not (infer / "depth").is_dir():
        raise MissingDataError(f"{infer / 'depth'} not found: --infer is the --out folder of python -m fuse "
                               "derdnet-infer")
    windows_of = PreparedFolder(prepared)
    stems = windows_of.split(windows)
    t0 = float(windows_of.settings["t0"])
    root = Path(root)
    drive = f"{recording_paths(recording)[0].name.removesuffix('_data.hdf5')}_sync"
    base = root / split / drive / "proj_depth"
    for out in (nn_out, gt_out, sparse_out):
        if out is not None:
            check_writable(out)
    if not stems:
        raise MissingDataError(f"the prepared folder {prepared} has no {windows} windows")
    images = Images.open(recording)
    offsets, size = [], crop
    try:
        for stem in stems:
            depth, gt = _load_window(infer, stem)
            (t_ref,) = windows_of.record(stem, "t_ref")
            image, offset = images.nearest(t0 + float(t_ref))
            offsets.append(abs(offset))
            if image.shape[:2] != depth.shape:
                raise DataFormatError(f"{images.path}: images are {image.shape[1]}x{image.shape[0]} but the depth "
                                      f"maps of {infer} are {depth.shape[1]}x{depth.shape[0]}")
            size = crop or default_crop(*depth.shape)
            if any(side % STRIDE for side in size):
                raise UsageError(f"--crop must be two multiples of {STRIDE}, got {list(size)}")
            name = f"{int(stem):010d}.png"
            values = sparse_input(depth, gt, sparse)
            write_bytes_atomic(root / drive[:10] / drive / CAMERA / "data" / name, _png(image[..., ::-1]))
            write_bytes_atomic(base / folder / CAMERA / name, depth_png(values))
            write_bytes_atomic(base / "groundtruth" / CAMERA / name, depth_png(np.nan_to_num(gt, nan=0.0)))
            if nn_out is not None:
                save_npy_atomic(Path(nn_out) / f"{frame_name(drive, stem)}.npy",
                                bottom_crop(nearest_fill(values), size).copy())
            if gt_out is not None:
                save_npy_atomic(Path(gt_out) / f"{frame_name(drive, stem)}.npy", bottom_crop(gt, size).copy())
            if sparse_out is not None:
                save_npy_atomic(Path(sparse_out) / f"{frame_name(drive, stem)}.npy",
                                bottom_crop(np.where(values > 0, values, np.nan), size).copy())
    finally:
        images.close()
    return TreeResult(len(stems), size, drive, max(offsets))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, help="DIR/NAME of the MVSEC-format recording "
                        "(NAME_data.hdf5 with davis/left/image_raw and _ts)")
    parser.add_argument("--prepared", required=True, help="the derdnet-prepare folder (window times)")
    parser.add_argument("--infer", required=True, help="the derdnet-infer --out folder (depth/, gt/)")
    parser.add_argument("--root", required=True, help="KITTI-layout folder to write (fcfrnet.root)")
    parser.add_argument("--split", default="train", choices=TREE_SPLITS, help="KITTI split the frames go to")
    parser.add_argument("--windows", default="all", choices=WINDOW_SPLITS, help="windows to write (by index parity)")
    parser.add_argument("--sparse", default="derdnet", choices=SPARSE_SOURCES, help="sparse input: DERD-Net's depth, "
                        "the GT at DERD-Net's pixels, or none (zeros, for the image-only baseline)")
    parser.add_argument("--folder", default=SPARSE, help=f"folder of the sparse maps beside groundtruth (default "
                        f"{SPARSE}; another name keeps several inputs in one tree: fcfrnet.sparse=NAME)")
    parser.add_argument("--crop", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="bottom crop the networks see, multiples of 16 (default: the largest that fits)")
    parser.add_argument("--nn-out", default=None, help="write the nearest-neighbour fill of the crop as "
                        "<frame name>.npy here (the baseline)")
    parser.add_argument("--gt-out", default=None, help="write the GT of the crop as <frame name>.npy here "
                        "(NaN = none; eval --target)")
    parser.add_argument("--sparse-out", default=None, help="write the sparse input map of the crop as <frame name>.npy "
                        "here (NaN = no point; DERD-Net's depth scored on its own points)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    result = write_tree(args.recording, args.prepared, args.infer, args.root, args.split, args.windows, args.sparse,
                        args.folder, tuple(args.crop) if args.crop else None, args.nn_out, args.gt_out,
                        args.sparse_out)
    print(f"wrote {result.frames} frames of drive {result.drive} ({args.sparse} sparse depth in {args.folder}) to "
          f"{Path(args.root) / args.split}; images at most {1000 * result.max_offset_s:.1f} ms from the windows; "
          f"networks: crop {result.crop[0]} {result.crop[1]} (fcfrnet.crop=[{result.crop[0]},{result.crop[1]}], "
          f"fcfrnet-predict --crop {result.crop[0]} {result.crop[1]})")
    return 0


register_command(Command("fcfrnet-from-events", __name__,
                         "FCFR-Net: a KITTI-layout tree of an MVSEC recording's images and DERD-Net's sparse depth"))
