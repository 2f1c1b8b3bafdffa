"""One table of per-dataset constants shared by loaders, training and evaluation (spec §7, §8)."""
from __future__ import annotations

import math
from dataclasses import dataclass


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
}


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name with an error that lists the known ones."""
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None
