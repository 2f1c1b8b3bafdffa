"""``fuse.evaluate.inference.predict``, the frame sources and the ``infer`` command."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fuse
from fuse.cli import main
from fuse.data.dataset import EventDepthDataset
from fuse.data.layout import load_image, load_voxel
from fuse.checkpoint import save_checkpoint
from fuse.evaluate.inference import RecordingSource, SplitSource, bfloat16_copy, network_inputs, predict
from fuse.evaluate.visualize import depth_colorbar
from fuse.weights import load_model
from fuse.events import voxel_grid
from fuse.methods.fuse import ModelConfig
from tests import mvsec_fixtures

HEIGHT, WIDTH = 60, 80
SIZE = 70  # smallest input size (70x98 for 60x80 frames): keeps the CPU tests fast
FRAMES = 3
PANEL_BAR = depth_colorbar(HEIGHT, 80.0, 3.70378).shape[1]  # the colour bar right of the tiles


def tiny_model(kind: str = "fuse", seed: int = 0) -> nn.Module:
    """A random vitt model whose output varies across the image (random heads are nearly flat)."""
    torch.manual_seed(seed)
    model = fuse.build_model(kind, encoder="vitt", head="metric", max_depth=80)
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].weight.mul_(30.0)
    return model.eval()


def write_split(root: Path, seq: str = "seq", frames: int = FRAMES, seed: int = 0) -> Path:
    """Processed layout of ``fuse.data.dataset``: gray and color PNGs, depth with NaN holes, sparse voxels."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "depths", "voxels"):
        (root / seq / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(frames):
        stem = f"{i:06d}"
        shape = (HEIGHT, WIDTH) if i % 2 == 0 else (HEIGHT, WIDTH, 3)
        cv2.imwrite(str(root / seq / "images" / f"{stem}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
        depth = rng.uniform(2.0, 80.0, (HEIGHT, WIDTH)).astype(np.float32)
        depth[:6] = np.nan
        np.save(root / seq / "depths" / f"{stem}.npy", depth)
        voxel = rng.normal(size=(3, HEIGHT, WIDTH)).astype(np.float32)
        voxel[rng.random(voxel.shape) < 0.7] = 0.0
        np.save(root / seq / "voxels" / f"{stem}.npy", voxel)
        lines.append(f"{seq}/images/{stem}.png {seq}/depths/{stem}.npy {seq}/voxels/{stem}.npy")
    split = root / f"{seq}.txt"
    split.write_text("\n".join(lines) + "\n")
    return split


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer")
    checkpoint = root / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model())
    return {"root": root, "split": write_split(root / "data"), "checkpoint": checkpoint}


def infer(workspace: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["infer", "--checkpoint", str(workspace["checkpoint"]), "--split", str(workspace["split"]),
                 "--dataset", "mvsec", "--out", str(out), "--size", str(SIZE), "--device", "cpu",
                 "--no-progress", *extra])


def frame_inputs(split: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    seq = split.parent / split.stem
    image = load_image(seq / "images" / f"{index:06d}.png")
    return image, load_voxel(seq / "voxels" / f"{index:06d}.npy", HEIGHT, WIDTH, 3)


class RampModel(nn.Module):
    """Stands in for an image-only network with a known output: a ramp over the input grid."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ModelConfig(kind="depth_anything_v2", encoder="vitt")
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = image.shape
        ramp = torch.arange(height * width, dtype=torch.float32).reshape(height, width) ** 1.5
        return ramp.expand(batch, height, width).clone()


# ----------------------------------------------------------------------------- predict


def test_network_inputs_equal_the_datasets_test_transform(workspace):
    dataset = EventDepthDataset(workspace["split"], "mvsec", mode="test", size=SIZE)
    for index in range(FRAMES):
        image, voxel = frame_inputs(workspace["split"], index)
        image_tensor, voxel_tensor = network_inputs([image], [voxel], SIZE)
        sample = dataset[index]
        assert image_tensor.shape == (1, 3, 70, 98)
        assert torch.equal(image_tensor[0], sample["image"])
        assert torch.equal(voxel_tensor[0], sample["voxel"])


def test_predict_upsamples_with_align_corners_true():
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    model = RampModel()
    raw = model(torch.zeros(1, 3, 70, 98))[:, None]
    expected = F.interpolate(raw, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=True)[0, 0].numpy()
    other = F.interpolate(raw, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)[0, 0].numpy()
    depth = predict(model, image, None, size=SIZE)
    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth, expected)
    assert np.abs(depth - other).max() > 1.0
    # align_corners=True keeps the corner values of the network output.
    assert depth[0, 0] == raw[0, 0, 0, 0] and depth[-1, -1] == raw[0, 0, -1, -1]


def test_predict_runs_the_model_on_the_prepared_inputs(workspace):
    model = tiny_model()
    image, voxel = frame_inputs(workspace["split"], 1)
    image_tensor, voxel_tensor = network_inputs([image], [voxel], SIZE)
    with torch.no_grad():
        raw = model(image_tensor, voxel_tensor)
    expected = F.interpolate(raw[:, None], size=(HEIGHT, WIDTH), mode="bilinear", align_corners=True)[0, 0]
    depth = predict(model, image, voxel, size=SIZE)
    np.testing.assert_allclose(depth, expected.numpy(), rtol=1e-6, atol=1e-5)
    assert depth.std() > 0.1  # the comparison is not between two flat maps


def test_predict_bf16_is_close_to_fp32(workspace):
    model = tiny_model()
    image, voxel = frame_inputs(workspace["split"], 1)
    exact = predict(model, image, voxel, size=SIZE)
    low = predict(model, image, voxel, size=SIZE, precision="bf16")
    assert low.dtype == np.float32 and low.shape == exact.shape
    assert 0 < np.linalg.norm(low - exact) / np.linalg.norm(exact) < 2e-2
    with pytest.raises(ValueError, match="precision"):
        predict(model, image, voxel, size=SIZE, precision="fp8")


def test_bf16_copy_is_reused_until_the_weights_change(workspace):
    model = tiny_model()
    image, voxel = frame_inputs(workspace["split"], 1)
    first = predict(model, image, voxel, size=SIZE, precision="bf16")
    network = bfloat16_copy(model)
    assert next(network.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched
    assert bfloat16_copy(model) is network
    with torch.no_grad():  # as an optimizer step would: in place
        model.depth_head.scratch.output_conv2[2].bias.add_(1.0)
    assert bfloat16_copy(model) is not network
    changed = predict(model, image, voxel, size=SIZE, precision="bf16")
    exact = predict(model, image, voxel, size=SIZE)
    assert np.abs(changed - first).max() > 1e-2
    assert np.linalg.norm(changed - exact) / np.linalg.norm(exact) < 2e-2


def test_bf16_attention_on_cpu_matches_sdpa():
    from fuse.layers.attention import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g) for n in (50, 70, 70))
    exact = F.scaled_dot_product_attention(q, k, v)
    low = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert low.dtype == torch.bfloat16 and low.shape == exact.shape
    assert float((low.float() - exact).norm() / exact.norm()) < 1e-2
    assert torch.equal(attention(q, k, v), exact)  # float32: SDPA itself


def test_predict_batch_equals_single_frames_and_restores_training_mode(workspace):
    model = tiny_model().train()
    inputs = [frame_inputs(workspace["split"], i) for i in range(2)]
    batch = predict(model, [im for im, _ in inputs], np.stack([vox for _, vox in inputs]), size=SIZE)
    assert batch.shape == (2, HEIGHT, WIDTH)
    assert model.training  # dropout was off during prediction, the caller's mode is kept
    for (image, voxel), depth in zip(inputs, batch):
        np.testing.assert_allclose(depth, predict(model, image, voxel, size=SIZE), rtol=1e-5, atol=1e-4)


def test_predict_single_modality_models_and_input_checks(workspace):
    image, voxel = frame_inputs(workspace["split"], 0)
    teacher = fuse.build_model("depth_anything_v2", encoder="vitt")
    student = fuse.build_model("event_student", encoder="vitt")
    assert predict(teacher, image, None, size=SIZE).shape == (HEIGHT, WIDTH)
    events_only = predict(student, None, voxel, size=SIZE)
    assert events_only.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(predict(student, image, voxel, size=SIZE), events_only)
    with pytest.raises(ValueError, match="needs an event voxel grid"):
        predict(tiny_model(), image, None, size=SIZE)
    with pytest.raises(ValueError, match="needs an image"):
        predict(teacher, None, voxel, size=SIZE)
    with pytest.raises(ValueError, match=r"voxel grids of shape \(3, H, W\)"):
        predict(tiny_model(), image, np.zeros((5, HEIGHT, WIDTH), np.float32), size=SIZE)
    with pytest.raises(ValueError, match="same height and width"):
        predict(tiny_model(), image, voxel[:, :-1], size=SIZE)


def test_split_source_prefixes_sequence_names_only_when_stems_repeat(tmp_path):
    first, second = write_split(tmp_path, "day"), write_split(tmp_path, "night")
    assert SplitSource(first).stems == ["000000", "000001", "000002"]
    both = tmp_path / "both.txt"
    both.write_text(first.read_text() + second.read_text())
    stems = SplitSource(both).stems
    assert stems[0] == "day_000000" and stems[-1] == "night_000002" and len(set(stems)) == 6


# ----------------------------------------------------------------------------- infer command


def test_infer_writes_outputs_at_sensor_resolution_equal_to_predict(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer(workspace, out, "--batch-size", "2") == 0
    assert "3 frames" in capsys.readouterr().out
    model, _ = load_model(workspace["checkpoint"])
    for index in range(FRAMES):
        stem = f"{index:06d}"
        depth = np.load(out / "depth" / f"{stem}.npy")
        assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
        image, voxel = frame_inputs(workspace["split"], index)
        np.testing.assert_allclose(depth, predict(model, image, voxel, size=SIZE), rtol=1e-5, atol=1e-4)
        assert cv2.imread(str(out / "color" / f"{stem}.png")).shape == (HEIGHT, WIDTH, 3)
        assert cv2.imread(str(out / "panels" / f"{stem}.png")).shape == (HEIGHT, 4 * WIDTH + PANEL_BAR, 3)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_infer_precision_bf16_runs_the_bf16_path(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer(workspace, out, "--precision", "bf16") == 0
    model, _ = load_model(workspace["checkpoint"])
    image, voxel = frame_inputs(workspace["split"], 0)
    depth = np.load(out / "depth" / "000000.npy")
    np.testing.assert_allclose(depth, predict(model, image, voxel, size=SIZE, precision="bf16"), rtol=1e-5, atol=1e-4)
    exact = predict(model, image, voxel, size=SIZE)
    assert 0 < np.linalg.norm(depth - exact) / np.linalg.norm(exact) < 2e-2


def test_infer_rerun_skips_done_frames_and_overwrite_redoes_them(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer(workspace, out) == 0
    sentinel = np.full((HEIGHT, WIDTH), -1.0, np.float32)
    np.save(out / "depth" / "000000.npy", sentinel)
    (out / "color" / "000002.png").unlink()
    capsys.readouterr()

    assert infer(workspace, out) == 0
    assert "(1 predicted, 2 already done" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out / "depth" / "000000.npy"), sentinel)
    assert (out / "color" / "000002.png").is_file()

    assert infer(workspace, out, "--overwrite", "--limit", "2") == 0
    assert "infer: 2 frames" in capsys.readouterr().out
    assert np.load(out / "depth" / "000000.npy").min() > 0


@pytest.mark.parametrize("damage", ["image", "voxel"])
def test_infer_corrupt_input_exits_2_naming_the_file(workspace, tmp_path, capsys, damage):
    data = tmp_path / "data"
    shutil.copytree(workspace["split"].parent, data)
    if damage == "image":
        bad = data / "seq" / "images" / "000001.png"
        bad.write_bytes(b"not a png")
    else:
        bad = data / "seq" / "voxels" / "000001.npy"
        bad.write_bytes(bad.read_bytes()[:100])
    args = dict(workspace, split=data / "seq.txt")
    assert infer(args, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    with pytest.raises(ValueError, match="000001"):
        infer(args, tmp_path / "out", "--debug")


def test_infer_bad_checkpoint_and_arguments_exit_2(workspace, tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert main(["infer", "--checkpoint", str(missing), "--split", str(workspace["split"]), "--dataset", "mvsec",
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert str(missing) in capsys.readouterr().err
    common = ["infer", "--checkpoint", str(workspace["checkpoint"]), "--split", str(workspace["split"]),
              "--out", str(tmp_path / "out"), "--no-progress"]
    assert main([*common, "--size", "50"]) == 2
    assert "--size must be a multiple of 14 and at least 56" in capsys.readouterr().err
    for option, value in (("--fps", "0"), ("--max-depth", "-1"), ("--limit", "0"), ("--batch-size", "0")):
        with pytest.raises(SystemExit, match="2"):  # argparse: usage and exit code 2
            main([*common, option, value])
        assert f"argument {option}: must be" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("")
    assert infer(workspace, tmp_path / "file") == 2
    assert f"{tmp_path / 'file'} exists and is not a folder" in capsys.readouterr().err


def test_infer_head_overrides_reach_the_model(workspace, tmp_path, capsys):
    assert infer(workspace, tmp_path / "a", "--limit", "1") == 0
    assert infer(workspace, tmp_path / "b", "--limit", "1", "--max-depth", "40") == 0
    assert "max 40 m" in capsys.readouterr().out
    default, halved = (np.load(tmp_path / name / "depth" / "000000.npy") for name in ("a", "b"))
    np.testing.assert_allclose(halved, default / 2, rtol=1e-5)
    assert infer(workspace, tmp_path / "c", "--limit", "1", "--head", "relative") == 0
    assert "relative inverse depth" in capsys.readouterr().out


def test_infer_mp4_holds_every_panel_also_after_a_restart(workspace, tmp_path):
    out = tmp_path / "out"
    assert infer(workspace, out, "--limit", "2") == 0
    assert infer(workspace, out, "--mp4") == 0
    video = cv2.VideoCapture(str(out / "panels.mp4"))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == FRAMES and frames[0].shape == (HEIGHT, 4 * WIDTH + PANEL_BAR, 3)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["panels.mp4", "provenance.json"]


def test_infer_from_a_raw_mvsec_recording(workspace, tmp_path, capsys):
    recording = mvsec_fixtures.write_recording(tmp_path, "rec", num_depth=6, no_image_frames=(2,),
                                               image_offsets={}, empty_window_frames=(4,))
    out = tmp_path / "out"
    assert main(["infer", "--checkpoint", str(workspace["checkpoint"]), "--recording", str(tmp_path / "rec"),
                 "--out", str(out), "--size", str(SIZE), "--device", "cpu", "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "6 frames" not in summary and "4 frames" in summary and "2 depth frames not selected" in summary
    kept = [0, 1, 3, 5]
    assert sorted(p.stem for p in (out / "depth").iterdir()) == [f"{k:06d}" for k in kept]
    model, _ = load_model(workspace["checkpoint"])
    height, width = recording.height, recording.width
    for k in kept:
        gray = recording.images[recording.nearest_image(k)]
        voxel = voxel_grid(recording.window(k), 3, height, width)
        expected = predict(model, np.repeat(gray[:, :, None], 3, axis=2), voxel, size=SIZE)
        np.testing.assert_allclose(np.load(out / "depth" / f"{k:06d}.npy"), expected, rtol=1e-5, atol=1e-4)
        assert cv2.imread(str(out / "panels" / f"{k:06d}.png")).shape == (height, 4 * width + depth_colorbar(height, 80.0, 3.70378).shape[1], 3)


def test_recording_source_names_the_missing_file(tmp_path):
    mvsec_fixtures.write_recording(tmp_path, "rec", num_depth=4, no_image_frames=(), image_offsets={},
                                   empty_window_frames=())
    (tmp_path / "rec_gt.hdf5").unlink()
    with pytest.raises(ValueError, match="rec_gt.hdf5"):
        RecordingSource(tmp_path / "rec_data.hdf5", 3)
