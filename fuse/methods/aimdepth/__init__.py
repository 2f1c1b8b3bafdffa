"""AIMDepth (CVPR 2026): asymmetric image-event Mamba for monocular depth, re-implemented without
public code (facts: ``shared/spec/aimdepth.md``; every assumption: ``docs/aimdepth.md``).

Importing this package registers the model kind ``aimdepth`` (sizes ``paper`` and ``tiny``), the
training stage ``aimdepth`` with its config section, and the rows of the paper's tables.
"""
from fuse.methods.aimdepth import published, stages  # importing them registers the rows, stage and section
from fuse.methods.aimdepth.model import SIZES, AIMDepth, AIMDepthConfig, build_aimdepth
from fuse.methods.aimdepth.scan import selective_scan, selective_scan_reference
from fuse.methods.aimdepth.spectral import SpectralSettings, spectral_prior

__all__ = ["SIZES", "AIMDepth", "AIMDepthConfig", "build_aimdepth", "selective_scan", "selective_scan_reference",
           "SpectralSettings", "spectral_prior", "published", "stages"]
