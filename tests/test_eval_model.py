"""`eval` on a model and a split: predictions through `infer`, scores equal to scoring the folders."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import fuse
from fuse.checkpoint import save_checkpoint
from fuse.evaluate.metrics import evaluate_folders
from fuse.testing.fixtures import write_split

ROOT = Path(__file__).resolve().parents[1]


def test_eval_script_runs_a_model_on_a_split(tmp_path):
    split = write_split(tmp_path / "data", frames=3)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "model.pth", fuse.build_model("fuse", encoder="vitt", head="metric", max_depth=20.0))
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "CHECKPOINT": str(checkpoint),
           "SPLIT": str(split), "PRED": str(tmp_path / "pred"), "OUT": str(tmp_path / "report"), "SIZE": "small"}
    result = subprocess.run(["bash", "eval.sh", "--no-progress", "--size", "56", "--sequence", "outdoor_day1"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| FUSE" in result.stdout and "Abs.Rel" in result.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["frames"] == 3
    folders = evaluate_folders(tmp_path / "pred" / "depth", tmp_path / "data" / "seq" / "depths", "mvsec", progress=False)
    assert metrics["abs_rel"] == folders["abs_rel"] and metrics["a1"] == folders["a1"]

    missing = subprocess.run(["bash", "eval.sh"], capture_output=True, text=True, env={**env, "SPLIT": ""}, cwd=ROOT)
    assert missing.returncode == 2 and "go together" in missing.stderr


def test_run_script_predicts_a_split(tmp_path):
    split = write_split(tmp_path / "data", frames=2)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "model.pth", fuse.build_model("fuse", encoder="vitt", head="metric"))
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "infer"
    result = subprocess.run(["bash", "run.sh", "-c", str(checkpoint), "-s", str(split), "-o", str(out), "--size", "56",
                             "--no-progress"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for sub in ("depth", "color", "panels"):
        assert len(list((out / sub).iterdir())) == 2
    usage = subprocess.run(["bash", "run.sh"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert usage.returncode == 2 and "Usage" in usage.stdout + usage.stderr
