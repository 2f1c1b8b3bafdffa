"""The prepared-sample layout: where each file of a sample lies, how it is read, written and checked.

The preparation scripts (``fuse.prep``) write it; training, inference and evaluation read it::

    <out>/<seq>/images/000123.png   uint8 image (grayscale for MVSEC, RGB for DENSE / EventScape)
    <out>/<seq>/depths/000123.npy   float32 (H, W) metres, NaN = no depth
    <out>/<seq>/voxels/000123.npy   float32 (bins, H, W), not normalized
    <out>/<seq>/events/000123.npy   optional float64 (N, 4) t, x, y, p with p in {-1, +1}
    <out>/<seq>.txt                 split list: "<seq>/images/… <seq>/depths/… <seq>/voxels/…" per sample

Paths in a split list are relative to the folder holding the list (absolute ones work too).
Every reader raises the error class its caller reports (``DataFormatError`` for training data,
``PrepError`` for preparation inputs, ``EvalInputError`` for evaluation), naming the file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath, PurePosixPath
from typing import NamedTuple, TypeVar

import cv2
import numpy as np

from fuse.atomic import write_bytes_atomic, write_text_atomic
from fuse.errors import DataFormatError, FuseError, MissingDataError, PrepError

# Folder and file extension of each file kind of a sample.
FOLDERS = {"image": "images", "depth": "depths", "voxel": "voxels", "events": "events"}
_EXTENSIONS = {"image": ".png", "depth": ".npy", "voxel": ".npy", "events": ".npy"}
# The kinds a split-list line names, in its column order.
_LISTED = ("image", "depth", "voxel")

_MAX_LISTED_MISSING = 5
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TO_RGB = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
_Folder = TypeVar("_Folder", bound=PurePath)


# ----------------------------------------------------------------------------- names


def sample_stem(index: int) -> str:
    """File stem of a source frame index (``000123``), so every sample traces back to its frame."""
    return f"{index:06d}"


def sample_paths(seq_dir: _Folder, stem: str) -> dict[str, _Folder]:
    """Path of every file kind of one sample (``image``, ``depth``, ``voxel``, ``events``)."""
    return {kind: seq_dir / folder / f"{stem}{_EXTENSIONS[kind]}" for kind, folder in FOLDERS.items()}


def sample_line(seq: str, stem: str) -> str:
    """Split-list line of one sample, relative to the folder holding ``seq``."""
    paths = sample_paths(PurePosixPath(seq), stem)
    return " ".join(paths[kind].as_posix() for kind in _LISTED)


def split_list_path(root: Path, seq: str) -> Path:
    """The split list of sequence ``seq`` written beside its folder."""
    return root / f"{seq}.txt"


def moved_field(field: str, folder: str) -> str:
    """A split-list path moved to the sibling folder ``folder`` of its sequence, same file name
    (a voxel's raw window, a re-binned voxel); a relative path stays relative."""
    path = PurePath(field)
    return (path.parent.parent / folder / path.name).as_posix()


def resolve_field(field: str, base: Path) -> Path:
    """A split-list path as a file path: relative ones are relative to the list's folder ``base``."""
    return Path(field) if os.path.isabs(field) else base / field


# ----------------------------------------------------------------------------- split lists


def read_split_fields(split_file: Path, error: type[FuseError] = DataFormatError) -> list[tuple[str, str, str]]:
    """The (image, depth, voxel) fields of every sample line as written; blank lines are skipped.

    A missing list is a ``MissingDataError``; a list that is not three paths per line is ``error``.
    """
    if not split_file.is_file():
        raise MissingDataError(f"split list not found: {split_file}")
    try:
        text = split_file.read_text()
    except UnicodeDecodeError:
        raise error(f"split list {split_file} is not a text file (lines <image.png> <depth.npy> "
                    "<voxel.npy>); check the path") from None
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(_LISTED):
            raise error(f"{split_file}:{number}: expected 3 paths (image depth voxel), got {len(fields)}: {line!r}")
        image, depth, voxel = fields
        samples.append((image, depth, voxel))
    if not samples:
        raise error(f"split list is empty: {split_file}")
    return samples


def read_split_list(split_file: str | os.PathLike) -> list[tuple[Path, Path, Path]]:
    """The (image, depth, voxel) files of every sample of a split list."""
    split_file = Path(split_file)
    base = split_file.parent
    return [(resolve_field(image, base), resolve_field(depth, base), resolve_field(voxel, base))
            for image, depth, voxel in read_split_fields(split_file)]


def check_files_exist(samples: Sequence[tuple[Path, ...]], split_file: str | os.PathLike) -> None:
    """Raise one error listing the first few missing files and how many are missing."""
    missing = [str(path) for sample in samples for path in sample if not path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:_MAX_LISTED_MISSING])
        more = f"\n  ... and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
        raise MissingDataError(f"{len(missing)} file(s) named in {split_file} do not exist:\n  {shown}{more}")


def split_list_text(lines: Iterable[str]) -> str:
    """Content of a split list: each line terminated by a newline."""
    return "".join(f"{line}\n" for line in lines)


def save_split_list(path: Path, lines: Iterable[str]) -> None:
    """Atomically write a split list."""
    write_text_atomic(path, split_list_text(lines))


