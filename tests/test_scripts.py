"""The shell entry points take relative paths from the caller's directory, wherever the repository is."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("align_feature.sh", "fuse_feature.sh", "train.sh", "eval.sh", "run.sh", "demo.sh")
STAGES = {"align_feature.sh": "align", "fuse_feature.sh": "fuse", "train.sh": "adapt"}


def _run(script, cwd, *args, **env):
    return subprocess.run(["bash", str(ROOT / script), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def _depth_folders(cwd, frames=4):
    rng = np.random.default_rng(0)
    for name in ("pred", "target"):
        (cwd / name).mkdir()
    for i in range(frames):
        target = rng.uniform(2.0, 40.0, size=(20, 30)).astype(np.float32)
        np.save(cwd / "target" / f"{i:04d}.npy", target)
        np.save(cwd / "pred" / f"{i:04d}.npy", target * np.float32(1.1))


@pytest.mark.parametrize("script", sorted(STAGES))
def test_unknown_dataset_lists_the_stage_configs(script, tmp_path):
    result = _run(script, tmp_path, DATASET="foo")
    stage = STAGES[script]
    known = ", ".join(sorted(p.stem for p in (ROOT / "configs" / stage).glob("*.yaml")))
    assert result.returncode == 2
    assert result.stderr == f"error: unknown DATASET 'foo'; known: {known} (configs/{stage}/*.yaml)\n"
    assert list(tmp_path.iterdir()) == []


def test_eval_takes_relative_paths_from_the_caller(tmp_path):
    _depth_folders(tmp_path)
    result = _run("eval.sh", tmp_path, "--no-progress", PRED="pred", TARGET="target", OUT="scores", DATASET="mvsec")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert metrics["abs_rel"] == pytest.approx(0.1, abs=1e-4)
    assert (tmp_path / "scores" / "metrics.md").is_file()
    assert not (ROOT / "scores").exists() and not (ROOT / "pred").exists()


def test_failed_eval_leaves_no_out_folder(tmp_path):
    _depth_folders(tmp_path)
    result = _run("eval.sh", tmp_path, "--no-progress", PRED="missing", TARGET="target", OUT="scores")
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert not (tmp_path / "scores").exists() and not (ROOT / "scores").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_from_another_directory(script, tmp_path):
    result = _run(script, tmp_path, "-h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage")
    assert "Relative paths are taken from the directory you run the script in." in result.stdout
    assert list(tmp_path.iterdir()) == []
