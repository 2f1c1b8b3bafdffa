"""Constants shared by loaders, models, training and evaluation: the per-dataset table (spec §7, §8),
the ImageNet statistics images are standardized with and the default metric depth range."""
from __future__ import annotations

import math
from dataclasses import dataclass

#: Per-channel RGB statistics Depth Anything V2 standardizes images in [0, 1] with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one dataset that more than one part of the code needs.

    ``reg_factor`` is the ``alpha`` of the normalized-log depth encoding; the evaluation keeps
    pixels with ``max_depth * exp(-reg_factor) <= depth <= max_depth``.
    """

    name: str
    max_depth: float
    reg_factor: float
    sensor_height: int
    sensor_width: int

    @property
    def min_depth(self) -> float:
        return self.max_depth * math.exp(-self.reg_factor)


DATASETS: dict[str, DatasetInfo] = {
    "mvsec": DatasetInfo("mvsec", max_depth=80.0, reg_factor=3.70378, sensor_height=260, sensor_width=346),
    "dense": DatasetInfo("dense", max_depth=1000.0, reg_factor=5.7, sensor_height=260, sensor_width=346),
    "eventscape": DatasetInfo("eventscape", max_depth=1000.0, reg_factor=5.7, sensor_height=256, sensor_width=512),
    # DSEC (fuse.prep.dsec): the rectified left event camera; no FUSE paper evaluates on DSEC, so the
    # outdoor-driving range of MVSEC (80 m, alpha 3.70378: 1.97-80 m) is this project's assumption.
    "dsec": DatasetInfo("dsec", max_depth=80.0, reg_factor=3.70378, sensor_height=480, sensor_width=640),
}

#: Metric head scale (metres) when none is given: MVSEC's, the range upstream's metric checkpoints use.
DEFAULT_MAX_DEPTH = DATASETS["mvsec"].max_depth


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name with an error that lists the known ones."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None
