"""DERD-Net (arXiv 2504.15863): semi-dense depth from event ray densities, one pixel's Sub-DSI at a time.

Importing this package registers the model kind ``derdnet``, the checkpoint family that reads the
authors' released weights and this project's DERD-Net files, the ``derdnet_points`` and
``e2depth_points`` protocols, the rows of the published table, the training stage ``derdnet`` with
its config section, and the commands ``derdnet-prepare`` and ``derdnet-infer``. Facts:
``shared/spec/derd-net.md``; use: ``docs/derdnet.md``.
"""
from fuse.methods.derdnet import metrics, published, weights  # importing them registers protocol, rows, family
from fuse.methods.derdnet import e2depth_points, infer, prepare, stages  # register protocol, commands, stage
from fuse.methods.derdnet.metrics import point_metrics
from fuse.methods.derdnet.model import (
    DEPTH_RANGES,
    DepthRange,
    DerdNet,
    DerdNetConfig,
    DerdNetEnsemble,
    argmax_depth,
    build_derdnet,
    depth_range,
    write_points,
)

__all__ = [
    "DEPTH_RANGES", "DepthRange", "DerdNet", "DerdNetConfig", "DerdNetEnsemble", "argmax_depth", "build_derdnet",
    "depth_range", "metrics", "point_metrics", "published", "weights", "write_points",
    "e2depth_points", "infer", "prepare", "stages",
]
