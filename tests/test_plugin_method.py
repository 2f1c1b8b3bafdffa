"""A method plugs in without touching a core file: a tiny model kind and a training stage are
defined and registered here, trained for a few steps through ``python -m fuse`` and evaluated
with ``python -m fuse eval --checkpoint``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pytest
import torch
from torch import nn

from fuse import registry
from fuse.cli import main as fuse_main
from fuse.train import stages
from fuse.checkpoint import save_checkpoint
from fuse.train.config import load_config
from fuse.testing.fixtures import write_split


@dataclass(frozen=True)
class PixelDepthConfig:
    kind: str = "pixel_depth"
    head: str = "metric"
    max_depth: float = 20.0
    event_bins: int = 3
    width: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class PixelDepth(nn.Module):
    """Per-pixel depth from the image through two 1x1 convolutions."""

    def __init__(self, config: PixelDepthConfig) -> None:
        super().__init__()
        self.config = config
        self.hidden = nn.Conv2d(3, config.width, 1)
        self.out = nn.Conv2d(config.width, 1, 1)

    def forward(self, image: torch.Tensor, return_features: bool = False):
        features = torch.relu(self.hidden(image))
        depth = self.config.max_depth * torch.sigmoid(self.out(features))[:, 0]
        return (depth, [features]) if return_features else depth


def build_pixel_depth(head: str = "metric", max_depth: float = 20.0, event_bins: int = 3, width: int = 8,
                      **unused_options) -> PixelDepth:
    return PixelDepth(PixelDepthConfig(head=head, max_depth=max_depth, event_bins=event_bins, width=width))


PIXEL_DEPTH = registry.ModelKind("pixel_depth", build_pixel_depth, ("image",), {"metric": "metric_depth"}, (),
                                 "two 1x1 convolutions from RGB to metric depth")
SUPERVISED = stages.Stage("pixel_supervised", "pixel_depth", "metric", False, ("silog",), lambda name: True,
                          lambda name: False, "supervised metric depth for the pixel_depth test method",
                          select_by="abs_rel", depth_metrics=True, panel_depth=True)


@pytest.fixture
def plugged_in(monkeypatch):
    """The test method, registered for this test only."""
    monkeypatch.setattr(registry.MODELS, "entries", dict(registry.MODELS.entries))
    monkeypatch.setattr(stages.STAGES, "entries", dict(stages.STAGES.entries))
    registry.register_model(PIXEL_DEPTH)
    stages.register_stage(SUPERVISED)


def _abs_rel(tmp_path, checkpoint, split, name: str) -> float:
    report = tmp_path / f"{name}.json"
    assert fuse_main(["eval", "--checkpoint", str(checkpoint), "--split", str(split), "--pred", str(tmp_path / name),
                      "--json", str(report), "--no-progress"]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["frames"] == 8
    return metrics["abs_rel"]


def test_a_new_kind_and_stage_train_and_evaluate_through_the_commands(plugged_in, tmp_path):
    split = write_split(tmp_path / "data", frames=8)
    out = tmp_path / "run"
    settings = {"data.train_split": split, "data.val_split": split, "data.dataset": "mvsec", "data.input_size": 56,
                "data.workers": 0, "model.max_depth": 20, "optim.batch_size": 4, "optim.epochs": 40,
                "optim.lr": 3e-2, "optim.boosted_lr_mult": 1, "run.output_dir": out, "run.log_every": 1}
    argv = ["pixel_supervised", *sum((["--set", f"{key}={value}"] for key, value in settings.items()), [])]
    assert fuse_main(argv) == 0
    assert (out / "model.pth").is_file() and (out / "best.pth").is_file()

    torch.manual_seed(0)
    untrained = save_checkpoint(tmp_path / "untrained.pth", build_pixel_depth(),
                                run_config=load_config(None, ["data.dataset=mvsec", "data.input_size=56"]))
    trained_error = _abs_rel(tmp_path, out / "model.pth", split, "trained")
    assert trained_error < 0.5 * _abs_rel(tmp_path, untrained, split, "untrained")
