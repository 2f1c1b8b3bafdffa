"""The training engine: each stage learns and trains only its parameters; resume is exact;
DDP with two gloo processes; the stage scripts run end to end."""
import os
import subprocess
import sys
from dataclasses import FrozenInstanceError, fields, is_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import get_type_hints

import pytest
import torch
import yaml

from fuse.checkpoint import read_checkpoint
from fuse.train.config import SCHEMA, ConfigError, TrainConfig, dump_config, load_config
from fuse.train.trainer import Trainer, train
from fuse.testing.fixtures import write_split, write_teacher

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    split = write_split(root / "data", frames=8)
    teacher = write_teacher(root / "dav2.pth")
    return root, split, teacher


def overrides(split, out, **extra):
    items = {"model.encoder": "vitt", "data.dataset": "mvsec", "data.train_split": split, "data.val_split": split,
             "data.input_size": 56, "data.workers": 0, "optim.batch_size": 2, "optim.lr": 1e-3, "optim.epochs": 2,
             "run.output_dir": out, "run.log_every": 1}
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def stage_config(stage, split, out, **extra) -> TrainConfig:
    return TrainConfig.from_dict(load_config(None, overrides(split, out, **extra), stage=stage))


def _eval_loss(trainer, batch):
    trainer.student.eval()
    with torch.no_grad():
        loss = float(trainer.compute_losses(batch)[0])
    trainer.student.train()
    return loss


def _run_stage(stage, split, out, **extra):
    trainer = Trainer(stage_config(stage, split, out, **extra))
    batch = next(iter(trainer._loader(trainer.val_set)))
    before_loss = _eval_loss(trainer, batch)
    before = {k: v.detach().clone() for k, v in trainer.student.state_dict().items()}
    trainer.fit()
    after = trainer.student.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    return before_loss, _eval_loss(trainer, batch), changed


def test_three_stages_learn_and_train_only_their_parameters(workspace):
    root, split, teacher = workspace
    before, after, changed = _run_stage("align", split, root / "align", **{"init.depth_anything": teacher, "optim.epochs": 4})
    assert after < before
    assert changed and all(".lora_" in k or (k.startswith("pretrained.") and ".blocks." not in k) for k in changed)
    assert any(".lora_B" in k for k in changed) and "pretrained.pos_embed" in changed
    assert not any(k.startswith("depth_head.") for k in changed)

    before, after, changed = _run_stage("fuse", split, root / "fuse", **{
        "init.depth_anything": teacher, "init.event_encoder": root / "align" / "model.pth",
        "data.degradation": "fuse_stage2", "optim.epochs": 3})
    assert after < before
    assert changed and all(k.startswith("prompt_fuse.") for k in changed)

    before, after, changed = _run_stage("adapt", split, root / "adapt", **{
        "init.foundation": root / "fuse" / "model.pth", "optim.epochs": 3})
    assert after < before
    assert changed and all(k.startswith("depth_head.") for k in changed)
    assert {p.name for p in (root / "adapt").iterdir()} >= {"latest.pth", "best.pth", "model.pth", "config.yaml", "train.log", "tb"}
    saved = read_checkpoint(root / "adapt" / "latest.pth")
    assert saved["epoch"] == 3 and set(saved) >= {"optimizer", "scheduler", "rng", "best", "run_config"}
    assert "optimizer" not in read_checkpoint(root / "adapt" / "model.pth")


def test_resume_reproduces_the_uninterrupted_run(workspace):
    root, split, teacher = workspace
    align = root / "align_for_resume"
    train(stage_config("align", split, align, **{"init.depth_anything": teacher, "optim.max_steps": 2}))
    fuse_args = {"init.depth_anything": teacher, "init.event_encoder": align / "model.pth", "optim.epochs": 2,
                 "data.degradation": "fuse_stage2"}
    full = train(stage_config("fuse", split, root / "full", **fuse_args))["history"]
    cut = root / "cut"
    first = train(stage_config("fuse", split, cut, **fuse_args, **{"optim.max_steps": 5}))["history"]
    rest = train(stage_config("fuse", split, cut, **fuse_args), resume=True)["history"]
    assert len(first) == 5 and len(first) + len(rest) == len(full)
    assert [h["loss"] for h in first + rest] == pytest.approx([h["loss"] for h in full], rel=1e-6, abs=1e-8)


def test_config_errors_name_the_key(workspace):
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(None, ["data.dataset=kitti"])
    with pytest.raises(ConfigError, match="optim.epochs.*int"):
        load_config(None, ["optim.epochs=ten"])


def test_config_sections_have_exactly_the_schema_keys():
    """The typed sections are declared by hand: they must not drift from SCHEMA (names and order)."""
    hints = get_type_hints(TrainConfig)
    assert [field.name for field in fields(TrainConfig) if field.name != "methods"] == list(SCHEMA)
    for field in fields(TrainConfig):
        if field.name == "methods":  # method sections are made from their keys (register_section)
            continue
        section = hints[field.name]
        if isinstance(SCHEMA[field.name], dict):
            assert is_dataclass(section), field.name
            assert [f.name for f in fields(section)] == list(SCHEMA[field.name]), field.name
        else:
            assert not is_dataclass(section), field.name


