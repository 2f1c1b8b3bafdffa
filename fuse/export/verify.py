"""What an exported file promises, and the check that it keeps the promise.

Every export is run on seeded random inputs at batch sizes 1 (the trace used 2, so a batch size
baked into the graph is caught) and 2 (samples kept apart) and compared with the eager PyTorch
model by relative L2 error, ``||exported - eager|| / ||eager||``, before the file is renamed
into place.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fuse.data.constants import IMAGENET_MEAN, IMAGENET_STD
from fuse.errors import FuseError, UsageError
from fuse.registry import model_kind

TOLERANCE = 1e-4
TRACE_BATCH = 2
VERIFY_BATCHES = (1, 2)  # 1: no batch size baked into the graph; 2: samples are not mixed
SEED = 0

INPUT_MEANING = {
    "image": (f"ImageNet-normalized RGB, float32 (B, 3, H, W): (rgb - mean) / std with rgb in [0, 1], "
              f"mean {IMAGENET_MEAN}, std {IMAGENET_STD}, resized to HxW (bicubic, "
              "fuse.evaluate.inference.network_inputs) - not a raw [0, 1] image"),
    "events": ("event voxel grid, float32 (B, bins, H, W), resized to HxW (bicubic), then the non-zero entries "
               "of each sample standardized to mean 0 and std 1 (fuse.events.normalize_voxel)"),
}
OUTPUT_MEANING = {
    "metric_depth": "metric depth in metres, float32 (B, H, W), in (0, max_depth)",
    "relative_inverse_depth": "relative inverse depth (disparity-like, larger is nearer), float32 (B, H, W), >= 0",
}


class ExportError(FuseError, RuntimeError):
    """An export that does not reproduce the PyTorch model (nothing is written)."""


@dataclass(frozen=True)
class Signature:
    """Names, shapes and meaning of an exported model's inputs and output (``-1``: the free batch axis)."""

    kind: str
    height: int
    width: int
    inputs: tuple[dict, ...]
    output: dict
    config: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, height: int, width: int) -> "Signature":
        config = model.config
        kind = model_kind(config.kind)
        unsupported = [name for name in kind.inputs if name not in INPUT_MEANING]
        if unsupported:
            raise UsageError(f"export takes models fed with images and event voxel grids; a {config.kind} model "
                             f"also takes {unsupported}")
        channels = {"image": 3, "events": getattr(config, "event_bins", None)}
        if "events" in kind.inputs and not channels["events"]:
            raise UsageError(f"a {config.kind} model does not record its event bins (config.event_bins); cannot export")
        inputs = tuple({"name": name, "shape": ["batch", channels[name], height, width], "dtype": "float32",
                        "expects": INPUT_MEANING[name]} for name in kind.inputs)
        output_name = kind.output(config.head)
        meaning = OUTPUT_MEANING.get(output_name, output_name)
        if output_name == "metric_depth":
            meaning = meaning.replace("max_depth", f"max_depth = {float(config.max_depth):g} m")
        output = {"name": output_name, "shape": ["batch", height, width], "dtype": "float32", "means": meaning}
        return cls(config.kind, height, width, inputs, output, config.to_dict())

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.inputs]

    def input_shape(self, name: str, batch: int) -> tuple[int, ...]:
        spec = next(spec for spec in self.inputs if spec["name"] == name)
        return (batch, *spec["shape"][1:])

    def metadata(self) -> dict[str, str]:
        """String key/values (ONNX ``metadata_props``, a TorchScript extra file)."""
        return {"fuse.format": "fuse-export/1", "fuse.kind": self.kind, "fuse.size": f"{self.height}x{self.width}",
                "fuse.model": json.dumps(_jsonable(self.config), sort_keys=True),
                "fuse.inputs": json.dumps(list(self.inputs)), "fuse.outputs": json.dumps([self.output])}

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str) -> "Signature":
        if props.get("fuse.format") != "fuse-export/1":
            raise UsageError(f"{source} was not written by python -m fuse export (no fuse.format metadata)")
        height, width = (int(v) for v in props["fuse.size"].split("x"))
        return cls(props["fuse.kind"], height, width, tuple(json.loads(props["fuse.inputs"])),
                   json.loads(props["fuse.outputs"])[0], json.loads(props["fuse.model"]))


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def random_inputs(signature: Signature, batch: int, seed: int = SEED) -> tuple[torch.Tensor, ...]:
    """Standard-normal inputs (what normalized images and standardized voxels look like), seeded."""
    generator = torch.Generator().manual_seed(seed + batch)
    return tuple(torch.randn(signature.input_shape(name, batch), generator=generator)
                 for name in signature.input_names)


