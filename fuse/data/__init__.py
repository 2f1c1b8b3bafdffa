"""Data: the processed layout (its files, readers and checks), its dataset, transforms (spec §4)
and degradations (spec §5).

Names are resolved lazily so that ``import fuse.data.constants`` (used by evaluation and by the
event code) does not pull in torch and OpenCV or create import cycles.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DATASETS": "fuse.data.constants",
    "DatasetInfo": "fuse.data.constants",
    "dataset_info": "fuse.data.constants",
    "EventDepthDataset": "fuse.data.dataset",
    "valid_depth_mask": "fuse.data.dataset",
    "DataFormatError": "fuse.errors",
    "read_split_list": "fuse.data.layout",
    "DEGRADATIONS": "fuse.data.degradations",
    "Degradation": "fuse.data.degradations",
    "build_degradation": "fuse.data.degradations",
    "SampleTransform": "fuse.data.transforms",
    "lower_bound_size": "fuse.data.transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fuse.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