def test_typed_config_reads_and_writes_the_checked_dict(tmp_path):
    checked = load_config(None, ["optim.betas=[0.8, 0.99]", "run.seed=7", "init.foundation=f.pth",
                                 "optim.lr=1e-4"], stage="fuse")
    typed = TrainConfig.from_dict(checked)
    assert (typed.stage, typed.run.seed, typed.init.foundation, typed.optim.lr) == ("fuse", 7, "f.pth", 1e-4)
    assert typed.optim.betas == (0.8, 0.99) and typed.model.kind is None
    assert typed.to_dict() == checked and list(typed.to_dict()) == list(checked)
    with pytest.raises(FrozenInstanceError):
        typed.run.seed = 1
    dump_config(typed, tmp_path / "config.yaml")
    assert (tmp_path / "config.yaml").read_text() == yaml.safe_dump(checked, sort_keys=False)
    assert load_config(tmp_path / "config.yaml") == checked


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


def test_two_process_gloo_run_writes_one_checkpoint(workspace):
    root, split, teacher = workspace
    out = root / "ddp"
    args = overrides(split, out, **{"init.depth_anything": teacher, "optim.epochs": 1})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561", "-m", "fuse", "align"]
    for item in args:
        cmd += ["--set", item]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = read_checkpoint(out / "latest.pth")
    assert len(state["rng"]) == 2 and state["step"] == 2  # 8 samples / (2 ranks x batch 2)
    assert sorted(p.name for p in out.glob("*.pth")) == ["best.pth", "latest.pth", "model.pth"]


def test_stage_scripts_chain_by_default_paths(workspace):
    root, split, teacher = workspace
    env = {**_env(), "ENCODER": "vitt", "DATASET": "mvsec", "DAV2": str(teacher), "TRAIN_SPLIT": str(split),
           "VAL_SPLIT": str(split)}
    tiny = ["--set", "data.input_size=56", "--set", "data.workers=0", "--set", "optim.batch_size=4",
            "--set", "optim.epochs=1"]
    runs = root / "runs"
    for script, out in (("align_feature.sh", "align_vitt"), ("fuse_feature.sh", "fuse_vitt"), ("train.sh", "adapt")):
        extra = {"OUT": str(runs / out), "EVENT_ENCODER": str(runs / "align_vitt" / "model.pth"),
                 "FOUNDATION": str(runs / "fuse_vitt" / "model.pth")}
        result = subprocess.run(["bash", script, *tiny], capture_output=True, text=True, env={**env, **extra}, cwd=ROOT,
                                timeout=300)
        assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
        assert (runs / out / "model.pth").is_file()
    bad = subprocess.run(["bash", "train.sh", "--set", "optim.nope=1"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 2 and "optim.nope" in bad.stderr and "Traceback" not in bad.stderr
    assert subprocess.run(["bash", "train.sh", "-h"], capture_output=True, text=True, cwd=ROOT).stdout.startswith("Usage")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_load(path):
    checked = load_config(path)
    from fuse.train.stages import STAGES

    assert checked["stage"] in STAGES.names()
    assert TrainConfig.from_dict(checked).to_dict() == checked


def test_a_method_section_is_checked_and_typed_like_core_keys():
    from fuse.train.config import METHOD_SCHEMA, METHOD_SECTIONS, Key, register_section

    try:
        register_section("toy_method", {"folds": Key(3, "folds", low=1), "split": Key("all", "split", choices=("all", "even"))},
                         "a test method's options")
        config = TrainConfig.from_dict(load_config(None, ["toy_method.split=even"]))
        assert config.section("toy_method").split == "even" and config.section("toy_method").folds == 3
        assert config.to_dict()["toy_method"] == {"folds": 3, "split": "even"}
        with pytest.raises(ConfigError, match="toy_method.folds"):
            load_config(None, ["toy_method.folds=0"])
        with pytest.raises(ConfigError, match="toy_method.nope"):
            load_config(None, ["toy_method.nope=1"])
    finally:
        METHOD_SCHEMA.pop("toy_method", None)
        METHOD_SECTIONS.pop("toy_method", None)


@pytest.mark.parametrize("overrides, factors", [
    (["optim.schedule=step", "optim.step_epochs=2", "optim.step_gamma=0.5"], [1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5,
                                                                              0.5, 0.25]),
    (["optim.poly_power=1"], [1 - step / 12 for step in range(13)]),
])
def test_learning_rate_schedules(overrides, factors):
    """Step decay (FCFR-Net's x0.1 every 10 epochs) counts epochs of 3 steps; poly spans all 12 steps."""
    config = TrainConfig.from_dict(load_config(None, overrides))
    trainer = SimpleNamespace(config=config, steps_per_epoch=3, total_steps=12)
    assert [Trainer._lr_factor(trainer, step) for step in range(13)] == pytest.approx(factors)