# ----------------------------------------------------------------------------- readers


def load_npy(path: Path, error: type[FuseError] = DataFormatError, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` without pickles; every read failure is ``error`` naming the file (the project's
    one ``.npy`` reader: training data, predictions, preparation inputs)."""
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise error(f"cannot read npy file (corrupt or truncated?): {path}: {exc}") from exc
    if not isinstance(array, np.ndarray):  # np.load opens any zip (.npz, a checkpoint) as an archive
        array.close()
        raise error(f"not an npy file (a zip archive such as .npz or a checkpoint): {path}")
    return array


def load_image(path: Path, error: type[FuseError] = DataFormatError, gray: bool = True) -> np.ndarray:
    """uint8 H×W×3 RGB of an 8-bit PNG (upstream reads BGR and converts); alpha is dropped.

    ``gray``: grayscale is replicated to three channels (MVSEC); preparation of the RGB data
    sets passes False, since a gray frame there is a wrong file.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise error(f"cannot decode image (corrupt, truncated or not an image): {path}")
    if image.dtype != np.uint8:
        raise error(f"image must be 8-bit, got {image.dtype}: {path}")
    if image.ndim == 3 and image.shape[2] in _TO_RGB:
        return cv2.cvtColor(image, _TO_RGB[image.shape[2]])
    if gray and (image.ndim == 2 or image.shape[2] == 1):
        return np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    channels = "1, 3 or 4 channels" if gray else "3 or 4 channels (RGB)"
    raise error(f"image must have {channels}, got shape {image.shape}: {path}")


def load_depth(path: Path, shape: tuple[int, int] | None = None, error: type[FuseError] = DataFormatError,
               integers: bool = False) -> np.ndarray:
    """Depth map in metres (NaN = no depth) in the file's own precision, which evaluation computes in.

    ``shape``: the (H, W) of its image, which it must have. ``integers``: also take integer
    maps (evaluation reads predictions of other tools); the layout stores floats.
    """
    depth = load_npy(path, error)
    if shape is not None and depth.shape != shape:
        raise error(f"depth must have shape {shape} like its image, got {depth.shape}: {path}")
    if not (np.issubdtype(depth.dtype, np.floating) or (integers and np.issubdtype(depth.dtype, np.integer))):
        kind = "numeric" if integers else "floating point"
        raise error(f"depth must be {kind} metres, got {depth.dtype}: {path}")
    return depth


def load_voxel(path: Path, height: int, width: int, num_bins: int | None,
               error: type[FuseError] = DataFormatError) -> np.ndarray:
    """float32 bins×H×W grid, checked for shape (``num_bins`` when given), dtype and finiteness."""
    voxel = load_npy(path, error)
    if voxel.ndim != 3 or voxel.shape[1:] != (height, width):
        raise error(f"voxel must have shape (bins, {height}, {width}) like its image, got {voxel.shape}: {path}")
    if num_bins is not None and voxel.shape[0] != num_bins:
        raise error(f"voxel has {voxel.shape[0]} bins, expected {num_bins}: {path}")
    if not np.issubdtype(voxel.dtype, np.floating):
        raise error(f"voxel must be floating point, got {voxel.dtype}: {path}")
    if not np.isfinite(voxel).all():
        raise error(f"voxel contains NaN or inf: {path}")
    return voxel.astype(np.float32, copy=False)


def load_sample(paths: tuple[Path, Path, Path], num_bins: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (uint8 RGB), depth (float32 metres) and voxel (float32, raw) of one split-list sample,
    each checked against the image's size."""
    image_path, depth_path, voxel_path = paths
    image = load_image(image_path)
    height, width = image.shape[:2]
    depth = load_depth(depth_path, (height, width)).astype(np.float32, copy=False)
    return image, depth, load_voxel(voxel_path, height, width, num_bins)


# ----------------------------------------------------------------------------- writers


def save_image(path: Path, image: np.ndarray) -> None:
    """Atomically write a uint8 image given as H×W (gray) or H×W×3 RGB as PNG."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise PrepError(f"PNG encoding failed for {path}")
    write_bytes_atomic(path, buffer.tobytes())


# ----------------------------------------------------------------------------- completeness


class PngHeader(NamedTuple):
    height: int
    width: int
    bit_depth: int
    colour_type: int  # 0 gray, 2 RGB, 6 RGBA


def png_header(path: Path) -> PngHeader | None:
    """Header of a whole PNG file (signature, IHDR and the closing IEND chunk), None for a
    missing, truncated or non-PNG file: a rerun rewrites such a file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
            handle.seek(-len(_PNG_END), os.SEEK_END)
            tail = handle.read()
    except OSError:
        return None
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR" or tail != _PNG_END:
        return None
    return PngHeader(int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"), head[24], head[25])


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of a whole ``.npy`` file (its size is what its header promises), None for a
    missing, truncated or non-npy file: a rerun rewrites such a file."""
    try:
        with open(path, "rb") as handle:
            fmt = np.lib.format
            version = fmt.read_magic(handle)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            size = handle.tell() + int(np.prod(shape)) * dtype.itemsize
            return (tuple(shape), dtype) if os.fstat(handle.fileno()).st_size == size else None
    except (OSError, ValueError):
        return None
