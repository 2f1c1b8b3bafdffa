"""Exporting a model for one input size (ONNX, TorchScript) and running it through other runtimes.

* ``fixed.py``: :class:`FixedSizeModel`, the model with every size-dependent constant (position
  tables, FreDFuse's blur kernels, merged LoRA weights) precomputed as buffers: what is traced.
* ``verify.py``: the exported signature (input and output names, shapes, normalization) stored in
  every file, and the comparison with eager PyTorch every export passes before it is written.
* ``onnx.py`` / ``torchscript.py``: the exporters (``python -m fuse export``, ``fuse/cli/export.py``).
* ``runtime.py``: :class:`OnnxModel` (an exported file, called like the PyTorch model),
  ``infer --runtime`` (``torch``, ``onnx``, ``compile``).

``docs/export.md`` describes the command, the files and the measured speeds.
"""
from __future__ import annotations

from fuse.export.fixed import FixedSizeModel, check_export_size
from fuse.export.verify import TOLERANCE, ExportError, ExportResult, Signature

__all__ = ["TOLERANCE", "ExportError", "ExportResult", "FixedSizeModel", "Signature", "check_export_size"]
