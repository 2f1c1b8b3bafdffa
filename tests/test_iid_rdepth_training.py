"""The ``restore`` stage in the shared engine on a tiny prepared split: it loads the frozen base from
``init.foundation``, lowers the loss on degraded samples, changes only the plug-in's parameters and
writes a checkpoint that rebuilds the wrapper; misconfigurations are refused by key."""
import pytest
import torch

import fuse
from fuse.checkpoint import read_checkpoint, save_checkpoint
from fuse.errors import ConfigError
from fuse.testing.fixtures import write_split
from fuse.train.config import TrainConfig, load_config
from fuse.train.trainer import Trainer
from fuse.weights import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("iid_rdepth")
    split = write_split(root / "data", frames=8)
    torch.manual_seed(0)
    base = fuse.build_model("depth_anything_v2", encoder="vitt", head="metric", max_depth=80.0)
    return root, split, save_checkpoint(root / "base.pth", base)


def _config(root, split, foundation, **extra) -> TrainConfig:
    items = {"model.kind": "iid_rdepth", "model.encoder": "vitt", "data.dataset": "mvsec", "data.train_split": split,
             "data.val_split": split, "data.input_size": 56, "data.workers": 0, "data.degradation": "low_light",
             "optim.batch_size": 2, "optim.lr": 1e-3, "optim.epochs": 3, "run.output_dir": root / "run",
             "run.log_every": 1, "init.foundation": foundation, "iid_rdepth.restorer_width": 16,
             "iid_rdepth.diffusion_steps": 2, "iid_rdepth.feature_match": 0.1}
    items.update(extra)
    return TrainConfig.from_dict(load_config(None, [f"{k}={v}" for k, v in items.items()], stage="restore"))


def _loss(trainer, batch) -> float:
    trainer.student.eval()
    with torch.no_grad():
        loss = float(trainer.compute_losses(batch)[0])
    trainer.student.train()
    return loss


def test_restore_stage_trains_only_the_plug_in_and_lowers_the_loss(workspace):
    root, split, foundation = workspace
    trainer = Trainer(_config(root, split, foundation, **{"iid_rdepth.aux_view": "events"}))
    saved = read_checkpoint(foundation)["model"]
    assert all(torch.equal(trainer.student.base.state_dict()[k], v) for k, v in saved.items())  # loaded
    batch = next(iter(trainer._loader(trainer.val_set)))
    assert "image_clean" in batch  # the degradation's clean/degraded pair (feature matching)
    before_loss = _loss(trainer, batch)
    before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    result = trainer.fit()
    assert {"silog", "feature_match"} <= set(result["history"][0])
    after = trainer.student.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not any(k.startswith("base.") for k in changed)  # the base stays as loaded
    assert {k.split(".")[0] for k in changed} >= {"restorer", "fine", "av_lfe", "event_features"}
    assert _loss(trainer, batch) < before_loss
    loaded, _ = load_model(root / "run" / "model.pth")
    assert loaded.config == trainer.student.config


def test_misconfigurations_are_refused_by_key(workspace):
    root, split, foundation = workspace
    with pytest.raises(ConfigError, match="iid_rdepth.aux_view"):
        _config(root, split, foundation, **{"iid_rdepth.aux_view": "right"})
    with pytest.raises(ConfigError, match="iid_rdepth.restore_levels"):
        Trainer(_config(root, split, foundation, **{"iid_rdepth.restore_levels": "2,4"}))
    with pytest.raises(ConfigError, match="feature_match"):
        Trainer(_config(root, split, foundation, **{"data.degradation": "none"}))
