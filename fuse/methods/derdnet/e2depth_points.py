"""The E2Depth per-frame protocol on sparse point maps: ``eval --protocol e2depth_points``.

Spec §11 asks for DERD-Net's sparse maps to be tabulated with the per-frame protocol of the
dense methods too. The computation is the built-in ``e2depth`` one unchanged: a pixel without
a point is NaN, which its step 2 (``0 < pred <= top``) leaves out, so each frame is scored on its
points with GT, and frames are averaged. Only what it scores differs: ``e2depth`` takes dense
outputs, this protocol DERD-Net's ``point_depth``, so ``eval`` checks the predictions' recorded
kind against it. MVSEC's depth range is E2Depth's (targets in [D_max e^-α, D_max] =
[1.97, 80] m), which leaves out the nearest indoor_flying GT; ``--clip-distance`` /
``--reg-factor`` choose another range.
"""
from __future__ import annotations

from types import MappingProxyType

from fuse.evaluate.protocols import E2DEPTH, Protocol, register_protocol

E2DEPTH_POINTS = register_protocol(Protocol(
    "e2depth_points",
    "E2Depth's per-frame metrics on sparse point maps (NaN = no point): DERD-Net next to the dense methods",
    ("point_depth",), MappingProxyType({"mvsec": E2DEPTH.columns["mvsec"]}), E2DEPTH.evaluate, E2DEPTH.options,
    E2DEPTH.settings))
