"""KITTI depth completion as published: where each frame's files lie, how they are read and cropped.

Layout of the benchmark's downloads (devkit ``readme.txt`` of the KITTI depth completion
benchmark, Uhrig et al. 3DV 2017; the same paths are globbed by the Paddle port's
``dataloader/kitti_loader.py``, spec fcfrnet.md §5)::

    <root>/{train,val}/<drive>/proj_depth/groundtruth/image_0{2,3}/<frame>.png    data_depth_annotated.zip
    <root>/{train,val}/<drive>/proj_depth/velodyne_raw/image_0{2,3}/<frame>.png   data_depth_velodyne.zip
    <raw>/<date>/<drive>/image_0{2,3}/data/<frame>.png                             KITTI raw, <drive>.zip
    <root>/depth_selection/val_selection_cropped/{image,velodyne_raw,groundtruth_depth}/
        <drive>_{image,velodyne_raw,groundtruth_depth}_<frame>_image_0{2,3}.png    data_depth_selection.zip

``<drive>`` is e.g. ``2011_09_26_drive_0002_sync``, ``<date>`` its first ten characters, ``<frame>``
ten digits. Depth maps are 16-bit single-channel PNGs holding metres x 256, 0 = no depth; images
are 8-bit RGB. Frames are 1216-1242 x 370-376 pixels; models see the bottom 352 x 1216 crop
(val_selection_cropped is stored cropped already).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fuse.data.layout import load_image, png_header
from fuse.errors import DataFormatError, MissingDataError, UsageError

DEPTH_SCALE = 256.0  # a depth PNG stores metres x 256
CROP = (352, 1216)  # (height, width) of the bottom crop every model sees (spec §1)
SPLITS = ("train", "val", "val_selection")
SPARSE = "velodyne_raw"  # the depth input's folder; spec §5 repoints it to stage-1 coarse maps
VAL_SELECTION = Path("depth_selection") / "val_selection_cropped"
_GRAY = 0  # PNG colour type of single-channel images
# <drive>_<kind>_<frame>_<camera>.png, the names in val_selection_cropped's folders
_SELECTION_NAME = re.compile(r"(?P<drive>.+_sync)_.+_(?P<frame>\d{10})_(?P<camera>image_0[23])\.png")
_MAX_LISTED = 5


@dataclass(frozen=True)
class KittiFrame:
    """The three files of one frame; ``name`` (``<drive>_<frame>_<camera>``) sorts like the GT files."""

    name: str
    image: Path
    sparse: Path
    groundtruth: Path


@dataclass(frozen=True)
class KittiSample:
    """One frame read: uint8 H×W×3 RGB, sparse input and ground truth in metres (0 = no depth)."""

    frame: KittiFrame
    image: np.ndarray
    sparse: np.ndarray
    groundtruth: np.ndarray


def read_depth_png(path: Path) -> np.ndarray:
    """float32 metres of a KITTI depth PNG (uint16 / 256); 0 stays 0, KITTI's "no depth".

    Anything but a whole 16-bit single-channel PNG is refused: an 8-bit or colour file read
    on would give depths wrong by a factor or a channel mix-up, without an error.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"depth map not found: {path}")
    header = png_header(path)
    if header is None:
        raise DataFormatError(f"not a whole PNG file (truncated, or another format): {path}; KITTI depth maps are "
                              "16-bit PNGs: download the file again")
    if header.bit_depth != 16 or header.colour_type != _GRAY:
        kind = f"{header.bit_depth}-bit {'single-channel' if header.colour_type == _GRAY else 'colour'}"
        raise DataFormatError(
            f"{path}: {kind} PNG, not a KITTI depth map (a 16-bit single-channel PNG of metres x 256, 0 = no "
            "depth). Use the file as downloaded, or write depth as cv2.imwrite(path, np.round(depth_m * 256)"
            ".astype(np.uint16))")
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise DataFormatError(f"cannot decode {path} as a 16-bit single-channel PNG (corrupt?)")
    return depth.astype(np.float32) / np.float32(DEPTH_SCALE)


def bottom_crop(array: np.ndarray, size: tuple[int, int] = CROP) -> np.ndarray:
    """The bottom ``size`` rows, centred horizontally, as the reference ``BottomCrop``.

    The left offset is ``round((W - w) / 2)`` with Python's round (half to even): a 1241-wide
    frame loses 12 columns on the left, 13 on the right.
    """
    height, width = size
    rows, columns = array.shape[:2]
    if rows < height or columns < width:
        raise DataFormatError(f"a {rows}x{columns} map is smaller than the {height}x{width} bottom crop")
    left = int(round((columns - width) / 2))
    return array[rows - height:, left:left + width]


def _drive_frames(root: Path, split: str, raw: Path, sparse: str) -> list[KittiFrame]:
    """train / val: every ground-truth map, its sparse map beside it and the raw image of its drive."""
    frames = []
    for gt in (root / split).glob("*_sync/proj_depth/groundtruth/image_0[23]/*.png"):
        camera, drive = gt.parent.name, gt.parents[3].name
        frames.append(KittiFrame(
            f"{drive}_{gt.stem}_{camera}",
            raw / drive[:10] / drive / camera / "data" / gt.name,
            gt.parents[2] / sparse / camera / gt.name,
            gt,
        ))
    return frames