def relative_l2(output: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    """``||output - reference|| / ||reference||`` in float64 (0 when both are all zeros)."""
    output = np.asarray(output, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if output.shape != reference.shape:
        return math.inf
    difference, norm = np.linalg.norm(output - reference), np.linalg.norm(reference)
    return float(difference / norm) if norm > 0 else (0.0 if difference == 0 else math.inf)


def eager_reference(model: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The PyTorch model's own output: eval mode, float32, no gradients."""
    with torch.inference_mode():
        return model(*inputs).float()


def verify(model: nn.Module, signature: Signature, run: Callable[[tuple[torch.Tensor, ...]], np.ndarray],
           what: str, tolerance: float = TOLERANCE,
           batches: Sequence[int] = VERIFY_BATCHES) -> tuple[dict[int, float], bool]:
    """Relative L2 error of ``run`` against the eager model per batch size (``ExportError`` above
    ``tolerance``), and whether the eager output was constant (then the check compares little: an
    untrained relative head's ReLU gives zeros everywhere). The eager model runs once, on the
    largest batch; smaller batches are its first samples."""
    inputs = random_inputs(signature, max(batches))
    reference = eager_reference(model, inputs)
    errors = {}
    for batch in batches:
        output = run(tuple(tensor[:batch] for tensor in inputs))
        errors[batch] = relative_l2(output, reference[:batch])
        if not errors[batch] <= tolerance:
            raise ExportError(f"{what} differs from the PyTorch model: relative L2 error {errors[batch]:.3g} at batch "
                              f"{batch} (shape {tuple(np.shape(output))} vs {tuple(reference[:batch].shape)}), "
                              f"tolerance {tolerance:g}; nothing written")
    return errors, bool((reference == reference.flatten()[0]).all())


CONSTANT_NOTE = ("note: the PyTorch model's output is constant on random inputs (an untrained head?), so this "
                 "check compares little; verify on real data too")


@dataclass(frozen=True)
class ExportResult:
    """A written export and how closely it reproduces PyTorch."""

    path: Path
    format: str
    signature: Signature
    errors: dict[int, float]
    tolerance: float
    seconds: float
    runtime: str
    constant: bool = False

    def summary(self) -> str:
        sig = self.signature
        size_mb = self.path.stat().st_size / 1e6
        errors = ", ".join(f"batch {batch}: {error:.2e}" for batch, error in self.errors.items())
        inputs = ", ".join(f"{spec['name']} {spec['shape']}" for spec in sig.inputs)
        return (f"export: {sig.kind} ({sig.config.get('encoder', '?')}, {sig.config.get('head', '?')} head) at "
                f"{sig.height}x{sig.width} -> {self.path} ({self.format}, {size_mb:.1f} MB, {self.seconds:.1f} s)\n"
                f"verified with {self.runtime} against PyTorch on random inputs: relative L2 {errors} "
                f"(tolerance {self.tolerance:g})\n"
                f"inputs: {inputs} (normalized as the model's forward expects; see the file's metadata); "
                f"output: {sig.output['name']} {sig.output['shape']}" + (f"\n{CONSTANT_NOTE}" if self.constant else ""))
