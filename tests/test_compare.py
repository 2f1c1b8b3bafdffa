"""``python -m fuse compare``: clean scores equal each method's own ``eval``; degradations are seeded
and reach the networks; the results folder; one clear error per bad comparison."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import fuse
from fuse.checkpoint import save_checkpoint
from fuse.cli import main
from fuse.data.conditions import parse_condition
from fuse.evaluate.compare import DegradedRecording, read_spec
from fuse.evaluate.metrics import constant_baseline
from fuse.testing.fixtures import write_split
from tests import mvsec_fixtures

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 56
KINDS = ("fuse", "depth_anything_v2", "event_student")


def tiny(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = fuse.build_model(kind, encoder="vitt", head="metric", max_depth=20)  # in the targets' range
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].weight.mul_(30.0)  # a random head is nearly flat
    return model.eval()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("compare")
    checkpoints = {kind: save_checkpoint(root / f"{kind}.pth", tiny(kind, seed)) for seed, kind in enumerate(KINDS)}
    split = write_split(root / "data", "day", frames=5, height=42, width=56)
    mvsec_fixtures.write_recording(root, "rec", num_depth=6, height=28, width=42, events_per_frame=400,
                                   no_image_frames=(), image_offsets={}, empty_window_frames=())
    return {"root": root, "checkpoints": checkpoints, "split": split, "recording": root / "rec"}


def write_spec(path: Path, workspace: dict, sequences: list[dict], conditions: list[str], **extra) -> Path:
    methods = [{"name": kind, "checkpoint": str(checkpoint), "size": SIZE}
               for kind, checkpoint in workspace["checkpoints"].items()]
    methods.append({"name": "constant", "median_of": str(workspace["split"])})
    path.write_text(yaml.safe_dump({"dataset": "mvsec", "methods": methods, "sequences": sequences,
                                    "conditions": conditions, "panels": {"frames": 1, "mp4": True}, **extra}))
    return path


def test_clean_scores_equal_each_methods_eval_and_the_folder_is_complete(workspace, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", workspace, [{"name": "day", "split": str(workspace["split"])},
                                                          {"name": "again", "split": str(workspace["split"]),
                                                           "degrade": False}],
                      ["image:low_light@3", "image:gaussian_noise"], severities=[2, 5])
    out = tmp_path / "out"
    assert main(["compare", str(spec), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["conditions"] == ["clean", "image:low_light@3", "image:gaussian_noise@2",
                                                 "image:gaussian_noise@5"]
    for kind, checkpoint in workspace["checkpoints"].items():
        report = tmp_path / f"{kind}.json"
        assert main(["eval", "--checkpoint", str(checkpoint), "--split", str(workspace["split"]), "--size", str(SIZE),
                     "--pred", str(tmp_path / f"eval_{kind}"), "--json", str(report), "--dataset", "mvsec",
                     "--no-progress"]) == 0
        own = json.loads(report.read_text())
        ours = results["methods"][kind]["scores"]["day"]["clean"]["e2depth"]
        assert ours["frames"] == own["frames"] == 5
        for key in ("abs_rel", "rmse", "a1", "rmse_log"):
            assert ours[key] == pytest.approx(own[key], rel=1e-6), (kind, key)
        noisy = results["methods"][kind]["scores"]["day"]["image:gaussian_noise@5"]["e2depth"]
        assert noisy["abs_rel"] != ours["abs_rel"] or kind == "event_student"
        if kind == "event_student":  # the images it does not see are the only thing degraded
            assert noisy == ours
        costs = results["methods"][kind]
        assert costs["parameters"] == sum(p.numel() for p in tiny(kind, 0).parameters())
        assert costs["gflops"] > 0 and costs["images_per_s"] > 0 and costs["input_size"] == SIZE
        again = results["methods"][kind]["scores"]["again"]
        assert list(again) == ["clean"] and again["clean"]["e2depth"] == ours  # degrade: false
    _, constant = constant_baseline(workspace["split"], workspace["split"])
    assert results["methods"]["constant"]["scores"]["day"]["clean"]["e2depth"]["abs_rel"] == pytest.approx(
        constant["abs_rel"], rel=1e-6)
    report = (out / "results.md").read_text()
    assert "## day (5 frames)" in report and "image:gaussian_noise, again" not in report and "image:gaussian_noise, day: Abs.Rel" in report
    assert "common pixels" not in report.split("Costs:")[0]  # every map is dense
    assert "| fuse |" in report and "GFLOPs" in report
    panel = cv2.imread(str(out / "panels" / "day" / "clean" / "000000.png"))
    assert panel is not None and panel.shape[1] == (2 + len(KINDS) + 2) * 56  # image | events | 3 methods | constant | GT
    assert len(list((out / "panels" / "day" / "clean").glob("*.png"))) == 5
    assert len(list((out / "panels" / "day" / "image:low_light@3").glob("*.png"))) == 1
    video = cv2.VideoCapture(str(out / "panels" / "day.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert cv2.imread(str(out / "chart.png")) is not None and cv2.imread(str(out / "robustness.png")) is not None
    assert "| fuse |" in capsys.readouterr().out


def test_event_conditions_on_a_raw_recording_are_seeded_and_reach_the_event_networks(workspace, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", workspace, [{"name": "rec", "recording": str(workspace["recording"])}],
                      ["events:dropout@4", "image:occlusion@5"], seed=3)
    out = tmp_path / "out"
    assert main(["compare", str(spec), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())["methods"]
    clean, dropped, occluded = ({kind: results[kind]["scores"]["rec"][label]["e2depth"] for kind in KINDS}
                                for label in ("clean", "events:dropout@4", "image:occlusion@5"))
    assert dropped["depth_anything_v2"] == clean["depth_anything_v2"]  # it sees no events
    assert occluded["event_student"] == clean["event_student"]  # it sees no image
    assert dropped["event_student"] != clean["event_student"] and occluded["depth_anything_v2"] != clean[
        "depth_anything_v2"]

    condition = parse_condition("events:dropout@4")
    with DegradedRecording(str(workspace["recording"]), 3, condition, 3) as first, \
            DegradedRecording(str(workspace["recording"]), 3, condition, 3) as again, \
            DegradedRecording(str(workspace["recording"]), 3, None, 3) as plain:
        a, b, c = first._load(1), again._load(1), plain._load(1)
    np.testing.assert_array_equal(a.voxel, b.voxel)  # the same seed and frame: the same draw
    assert 0.2 * np.abs(c.voxel).sum() < np.abs(a.voxel).sum() < 0.6 * np.abs(c.voxel).sum()  # ~40 % kept
    np.testing.assert_array_equal(a.image, c.image)
    prediction = np.load(out / "predictions" / "event_student" / "rec" / "events:dropout@4" / f"{a.stem}.npy")
    assert prediction.shape == a.depth.shape


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(conditions=["events:dropout@2"]), "give it as recording"),
    (lambda s: s.update(conditions=["events:snow@2"]), "unknown events condition 'snow'"),
    (lambda s: s.update(sequences=[{"name": "day"}]), "exactly one of split"),
    (lambda s: s.update(methods=[{"name": "x", "predictions": {"elsewhere": "."}}]), "not a sequence"),
    (lambda s: s.update(methods=[{"name": "x", "checkpoint": "missing.pth"}]), "missing.pth"),
    (lambda s: s.update(colour=1), "unknown keys ['colour']"),
])
def test_bad_comparisons_exit_2_with_one_message(workspace, tmp_path, capsys, change, message):
    spec = {"methods": [{"name": "fuse", "checkpoint": str(workspace["checkpoints"]["fuse"])}],
            "sequences": [{"name": "day", "split": str(workspace["split"])}]}
    change(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["compare", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and message in error and error.count("\n") == 1
    assert not (tmp_path / "out" / "results.json").exists()


def test_relative_head_models_are_refused(workspace, tmp_path, capsys):
    torch.manual_seed(0)
    relative = save_checkpoint(tmp_path / "rel.pth", fuse.build_model("depth_anything_v2", encoder="vitt"))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"methods": [{"name": "rel", "checkpoint": str(relative)}],
                                    "sequences": [{"name": "day", "split": str(workspace["split"])}]}))
    assert main(["compare", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "metric" in capsys.readouterr().err


def test_a_bare_condition_name_sweeps_the_severities(tmp_path):
    path = tmp_path / "spec.yaml"
    (tmp_path / "m.pth").touch()
    for ending in ("data", "gt"):
        (tmp_path / f"r_{ending}.hdf5").touch()
    path.write_text(yaml.safe_dump({"methods": [{"name": "m", "checkpoint": str(tmp_path / "m.pth")}],
                                    "sequences": [{"name": "s", "recording": str(tmp_path / "r")}],
                                    "conditions": ["events:hot_pixels", "events:hot_pixels@3", "clean"],
                                    "severities": [1, 3]}))
    assert [c.label for c in read_spec(path).conditions] == ["events:hot_pixels@1", "events:hot_pixels@3"]


def test_prediction_folders_are_scored_on_their_own_and_on_the_common_pixels(workspace, tmp_path):
    """A sparse method given as folders (as DERD-Net's derdnet-infer writes them) beside a dense one:
    each protocol on each method's own pixels, then on the pixels both predict."""
    rng = np.random.default_rng(0)
    targets, sparse, dense = (tmp_path / name for name in ("gt", "sparse", "dense"))
    for k in range(4):
        gt = rng.uniform(2.0, 20.0, (12, 16)).astype(np.float32)
        gt[rng.random(gt.shape) < 0.2] = np.nan
        points = np.where(rng.random(gt.shape) < 0.3, gt * rng.uniform(0.9, 1.1, gt.shape), np.nan)
        for folder, array in ((targets, gt), (sparse, points), (dense, gt * 1.2)):
            folder.mkdir(exist_ok=True)
            np.save(folder / f"{k:06d}.npy", array.astype(np.float32))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "protocol": ["e2depth", "derdnet_points"], "sequences": [{"name": "room", "targets": str(targets)}],
        "methods": [{"name": "points", "predictions": {"room": str(sparse)}},
                    {"name": "dense", "predictions": {"room": str(dense)}}]}))
    out = tmp_path / "out"
    assert main(["compare", str(path), "--out", str(out), "--no-progress"]) == 0
    scores = json.loads((out / "results.json").read_text())["methods"]
    from fuse.evaluate.protocols import evaluate_pairs
    pairs = lambda folder, truth: [(folder / f"{k:06d}.npy", truth / f"{k:06d}.npy") for k in range(4)]  # noqa: E731
    own = scores["points"]["scores"]["room"]["clean"]
    assert own["derdnet_points"]["mae_cm"] == pytest.approx(
        evaluate_pairs(pairs(sparse, targets), "mvsec", "derdnet_points")["mae_cm"])
    assert own["e2depth"]["abs_rel"] == pytest.approx(evaluate_pairs(pairs(sparse, targets), "mvsec")["abs_rel"])
    common = out / "targets_common" / "room" / "clean"
    for k in range(4):  # the GT kept where the sparse method has a point
        expected = np.load(targets / f"{k:06d}.npy")
        expected[~np.isfinite(np.load(sparse / f"{k:06d}.npy"))] = np.nan
        np.testing.assert_array_equal(np.load(common / f"{k:06d}.npy"), expected)
    dense_common = scores["dense"]["scores"]["room"]["clean"]["derdnet_points (common pixels)"]
    assert dense_common["mae_cm"] == pytest.approx(evaluate_pairs(pairs(dense, common), "mvsec", "derdnet_points")[
        "mae_cm"])
    assert dense_common["scored"] == own["derdnet_points"]["scored"] < scores["dense"]["scores"]["room"]["clean"][
        "derdnet_points"]["scored"]
    report = (out / "results.md").read_text()
    assert "**derdnet_points (common pixels)**" in report and "**e2depth**" in report
    assert cv2.imread(str(out / "panels" / "room" / "clean" / "000000.png")).shape[1] == 3 * 16  # 2 methods + GT