def _selection_files(folder: Path) -> dict[tuple[str, str, str], Path]:
    """The files of one val_selection_cropped folder by (drive, frame, camera)."""
    found = {}
    for path in folder.glob("*.png"):
        match = _SELECTION_NAME.fullmatch(path.name)
        if match:
            found[(match["drive"], match["frame"], match["camera"])] = path
    return found


def _selection_frames(root: Path, sparse: str) -> list[KittiFrame]:
    """val_selection_cropped: the three folders paired by the drive, frame and camera in the names."""
    folder = root / VAL_SELECTION
    images, depths = _selection_files(folder / "image"), _selection_files(folder / sparse)
    frames = []
    for key, gt in _selection_files(folder / "groundtruth_depth").items():
        drive, frame, camera = key
        frames.append(KittiFrame(
            f"{drive}_{frame}_{camera}",
            images.get(key, folder / "image" / f"{drive}_image_{frame}_{camera}.png"),
            depths.get(key, folder / sparse / f"{drive}_{sparse}_{frame}_{camera}.png"),
            gt,
        ))
    return frames


def split_frames(root: str | Path, split: str, raw: str | Path | None = None, sparse: str = SPARSE) -> list[KittiFrame]:
    """The frames of ``split`` (train, val or val_selection) in name order, every file present.

    ``root`` holds the unzipped depth downloads, ``raw`` the KITTI raw drives (default: ``root``);
    ``sparse`` is the folder of the depth input (spec §5: the stage-1 coarse maps for stage 2).
    """
    if split not in SPLITS:
        raise UsageError(f"unknown KITTI depth-completion split {split!r}; expected one of {list(SPLITS)}")
    root = Path(root)
    raw = root if raw is None else Path(raw)
    if split == "val_selection":
        frames = _selection_frames(root, sparse)
        where = root / VAL_SELECTION / "groundtruth_depth"
    else:
        frames = _drive_frames(root, split, raw, sparse)
        where = root / split / "*_sync" / "proj_depth" / "groundtruth"
    if not frames:
        raise MissingDataError(f"no ground-truth depth maps in {where}; unzip the KITTI depth-completion downloads "
                               f"into {root} (docs/fcfrnet.md)")
    frames.sort(key=lambda frame: frame.name)
    _check_present(frames, raw)
    return frames


def _check_present(frames: list[KittiFrame], raw: Path) -> None:
    """One error listing the first missing images and sparse maps, not one per frame later."""
    images = [frame.image for frame in frames if not frame.image.is_file()]
    sparse = [frame.sparse for frame in frames if not frame.sparse.is_file()]
    if images:
        raise MissingDataError(
            f"{len(images)} of {len(frames)} frames have no image, e.g. {[str(p) for p in images[:_MAX_LISTED]]}; "
            f"unzip the KITTI raw drives (<drive>.zip, image_02 and image_03) into {raw}, or pass the folder that "
            "holds them as raw")
    if sparse:
        raise MissingDataError(
            f"{len(sparse)} of {len(frames)} frames have no sparse depth, e.g. "
            f"{[str(p) for p in sparse[:_MAX_LISTED]]}; unzip data_depth_velodyne.zip (or the coarse maps) beside "
            "the ground truth")


def read_frame(frame: KittiFrame, crop: tuple[int, int] | None = CROP) -> KittiSample:
    """Read a frame's three files, check that they have one size, and bottom-crop them (``crop=None``: not)."""
    image = load_image(frame.image, gray=False)
    sparse, gt = read_depth_png(frame.sparse), read_depth_png(frame.groundtruth)
    sizes = {"image": (frame.image, image.shape[:2]), "sparse depth": (frame.sparse, sparse.shape),
             "ground truth": (frame.groundtruth, gt.shape)}
    if len({shape for _, shape in sizes.values()}) > 1:
        listed = "; ".join(f"{what} {path} is {shape[0]}x{shape[1]}" for what, (path, shape) in sizes.items())
        raise DataFormatError(f"frame {frame.name}: its files differ in size ({listed}); the image must come from the "
                              "same drive and camera as the depth maps")
    if crop is not None:
        try:
            image, sparse, gt = (bottom_crop(array, crop) for array in (image, sparse, gt))
        except DataFormatError as error:
            raise DataFormatError(f"frame {frame.name} ({frame.groundtruth}): {error}") from error
    return KittiSample(frame, image, sparse, gt)


def iter_split(root: str | Path, split: str, raw: str | Path | None = None, sparse: str = SPARSE,
               crop: tuple[int, int] | None = CROP) -> Iterator[KittiSample]:
    """Every frame of a split read and cropped, in name order; missing files fail before the first."""
    for frame in split_frames(root, split, raw, sparse):
        yield read_frame(frame, crop)
