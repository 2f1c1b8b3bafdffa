"""Training stages as data: what a stage builds, trains, loads and compares.

The training loop in ``fuse.train.trainer`` is the same for every stage of every method; a
stage only says which student and teacher to build, which parameters train (and which get the
boosted lr), which checkpoints start it, which losses apply and what picks ``best.pth``.
Methods register their stages in their own package (``fuse.methods.<method>.stages``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from torch import nn

from fuse.errors import ConfigError
from fuse.train.config import InitSection
from fuse.registry import Registry
from fuse.train.dense_depth import DENSE_DEPTH
from fuse.train.tasks import Task


class Loader(Protocol):
    """How a stage loads a checkpoint into its student (the trainer logs what was loaded)."""

    def __call__(self, model: nn.Module, path: str, into: str | list[str] | None = None) -> None: ...


@dataclass(frozen=True)
class InitFile:
    """A checkpoint a stage reads from ``init.<key>``: which kinds of file hold what it needs.

    ``kinds`` maps the student's model kind to the file kinds that fit (``fuse.weights``
    classifies files by their tensors); ``made_by`` says where the right file comes from.
    ``head`` is the head ending the file must have where it records one.
    """

    key: str
    kinds: dict[str, tuple[str, ...]]
    made_by: dict[str, str]
    required: bool = True
    head: str | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    student: str  # default model kind; ``model.kind`` may swap it (e.g. image-only baselines in adapt)
    student_head: str  # relative | metric
    uses_teacher: bool
    losses: tuple[str, ...]
    trainable: Callable[[str], bool]
    boosted_lr: Callable[[str], bool]
    description: str
    init_files: tuple[InitFile, ...] = ()
    kinds: tuple[str, ...] = ()  # student kinds ``model.kind`` may choose (default: just ``student``)
    # How the student starts: ``initialize(load, student, config.init)`` with the typed init.* section.
    initialize: Callable[[Loader, nn.Module, InitSection], None] = lambda load, student, init: None
    teacher: str = "depth_anything_v2"  # model kind of the frozen teacher (with ``uses_teacher``)
    teacher_init: str = "depth_anything"  # the ``init.<key>`` checkpoint the teacher loads
    select_by: str = "loss"  # validation metric (lower is better) that picks best.pth
    task: Task = DENSE_DEPTH  # the data, losses, validation metrics and panels (fuse.train.tasks)
    depth_metrics: bool = False  # validate with the evaluation protocol's depth metrics
    panel_depth: bool = False  # TensorBoard panels show the ground-truth depth

    def student_kinds(self) -> tuple[str, ...]:
        return self.kinds or (self.student,)


STAGES: Registry[Stage] = Registry("stage", ConfigError)


def register_stage(stage: Stage) -> Stage:
    """Add a training stage; ``python -m fuse <name>`` and ``stage: <name>`` configs run it."""
    return STAGES.register(stage.name, stage)


def stage_named(name: str) -> Stage:
    return STAGES.get(name)
