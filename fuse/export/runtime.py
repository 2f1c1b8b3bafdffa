"""Running a model through another runtime, called exactly like the PyTorch model.

* :class:`OnnxModel` runs an exported ONNX file (``python -m fuse export``) with onnxruntime on
  the CPU: ``model(*inputs)`` takes and returns torch tensors, ``model.config`` is the exported
  model's settings, so ``fuse.evaluate.inference.predict`` uses it as it uses the PyTorch model.
* :class:`OnnxRuntimeModel` wraps a PyTorch model and runs it through onnxruntime, exporting
  (and verifying, ``fuse.export.onnx``) it in memory once per input size it is called with:
  what ``infer --runtime onnx`` uses, since the input size of a run is only known from its frames.
* :func:`runtime_model` picks one of them, or ``torch.compile``, by name.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from fuse.errors import UsageError
from fuse.export.onnx import DEFAULT_OPSET, onnx_bytes, run_session, session
from fuse.export.verify import TOLERANCE, Signature, verify

RUNTIMES = ("torch", "onnx", "compile")


class ExportedSettings:
    """The builder options an export recorded (``kind``, ``head``, ``max_depth``, ...) as attributes."""

    def __init__(self, data: dict) -> None:
        self._data = dict(data)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return dict(self._data)


class OnnxModel(nn.Module):
    """An ONNX file written by ``python -m fuse export`` (or its bytes), run by onnxruntime on the CPU.

    ``forward(*inputs)`` takes the model kind's inputs in order (float tensors of the exported
    height and width, any batch size, normalized as the file's metadata says) and returns the
    output as a float32 torch tensor. It holds one empty float32 CPU parameter, so code that reads
    a model's device and dtype from its parameters sees where it runs; moving it elsewhere is refused.
    """

    def __init__(self, source: str | os.PathLike | bytes, threads: int | None = None) -> None:
        super().__init__()
        self.source = "<in-memory ONNX model>" if isinstance(source, bytes) else str(source)
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise UsageError(f"ONNX file {source} does not exist")
        self.session = session(source, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        self.signature = Signature.from_metadata(props, self.source)
        self.metadata = dict(props)
        self.config = ExportedSettings(self.signature.config)
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def _apply(self, fn, recurse: bool = True):
        result = super()._apply(fn, recurse)
        if self.anchor.device.type != "cpu" or self.anchor.dtype != torch.float32:
            self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)
            raise UsageError("an ONNX model runs on the CPU in float32 (onnxruntime's CPU kernels); "
                             "use --runtime torch for other devices or precisions")
        return result

    def __deepcopy__(self, memo: dict) -> "OnnxModel":
        return self  # the session holds no state a copy could change

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        sig = self.signature
        if len(inputs) != len(sig.inputs):
            raise UsageError(f"{self.source} takes {sig.input_names}, got {len(inputs)} inputs")
        for name, tensor in zip(sig.input_names, inputs):
            if tuple(tensor.shape[-2:]) != (sig.height, sig.width):
                height, width = tensor.shape[-2:]
                raise UsageError(f"{self.source} was exported for {sig.height}x{sig.width} inputs, got {name} of "
                                 f"{height}x{width}; export the checkpoint at that size "
                                 f"(python -m fuse export --size {height} {width})")
        return torch.from_numpy(run_session(self.session, sig, inputs))


class OnnxRuntimeModel(nn.Module):
    """``model`` run by onnxruntime: exported, verified against ``model`` and loaded once per input size.

    ``parameters()`` and ``config`` are the PyTorch model's (float32, CPU). Each export prints one
    line to stderr with its verification error.
    """

    def __init__(self, model: nn.Module, opset: int = DEFAULT_OPSET, tolerance: float = TOLERANCE) -> None:
        super().__init__()
        self.model = model
        self.opset, self.tolerance = opset, tolerance
        self._sessions: dict[tuple[int, int], OnnxModel] = {}

    @property
    def config(self):
        return self.model.config

    def session_for(self, height: int, width: int) -> OnnxModel:
        key = (int(height), int(width))
        if key not in self._sessions:
            data, signature = onnx_bytes(self.model, *key, opset=self.opset)
            exported = OnnxModel(data)
            errors, _ = verify(self.model, signature, lambda inputs: exported(*inputs).numpy(),
                               "the ONNX export", self.tolerance)
            worst = max(errors.values())
            print(f"onnx: exported {signature.kind} for {key[0]}x{key[1]} inputs; onnxruntime vs PyTorch relative "
                  f"L2 {worst:.2e}", file=sys.stderr)
            self._sessions[key] = exported
        return self._sessions[key]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in inputs):
            raise UsageError("--runtime onnx runs on the CPU in float32; use --device cpu --precision fp32")
        return self.session_for(*inputs[0].shape[-2:])(*inputs)


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` (inductor), compiled on the first call of each input shape."""
    return torch.compile(model)


def runtime_model(model: nn.Module, runtime: str, device: torch.device | str = "cpu",
                  precision: str = "fp32") -> nn.Module:
    """``model`` prepared to run with ``runtime`` (``RUNTIMES``); one message for what cannot go together."""
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    if runtime == "torch":
        return model
    if runtime == "onnx":
        if torch.device(device).type != "cpu" or precision != "fp32":
            raise UsageError("--runtime onnx runs on the CPU in float32 (onnxruntime's CPU kernels have no bfloat16 "
                             "matrix products); use --device cpu --precision fp32, or --runtime torch")
        return OnnxRuntimeModel(model)
    if precision == "bf16":
        from fuse.evaluate.inference import bfloat16_copy

        model = bfloat16_copy(model)  # compile the bfloat16 copy itself: predict() then uses it as is
    return compiled(model)

