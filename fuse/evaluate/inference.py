"""Depth prediction at the sensor resolution, and the frame sources inference reads from.

:func:`predict` feeds the network exactly what evaluation feeds it: the dataset's val/test
geometry (aspect-preserving resize so both sides are at least ``size`` and multiples of 14,
bicubic for image and voxel, ``fuse.data.transforms``), ImageNet-normalized RGB and a voxel
standardized after resizing (spec §6). The prediction is brought back to the original
resolution with bilinear ``align_corners=True`` interpolation, as upstream FUSE does before
computing metrics.

Sources yield :class:`FrameRef` s (a name and a loader), so a restartable caller can skip a
finished frame without reading its files:

* :class:`SplitSource`: a processed split list (``fuse.data.layout`` and its readers);
* :class:`RecordingSource`: a raw MVSEC-format ``<name>_data.hdf5`` / ``<name>_gt.hdf5`` pair,
  streamed with ``fuse.events.MvsecRecording``; each 50 ms window is voxelized on the fly.

* :class:`EventFileSource`: an event file of a real camera (``fuse.events.open_events``: AEDAT 4,
  Prophesee RAW / DAT, DSEC, npy, text), cut into windows of a fixed duration or event count;
  images come from the file's frames, where it holds them.

All are :class:`FrameSource` s; :func:`open_frame_source` makes the one a request names.
"""
from __future__ import annotations

import copy
import functools
import itertools
import os
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fuse.errors import DataFormatError, UsageError
from fuse.registry import model_kind
from fuse.data.layout import check_files_exist, load_sample, read_split_list, sample_stem
from fuse.data.transforms import lower_bound_size, normalize_image, resize_image, resize_voxel
from fuse.events import EventFileError, EventReader, MvsecRecording, normalize_voxel, open_events, voxel_grid
from fuse.events.mvsec import recording_paths
from fuse.events.readers import as_columns
from fuse.provenance import file_identity


@dataclass(frozen=True)
class Frame:
    """One frame's data at the sensor resolution.

    ``image``: H×W×3 uint8 RGB; ``voxel``: bins×H×W float32, not normalized; ``depth``: H×W
    float32 metres (NaN = no depth), or None without ground truth.
    """

    stem: str
    image: np.ndarray
    voxel: np.ndarray
    depth: np.ndarray | None


@dataclass(frozen=True)
class FrameRef:
    """A frame's output name and how to load it."""

    stem: str
    load: Callable[[], Frame]


def _as_batch(array: np.ndarray | Sequence[np.ndarray] | None,
              single_ndim: int) -> tuple[list[np.ndarray] | None, bool]:
    """A list of samples and whether the input was a batch (one extra leading axis or a sequence)."""
    if array is None:
        return None, False
    if isinstance(array, np.ndarray) and array.ndim == single_ndim:
        return [array], False
    return [np.asarray(a) for a in array], True


