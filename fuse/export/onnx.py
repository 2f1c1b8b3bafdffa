"""Export to ONNX at one input size, verified with onnxruntime before the file is written.

The graph is traced from :class:`fuse.export.fixed.FixedSizeModel` (every size-dependent constant
precomputed) with torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``),
which needs only ``onnx``. With the installed torch 2.14 the dynamo exporter (``dynamo=True``,
which also needs ``onnxscript``) fails on the plain FUSE model while decomposing the graph
(``IndexError`` in ``set_missing_meta_vals``); on the fixed-size wrapper it works, with a
smaller graph (2155 against 6236 nodes) that onnxruntime runs no faster (1.08 against 0.97 s,
fuse vits 266x266), but takes about 4x longer (67 against 17 s; DA-V2 vits: 32 against 6 s).
The batch axis is dynamic; height and
width are fixed. What the inputs hold (normalized images, standardized voxels) and what the
output means are stored in the file's ``metadata_props`` (:meth:`Signature.metadata`), with
the PyTorch comparison.
"""
from __future__ import annotations

import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fuse.atomic import check_writable, write_bytes_atomic
from fuse.errors import UsageError
from fuse.export.fixed import FixedSizeModel, check_export_size, one_thread
from fuse.export.verify import TOLERANCE, TRACE_BATCH, ExportResult, Signature, random_inputs, verify

DEFAULT_OPSET = 17  # scaled_dot_product_attention and LayerNormalization export as single ops from 17 on
PROTOBUF_LIMIT = 2 ** 31 - 1 - (64 << 20)  # ONNX files are one protobuf; keep a margin for the graph


def _onnx_modules():
    """``onnx`` and ``onnxruntime``, or one message saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise UsageError(f"ONNX export needs the onnx and onnxruntime packages ({error.name} is missing): "
                         "pip install 'fuse-depth[export]' or pip install onnx onnxruntime") from None
    return onnx, onnxruntime


def prepare(model: nn.Module, height: int, width: int) -> tuple[nn.Module, FixedSizeModel, Signature, int]:
    """The model (put in eval mode, float32, on the CPU), its fixed-size wrapper, signature and weight bytes."""
    check_export_size(height, width)
    model = model.float().cpu().eval()
    signature = Signature.of(model, height, width)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return model, FixedSizeModel(model, height, width).eval(), signature, weight_bytes


@contextmanager
def model_refusals(signature: Signature) -> Iterator[None]:
    """A model that refuses the size (FUSE needs 56 px per side) as one message."""
    try:
        yield
    except ValueError as error:
        raise UsageError(f"cannot export a {signature.kind} model at {signature.height}x{signature.width}: "
                         f"{error}") from None


def onnx_bytes(model: nn.Module, height: int, width: int, opset: int = DEFAULT_OPSET) -> tuple[bytes, Signature]:
    """The serialized ONNX model (metadata included, not yet verified) and its signature."""
    onnx, _ = _onnx_modules()
    model, fixed, signature, weight_bytes = prepare(model, height, width)
    if weight_bytes > PROTOBUF_LIMIT:
        raise UsageError(f"the {signature.kind} model holds {weight_bytes / 1e9:.1f} GB of weights; one ONNX file "
                         "is limited to 2 GB and external-data export is not implemented (export a smaller encoder)")
    names, output = signature.input_names, signature.output["name"]
    buffer = io.BytesIO()
    example = random_inputs(signature, TRACE_BATCH)
    with one_thread(), torch.no_grad(), warnings.catch_warnings(), model_refusals(signature):
        # Python-level shape checks become constants of the fixed-size graph: expected, not a problem.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*dynamo.*")
        torch.onnx.export(fixed, example, buffer, dynamo=False, opset_version=opset, input_names=names,
                          output_names=[output], dynamic_axes={name: {0: "batch"} for name in [*names, output]},
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {**signature.metadata(), "fuse.opset": str(opset),
                                        "fuse.torch": torch.__version__})
    proto.doc_string = (f"{signature.kind} at {height}x{width} (dynamic batch), exported by python -m fuse export; "
                        f"inputs: {json.dumps(list(signature.inputs))}; output: {json.dumps(signature.output)}")
    return proto.SerializeToString(), signature


def session(data: bytes | str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for a file or serialized model."""
    _, ort = _onnx_modules()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    source = data if isinstance(data, bytes) else os.fspath(data)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_session(sess, signature: Signature, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    feeds = {name: np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)
             for name, tensor in zip(signature.input_names, inputs)}
    return sess.run(None, feeds)[0]


def export_onnx(model: nn.Module, out: str | os.PathLike, height: int, width: int, opset: int = DEFAULT_OPSET,
                tolerance: float = TOLERANCE, extra_metadata: dict[str, str] | None = None) -> ExportResult:
    """Export ``model`` for ``height x width`` inputs to ``out``: traced, verified with onnxruntime
    against the eager model at two batch sizes, then written atomically (nothing is written when the
    check fails: ``ExportError``). ``extra_metadata`` (e.g. the checkpoint's name and hash) is stored too."""
    out = Path(out)
    check_export_size(height, width)
    check_writable(out.parent, create=False)
    onnx, ort = _onnx_modules()
    started = time.perf_counter()
    data, signature = onnx_bytes(model, height, width, opset)
    sess = session(data)
    errors, constant = verify(model, signature, lambda inputs: run_session(sess, signature, inputs), "the ONNX export",
                    tolerance)
    proto = onnx.load_from_string(data)
    verified = {"runtime": f"onnxruntime {ort.__version__}", "relative_l2": {str(b): e for b, e in errors.items()},
                "tolerance": tolerance}
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(extra_metadata or {})
    props["fuse.verified"] = json.dumps(verified)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    write_bytes_atomic(out, proto.SerializeToString())
    return ExportResult(out, "onnx", signature, errors, tolerance, time.perf_counter() - started,
                        f"onnxruntime {ort.__version__} (CPU)", constant)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (the weights are not loaded)."""
    onnx, _ = _onnx_modules()
    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
