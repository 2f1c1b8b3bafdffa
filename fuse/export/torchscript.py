"""Export to TorchScript at one input size: the traced :class:`fuse.export.fixed.FixedSizeModel`.

The same trace as the ONNX export (every size-dependent constant precomputed, dynamic batch),
saved with ``torch.jit.save``; the signature is stored as the extra file ``fuse.json``. The
file is loaded back and compared with the eager model before it is written. torch 2.14 marks
``torch.jit`` deprecated (its warnings are silenced here); the file keeps every parameter of
the model, including the unmerged LoRA tensors, so it is larger than the ONNX file.
"""
from __future__ import annotations

import io
import json
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from fuse.atomic import check_writable, write_bytes_atomic
from fuse.export.fixed import check_export_size, one_thread
from fuse.export.onnx import model_refusals, prepare
from fuse.export.verify import TOLERANCE, TRACE_BATCH, ExportResult, random_inputs, verify

EXTRA_FILE = "fuse.json"


def export_torchscript(model: nn.Module, out: str | os.PathLike, height: int, width: int,
                       tolerance: float = TOLERANCE, extra_metadata: dict[str, str] | None = None) -> ExportResult:
    """Trace ``model`` for ``height x width`` inputs, check the reloaded file against the eager model
    at two batch sizes, then write it atomically (``ExportError`` and nothing written if it differs)."""
    out = Path(out)
    check_export_size(height, width)
    check_writable(out.parent, create=False)
    started = time.perf_counter()
    model, fixed, signature, _ = prepare(model, height, width)
    with one_thread(), torch.no_grad(), warnings.catch_warnings(), model_refusals(signature):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*deprecated")
        traced = torch.jit.trace(fixed, random_inputs(signature, TRACE_BATCH), check_trace=False)
        metadata = {**signature.metadata(), "fuse.torch": torch.__version__, **(extra_metadata or {})}
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata)})
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")

    def run(inputs):
        with torch.inference_mode():
            return loaded(*inputs).numpy()

    errors, constant = verify(model, signature, run, "the TorchScript export", tolerance)
    write_bytes_atomic(out, buffer.getvalue())
    return ExportResult(out, "torchscript", signature, errors, tolerance, time.perf_counter() - started,
                        f"torch.jit {torch.__version__}", constant)