def network_inputs(
    images: Sequence[np.ndarray] | None, voxels: Sequence[np.ndarray] | None, size: int = 266
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Stack images (H×W×3 RGB, uint8 or float in [0, 1]) and raw voxels into network tensors.

    Every sample goes through the dataset's val/test steps: uint8 -> [0, 1] float32, resize to
    ``lower_bound_size``, then ImageNet normalization / per-sample voxel standardization.
    All samples must share one original size.
    """
    shapes = {a.shape[:2] for a in images or []} | {v.shape[1:] for v in voxels or []}
    if len(shapes) != 1:
        raise ValueError(f"every image and voxel of a batch must have the same height and width, got {sorted(shapes)}")
    height, width = shapes.pop()
    hw = lower_bound_size(height, width, size)
    image_tensor = voxel_tensor = None
    if images is not None:
        prepared = []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"images must be H×W×3 RGB, got shape {image.shape}")
            rgb = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
            prepared.append(normalize_image(resize_image(rgb, hw)))
        image_tensor = torch.from_numpy(np.stack(prepared))
    if voxels is not None:
        prepared = [normalize_voxel(resize_voxel(voxel, hw).astype(np.float32)) for voxel in voxels]
        voxel_tensor = torch.from_numpy(np.stack(prepared))
    return image_tensor, voxel_tensor


PRECISIONS = ("fp32", "bf16")

_BF16_COPIES: "weakref.WeakKeyDictionary[nn.Module, tuple[int, nn.Module]]" = weakref.WeakKeyDictionary()


def _weights_version(model: nn.Module) -> int:
    """Changes whenever any parameter or buffer is modified in place (optimizer steps, loading)."""
    return sum(t._version for t in itertools.chain(model.parameters(), model.buffers()))


def bfloat16_copy(model: nn.Module) -> nn.Module:
    """``model`` with bfloat16 weights, made once and reused until the model's weights change.

    Holding the weights in bfloat16 is what makes the bf16 path fast: autocast would convert
    every weight again on every call (on CPU, about a tenth of a bf16 forward pass).
    """
    version = _weights_version(model)
    cached = _BF16_COPIES.get(model)
    if cached is None or cached[0] != version:
        cached = (version, copy.deepcopy(model).to(torch.bfloat16).eval())
        _BF16_COPIES[model] = cached
    return cached[1]


def predict(
    model: nn.Module,
    image: np.ndarray | Sequence[np.ndarray] | None,
    voxel: np.ndarray | Sequence[np.ndarray] | None,
    size: int = 266,
    precision: str = "fp32",
) -> np.ndarray:
    """Depth (or relative inverse depth, for a relative head) at the inputs' original resolution.

    ``image``: H×W×3 RGB (uint8 or float in [0, 1]) or a batch of them (B×H×W×3 or a list);
    ``voxel``: a raw bins×H×W voxel grid or a batch. A ``fuse`` model needs both,
    ``depth_anything_v2`` the image, ``event_student`` the voxel; an input the model does not
    use is ignored. Runs in eval mode under ``torch.inference_mode()`` on the model's device and
    returns float32 H×W (B×H×W for a batch). ``precision="bf16"`` runs a bfloat16 copy of the
    network (:func:`bfloat16_copy`; CPU or GPU): about 2x faster on CPU, at a cost in accuracy
    (relative error of the depth map about 3e-3) measured in BENCHMARKS.md.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    kind = model.config.kind
    inputs = model_kind(kind).inputs
    unsupported = [name for name in inputs if name not in ("image", "events")]
    if unsupported:
        raise UsageError(f"predict() feeds images and voxel grids; a {kind} model also takes {unsupported}")
    needs_image, needs_voxel = "image" in inputs, "events" in inputs
    if needs_image and image is None:
        raise ValueError(f"a {kind} model needs an image")
    if needs_voxel and voxel is None:
        raise ValueError(f"a {kind} model needs an event voxel grid")
    images, image_batched = _as_batch(image, 3) if needs_image else (None, False)
    voxels, voxel_batched = _as_batch(voxel, 3) if needs_voxel else (None, False)
    batched = image_batched if needs_image else voxel_batched
    if needs_image and needs_voxel:
        if image_batched != voxel_batched:
            raise ValueError("pass image and voxel both as single samples or both as batches")
        if len(images) != len(voxels):
            raise ValueError(f"got {len(images)} images but {len(voxels)} voxel grids")
    bins = model.config.event_bins
    for grid in voxels or []:
        if grid.ndim != 3 or grid.shape[0] != bins:
            raise ValueError(f"the model expects voxel grids of shape ({bins}, H, W), got {grid.shape}")

    image_tensor, voxel_tensor = network_inputs(images, voxels, size)
    height, width = images[0].shape[:2] if images is not None else voxels[0].shape[1:]
    parameter = next(model.parameters())
    device = parameter.device
    was_training = model.training
    model.eval()
    try:
        network = bfloat16_copy(model) if precision == "bf16" and parameter.dtype != torch.bfloat16 else model
        dtype = next(network.parameters()).dtype
        tensors = {"image": image_tensor, "events": voxel_tensor}
        with torch.inference_mode():
            out = network(*(tensors[name].to(device, dtype) for name in inputs))
            out = F.interpolate(out[:, None].float(), size=(height, width), mode="bilinear", align_corners=True)[:, 0]
    finally:
        model.train(was_training)
    depth = out.float().cpu().numpy()
    return depth if batched else depth[0]


def output_stems(image_paths: Sequence[Path]) -> list[str]:
    """Output names: the image file stems, prefixed by the sequence folder where they repeat.

    A split list of one sequence keeps the processed names (``000123``), so predictions pair
    with ``<seq>/depths/`` in ``fuse eval``; a list over several sequences gets
    ``<seq>_000123``.
    """
    stems = [path.stem for path in image_paths]
    if len(set(stems)) == len(stems):
        return stems
    stems = [f"{path.parent.parent.name}_{path.stem}" for path in image_paths]
    repeated = [stem for stem, count in Counter(stems).items() if count > 1]
    if repeated:
        raise DataFormatError(f"the split list names several images that map to the output name {repeated[0]!r}")
    return stems


_Source = TypeVar("_Source", bound="FrameSource")


class FrameSource:
    """What every source shares: frames named by ``stems``, each loaded on demand by ``_load``,
    and closing as a context manager, so callers treat a split list and a recording alike."""

    stems: list[str]

    @property
    def description(self) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.stems)

    def __iter__(self) -> Iterator[FrameRef]:
        for index, stem in enumerate(self.stems):
            yield FrameRef(stem, functools.partial(self._load, index))

    def _load(self, index: int) -> Frame:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds; nothing by default."""

    def __enter__(self: _Source) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SplitSource(FrameSource):
    """Frames of a processed split list, read with the layout's readers as training reads them (no resizing)."""

    def __init__(self, split_file: str | os.PathLike, num_bins: int | None = None) -> None:
        self.path = Path(split_file)
        self.samples = read_split_list(self.path)
        check_files_exist(self.samples, self.path)
        self.num_bins = num_bins
        self.stems = output_stems([image for image, _, _ in self.samples])

    @property
    def description(self) -> str:
        return str(self.path)

    def _load(self, index: int) -> Frame:
        image, depth, voxel = load_sample(self.samples[index], self.num_bins)
        return Frame(self.stems[index], image, voxel, depth)


