"""The model registry: built-in kinds, and a kind defined here plugs into building, config
choices and prediction without any edit to the core."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import fuse
from fuse import registry
from fuse.train.config import load_config
from fuse.evaluate.inference import predict
from fuse.errors import ConfigError, UsageError


def test_builtin_kinds_say_what_they_take_and_give():
    assert {"depth_anything_v2", "event_student", "fuse"} <= set(fuse.list_models())
    assert registry.model_kind("fuse").inputs == ("image", "events")
    assert registry.model_kind("event_student").inputs == ("events",)
    assert registry.model_kind("depth_anything_v2").output("relative") == "relative_inverse_depth"
    assert fuse.build_model("fuse", encoder="vitt").config.head == "metric"  # the kind's default head
    with pytest.raises(UsageError, match="unknown model 'nope'; expected one of"):
        fuse.build_model("nope")


class MeanDepth(nn.Module):
    """A one-layer image model: enough to show a new kind needs no core edit."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.config = SimpleNamespace(kind="mean_depth", head="metric", event_bins=3)
        self.conv = nn.Conv2d(3, 1, 1)
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(self.conv(image))[:, 0]


@pytest.fixture
def mean_depth(monkeypatch):
    monkeypatch.setattr(registry.MODELS, "entries", dict(registry.MODELS.entries))  # for this test only
    return registry.register_model(registry.ModelKind(
        "mean_depth", MeanDepth, ("image",), {"metric": "metric_depth"}, (), "test kind"))


def test_a_new_kind_builds_is_a_config_choice_and_predicts(mean_depth):
    assert "mean_depth" in fuse.list_models()
    model = fuse.build_model("mean_depth", scale=20.0)
    assert isinstance(model, MeanDepth) and model.scale == 20.0
    assert load_config(None, ["model.kind=mean_depth"])["model"]["kind"] == "mean_depth"
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    depth = predict(model, image, None, size=56)
    assert depth.shape == (30, 40) and ((depth > 0) & (depth < 20)).all()


def test_unregistered_kinds_are_refused_by_the_config():
    with pytest.raises(ConfigError, match="model.kind' must be one of null, .*depth_anything_v2") as refused:
        load_config(None, ["model.kind=mean_depth"])
    assert all(kind in str(refused.value) for kind in registry.list_models())


def test_kinds_must_use_the_vocabulary():
    with pytest.raises(ValueError, match="inputs are"):
        registry.ModelKind("bad", MeanDepth, ("pixels",), {"metric": "metric_depth"}, (), "")
