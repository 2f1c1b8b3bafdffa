"""``python -m fuse eval`` on tiny folders: reports, published rows, and clear input errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fuse.cli import main
from fuse.evaluate.metrics import metric_keys

REPO = Path(__file__).resolve().parents[1]


def make_folders(root: Path, frames: list[tuple[list, list]]) -> tuple[Path, Path]:
    """Predictions named after images, targets after depth maps: paired by sorted order."""
    pred_dir, target_dir = root / "pred", root / "gt"
    pred_dir.mkdir()
    target_dir.mkdir()
    for i, (pred, target) in enumerate(frames):
        np.save(pred_dir / f"frame_{i:04d}.npy", np.array(pred, np.float32))
        np.save(target_dir / f"depth_{i:04d}.npy", np.array(target, np.float32))
    return pred_dir, target_dir


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return make_folders(
        tmp_path,
        [
            ([[5.0, 20.0]], [[6.0, 20.0]]),  # errors 1 and 0
            ([[12.0, 30.0]], [[12.0, 40.0]]),  # errors 0 and 10
            ([[3.0, 3.0]], [[np.nan, 100.0]]),  # no valid pixel
        ],
    )


def run_eval(*args: str) -> int:
    return main(["eval", "--no-progress", *args])


def test_json_and_markdown_reports(folders, tmp_path, capsys):
    pred_dir, target_dir = folders
    out_json, out_md = tmp_path / "out" / "metrics.json", tmp_path / "table.md"
    code = run_eval(
        "--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec",
        "--json", str(out_json), "--markdown", str(out_md),
    )
    assert code == 0
    report = json.loads(out_json.read_text())
    assert set(metric_keys()) | {"frames", "frames@10", "frames@20", "frames@30", "skipped", "settings"} == set(report)
    assert report["frames"] == 2 and report["skipped"] == 1
    assert report["mae"] == pytest.approx((0.5 + 5.0) / 2)
    assert report["mae@10"] == pytest.approx(1.0) and report["frames@10"] == 1
    assert report["settings"]["max_depth"] == 80.0 and report["settings"]["pred_format"] == "metric"
    assert [p.name for p in out_json.parent.iterdir()] == ["metrics.json"]  # no temp file left

    table = out_md.read_text()
    assert table.splitlines()[0] == "| Method | δ1 ↑ | δ2 ↑ | δ3 ↑ | Abs.Rel ↓ | RMSE ↓ | RMSElog ↓ |"
    assert table in capsys.readouterr().out


def test_dense_table_beside_published_rows(folders, capsys):
    pred_dir, target_dir = folders
    code = run_eval("--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "dense", "--compare-published", "base")
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Method | Abs.Rel ↓ | RMSElog ↓ | 10m ↓ | 20m ↓ | 30m ↓ |"
    assert lines[3] == "| FUSE-Base (published) | 0.348 | 0.467 | 1.199 | 3.732 | 5.976 |"


def test_mvsec_published_rows_need_a_sequence(folders, capsys):
    pred_dir, target_dir = folders
    args = ["--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec", "--compare-published", "large"]
    assert run_eval(*args) == 2
    assert "outdoor_night1" in capsys.readouterr().err
    assert run_eval(*args, "--sequence", "outdoor_night1") == 0
    assert "| FUSE-Large (published) | 0.629 |" in capsys.readouterr().out


def test_mismatched_folders_exit_2_and_list_names(folders, capsys):
    pred_dir, target_dir = folders
    np.save(pred_dir / "frame_extra.npy", np.ones((1, 2), np.float32))
    code = run_eval("--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec")
    err = capsys.readouterr().err
    assert code == 2
    assert "4 predictions" in err and "3 targets" in err and "frame_extra.npy" in err
    assert "Traceback" not in err


def test_truncated_file_is_named(folders, capsys):
    pred_dir, target_dir = folders
    bad = target_dir / "depth_0001.npy"
    bad.write_bytes(bad.read_bytes()[:40])
    code = run_eval("--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec")
    assert code == 2
    assert str(bad) in capsys.readouterr().err


def test_shape_mismatch_names_both_files(tmp_path, capsys):
    pred_dir, target_dir = make_folders(tmp_path, [([[5.0, 6.0, 7.0]], [[5.0, 6.0]])])
    code = run_eval("--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec")
    err = capsys.readouterr().err
    assert code == 2 and "frame_0000.npy" in err and "depth_0000.npy" in err


def test_debug_shows_the_exception(folders):
    pred_dir, target_dir = folders
    (pred_dir / "frame_0000.npy").unlink()
    with pytest.raises(ValueError, match="2 predictions"):
        run_eval("--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec", "--debug")


def test_python_dash_m_fuse_eval(folders, tmp_path):
    pred_dir, target_dir = folders
    out_json = tmp_path / "m.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "fuse", "eval", "--pred", str(pred_dir), "--target", str(target_dir),
         "--dataset", "eventscape", "--pred-format", "normalized_log", "--json", str(out_json)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| Method | Abs.Rel ↓ |")
    report = json.loads(out_json.read_text())
    assert report["settings"]["max_depth"] == 1000.0
    # Read as normalized log depth, 5..30 decode to far beyond each frame's top: all skipped.
    assert report["frames"] == 0 and report["skipped"] == 3 and report["abs_rel"] is None