class RecordingSource(FrameSource):
    """Frames of a raw MVSEC-format recording: every depth frame the MVSEC selection keeps.

    The selection (nearest image within 10 ms, non-empty 50 ms event window; spec §6) is
    ``MvsecRecording``'s; frames are named by their depth-frame index, like the prepared files.
    """

    def __init__(self, recording: str | os.PathLike, num_bins: int) -> None:
        self.data_path, self.gt_path = recording_paths(recording)
        self.num_bins = num_bins
        self.recording = MvsecRecording(self.data_path, self.gt_path)
        try:
            infos = list(self.recording.frames())
        except BaseException:
            self.recording.close()
            raise
        self.kept = [info for info in infos if info.kept]
        self.skipped = Counter(info.skip_reason for info in infos if not info.kept)
        self.stems = [sample_stem(info.depth_index) for info in self.kept]

    @property
    def description(self) -> str:
        return str(self.data_path)

    def _load(self, index: int) -> Frame:
        sample = self.recording.load(self.kept[index])
        height, width = sample.image.shape
        image = np.repeat(sample.image[:, :, None], 3, axis=2)  # gray -> RGB, as load_image does
        image, events = self._inputs(index, image, sample.events)
        voxel = voxel_grid(events, self.num_bins, height, width)
        return Frame(self.stems[index], image, voxel, sample.depth)

    def _inputs(self, index: int, image: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``'s RGB image and raw events before voxelization; a subclass may change them
        (``fuse.evaluate.compare`` degrades them)."""
        return image, events

    def close(self) -> None:
        self.recording.close()


@dataclass(frozen=True)
class EventWindows:
    """An event file and how it is cut into frames: windows of ``window_ms`` milliseconds, or of
    ``window_events`` consecutive events when that is given."""

    path: str
    window_ms: float = 50.0
    window_events: int | None = None

    def identity(self) -> dict:
        """What of the file and the cut determines the frames (for ``provenance.json``)."""
        return {"events": file_identity(self.path, content=False), "window_ms": self.window_ms,
                "window_events": self.window_events}


# Events are scanned in slices of this many microseconds when planning the windows (bounded memory).
_SCAN_US = 100_000


class EventFileSource(FrameSource):
    """Frames of an event file: one per non-empty window, named by the window's index.

    The windows are planned in one pass over the file (read in 100 ms slices, never whole):
    time windows ``[t0 + k w, t0 + (k + 1) w)`` from the first event ``t0``, or windows starting
    at every ``window_events``-th event (events sharing the boundary's microsecond go to the
    later window). The image of a window is the file's frame nearest to the window's end (where
    the model takes images, the file must hold frames); otherwise the panel's image tile is black.
    There is no ground truth.
    """

    def __init__(self, windows: EventWindows, num_bins: int, needs_image: bool, kind: str) -> None:
        self.windows = windows
        self.num_bins = num_bins
        self.reader: EventReader = open_events(windows.path)
        try:
            self._plan(needs_image, kind)
        except BaseException:
            self.reader.close()
            raise

    def _plan(self, needs_image: bool, kind: str) -> None:
        frames = self.reader.frames()
        if needs_image and frames is None:
            raise UsageError(f"{self.windows.path} holds no frames, but a {kind} model needs images: use an event-only "
                             "model (e.g. event_student) or a file with frames (AEDAT 4 of a DAVIS camera)")
        self.frame_times = np.array([t for t, _ in frames] if frames is not None else [], np.int64)
        self._frames = _FrameCursor(self.reader)
        first, last = self.reader.time_range()
        if self.windows.window_events is None:
            bounds, empty = self._time_windows(first, last, max(1, round(self.windows.window_ms * 1000)))
        else:
            bounds, empty = self._count_windows(first, last, self.windows.window_events), 0
        self.bounds = bounds
        self.skipped = Counter({"empty windows": empty} if empty else {})
        self.stems = [f"{k:06d}" for k, _, _ in bounds]

    def _slices(self, first: int, last: int, step: int) -> Iterator[np.ndarray]:
        """The time stamps of all events, ``step`` us at a time."""
        for start in range(first, last + 1, step):
            yield self.reader.window(start, start + step)["t"]

    def _time_windows(self, first: int, last: int, width: int) -> tuple[list[tuple[int, int, int]], int]:
        """``(index, start, end)`` of the non-empty windows of ``width`` us, and the number of empty ones."""
        total = (last - first) // width + 1
        counts = np.zeros(total, np.int64)
        for times in self._slices(first, last, width * max(1, _SCAN_US // width)):
            if len(times):
                index = (times - first) // width
                counts[index.min():index.max() + 1] += np.bincount(index - index.min())
        kept = np.flatnonzero(counts)
        return [(int(k), first + int(k) * width, first + (int(k) + 1) * width) for k in kept], total - len(kept)

    def _count_windows(self, first: int, last: int, size: int) -> list[tuple[int, int, int]]:
        """``(index, start, end)`` of windows starting at every ``size``-th event."""
        starts, seen = [], 0
        for times in self._slices(first, last, _SCAN_US):
            starts.append(times[(-seen) % size::size])
            seen += len(times)
        edges = np.unique(np.concatenate(starts))
        edges = np.append(edges, last + 1)
        return [(k, int(a), int(b)) for k, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]

    @property
    def description(self) -> str:
        cut = (f"{self.windows.window_events} events" if self.windows.window_events is not None
               else f"{self.windows.window_ms:g} ms")
        return f"{self.windows.path} ({cut} windows)"

    def _load(self, index: int) -> Frame:
        _, start, end = self.bounds[index]
        height, width = self.reader.sensor_size
        voxel = voxel_grid(as_columns(self.reader.window(start, end)), self.num_bins, height, width)
        if len(self.frame_times):
            image = self._frames.get(int(_nearest_frame(self.frame_times, end - 1)))
            if image.shape[:2] != (height, width):
                raise EventFileError(f"{self.windows.path}: frames of {image.shape[1]}x{image.shape[0]} pixels but a "
                                     f"{width}x{height} event sensor: frames and events must share the sensor")
            image = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
        else:
            image = np.zeros((height, width, 3), np.uint8)
        return Frame(self.stems[index], image, voxel, None)

    def close(self) -> None:
        self.reader.close()


def _nearest_frame(times: np.ndarray, t: int) -> int:
    """Index of the frame time nearest to ``t`` (the earlier one on a tie)."""
    if len(times) < 2:
        return 0
    right = int(np.clip(np.searchsorted(times, t), 1, len(times) - 1))
    return right if abs(int(times[right]) - t) < abs(int(times[right - 1]) - t) else right - 1


class _FrameCursor:
    """The file's frames by index, read in order: frames are asked for in time order, and readers
    such as AEDAT 4's decode them in file order only, so the generator goes on from the last one
    (and starts over for an earlier frame)."""

    def __init__(self, reader: EventReader) -> None:
        self._reader = reader
        self._frames: Iterator[tuple[int, np.ndarray]] | None = None
        self._index = -1
        self._image: np.ndarray | None = None

    def get(self, index: int) -> np.ndarray:
        if self._frames is None or index < self._index:
            self._frames, self._index = self._reader.frames(), -1
        while self._index < index:
            _, self._image = next(self._frames)
            self._index += 1
        return self._image


def open_frame_source(split: str | None, recording: str | None, events: EventWindows | None, kind: str,
                      num_bins: int) -> FrameSource:
    """The source a request names (exactly one of split list, MVSEC recording, event file)."""
    if split is not None:
        return SplitSource(split, num_bins)
    if recording is not None:
        return RecordingSource(recording, num_bins)
    return EventFileSource(events, num_bins, "image" in model_kind(kind).inputs, kind)
