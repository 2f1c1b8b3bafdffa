"""DERD-Net's network and released weights (spec derd-net.md §5, §9): strict loading of all 24
files, parameter counts, the golden table, and that the two usual porting errors fail it."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import fuse
from fuse.checkpoint import save_checkpoint
from fuse.errors import CheckpointError, UsageError
from fuse.methods.derdnet import DEPTH_RANGES, DerdNet, DerdNetEnsemble, argmax_depth, write_points
from fuse.methods.derdnet.model import CENTRE, OFFSETS
from fuse.registry import model_kind
from fuse.weights import load_model

MODELS = Path(os.environ.get("DERDNET_MODELS", Path(__file__).resolve().parents[2] / "shared" / "derdnet" / "models"))
needs_release = pytest.mark.skipif(not MODELS.is_dir(), reason=f"DERD-Net's released weights are not at {MODELS} "
                                                              "(set DERDNET_MODELS)")
TOLERANCE = 1e-5  # spec §9: a correct fp32 CPU port

# spec §9: fold/variant -> (even, odd, ensemble, ensemble in metres or None); multi-pixel: centre output.
GOLDEN = {
    ("1", "stereo"): ((0.020789, 0.084534, 0.380866), (0.004328, 0.071640, 0.351821),
                      (0.012558, 0.078087, 0.366344), (1.0691, 1.4295, 3.0149)),
    ("2", "stereo"): ((0.024788, 0.087321, 0.369884), (0.025727, 0.095392, 0.377884),
                      (0.025258, 0.091356, 0.373884), (1.1389, 1.5025, 3.0564)),
    ("3", "stereo"): ((0.015448, 0.094846, 0.377028), (0.005259, 0.082023, 0.400370),
                      (0.010353, 0.088434, 0.388699), (1.0569, 1.4864, 3.1378)),
    ("1", "multipixel"): ((0.016326, 0.081922, 0.370851), (0.028129, 0.102648, 0.410176),
                          (0.022227, 0.092285, 0.390514), None),
    ("2", "multipixel"): ((0.006455, 0.077455, 0.363047), (0.017463, 0.083139, 0.362029),
                          (0.011959, 0.080297, 0.362538), None),
    ("3", "multipixel"): ((0.010127, 0.081731, 0.385477), (0.005641, 0.066111, 0.362577),
                          (0.007884, 0.073921, 0.374027), None),
}


def golden_sub_dsis() -> torch.Tensor:
    """spec §9: Gaussian ray densities peaking at planes 10, 40, 80 (near -> far), over a 0.05 floor."""
    z = torch.arange(100.0).view(100, 1, 1)
    i, j = torch.arange(7.0).view(1, 7, 1), torch.arange(7.0).view(1, 1, 7)
    blocks = [torch.exp(-(z - p) ** 2 / 8) * torch.exp(-((i - 3) ** 2 + (j - 3) ** 2) / 4) + 0.05 for p in (10, 40, 80)]
    return torch.stack([block / block.max() for block in blocks]).float()


def released(fold: str, variant: str, split: str) -> Path:
    return MODELS / "mvsec" / f"indoor_flying{fold}" / f"indoor_flying{fold}_{variant}_{split}_model.pth"


def run(model: torch.nn.Module, sub_dsi: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        output = model.eval()(sub_dsi)
    return output[:, CENTRE] if output.ndim == 2 else output


@needs_release
def test_all_released_files_load_strictly_into_the_variant_their_name_says():
    files = sorted(MODELS.rglob("*.pth"))
    assert len(files) == 24
    for path in files:
        model, report = load_model(path)
        assert model.config.multi_pixel == ("multipixel" in path.name), path
        assert len(report.loaded) == 10 and not report.ignored and not report.initialized
        again = fuse.load_weights(fuse.build_model("derdnet", multi_pixel="multipixel" in path.name), path)
        assert again.loaded == report.loaded


def test_parameter_counts_are_the_papers():
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(fuse.build_model("derdnet", multi_pixel=False)) == 70_913
    assert count(fuse.build_model("derdnet", multi_pixel=True)) == 71_721


def test_kind_is_registered_with_its_inputs_and_outputs():
    kind = model_kind("derdnet")
    assert kind.inputs == ("dsi_patch",) and kind.output(kind.default_head) == "point_depth"
    model = fuse.build_model("derdnet", multi_pixel=True)
    assert isinstance(model, DerdNet) and model.config.to_dict()["kind"] == "derdnet" and model.config.head == "point"
    with pytest.raises(UsageError, match="unknown \\['encoder'\\]"):
        fuse.build_model("derdnet", encoder="vits")


@needs_release
@pytest.mark.parametrize("fold,variant", sorted(GOLDEN))
def test_golden_table(fold, variant):
    even_golden, odd_golden, ensemble_golden, metres_golden = GOLDEN[fold, variant]
    sub_dsi = golden_sub_dsis()
    even, _ = load_model(released(fold, variant, "even"))
    odd, _ = load_model(released(fold, variant, "odd"))
    ensemble = DerdNetEnsemble([even, odd])
    for model, golden in ((even, even_golden), (odd, odd_golden), (ensemble, ensemble_golden)):
        assert torch.allclose(run(model, sub_dsi), torch.tensor(golden), rtol=0, atol=TOLERANCE)
    if metres_golden is not None:  # printed to 4 decimals
        metres = DEPTH_RANGES["mvsec"].to_metres(run(ensemble, sub_dsi))
        assert torch.allclose(metres, torch.tensor(metres_golden), rtol=0, atol=5e-5 + TOLERANCE)


def forward_flattening_hwc(model: DerdNet, sub_dsi: torch.Tensor) -> torch.Tensor:
    """A deliberately wrong port: conv features flattened in (h, w, c) order instead of (c, h, w)."""
    with torch.no_grad():
        sequence = model.conv3d(sub_dsi.unsqueeze(1)).permute(0, 2, 3, 4, 1).flatten(2)
        states, _ = model.gru(sequence)
        return model.dense_output(states[:, -1]).squeeze(-1)


@needs_release
def test_the_two_usual_porting_errors_fail_the_golden_check():
    model, _ = load_model(released("1", "stereo", "even"))
    model.eval()
    sub_dsi, golden = golden_sub_dsis(), torch.tensor(GOLDEN["1", "stereo"][0])
    wrong_flatten = forward_flattening_hwc(model, sub_dsi)
    no_flip = run(model, sub_dsi.flip(1))  # the DSI fed far -> near, as saved
    for wrong in (wrong_flatten, no_flip):
        assert (wrong - golden).abs().max() > 1000 * TOLERANCE
    # the values spec §9 quotes for them
    assert torch.allclose(wrong_flatten, torch.tensor([0.016786, 0.091256, 0.401518]), atol=TOLERANCE)
    assert torch.allclose(no_flip, torch.tensor([0.554, 0.165, 0.031]), atol=1e-3)


def test_argmax_baseline_is_the_depth_of_the_densest_plane():
    depth = argmax_depth(golden_sub_dsis()[:, :, 3, 3].T, DEPTH_RANGES["mvsec"])
    assert torch.allclose(depth, torch.tensor([1.103, 1.531, 3.178]), atol=1e-3)  # spec §9
    planes = torch.eye(100)  # plane k densest in column k
    depths = argmax_depth(planes, DEPTH_RANGES["mvsec"])
    assert math.isclose(depths[-1].item(), 6.5, rel_tol=1e-6) and depths[0] > 1.0  # far plane; z_min never sampled


@pytest.mark.parametrize("planes", [1, 2, 7, 100, 101])
def test_any_number_of_depth_planes_gives_a_gru_of_half_the_length(planes):
    model = fuse.build_model("derdnet", multi_pixel=True)
    lengths = []
    model.gru.register_forward_hook(lambda module, inputs, output: lengths.append(inputs[0].shape[1]))
    output, features = model(torch.rand(2, planes, 7, 7), return_features=True)
    assert output.shape == (2, 9) and features.shape == (2, 100) and lengths == [math.ceil(planes / 2)]
    with pytest.raises(ValueError, match="Sub-DSIs of shape"):
        model(torch.rand(2, planes, 5, 5))


@needs_release
def test_a_file_of_the_other_variant_is_one_clear_error():
    path = released("2", "stereo", "odd")
    with pytest.raises(CheckpointError, match="single-pixel.*built with multi_pixel=True.*multi_pixel=False") as error:
        fuse.load_weights(fuse.build_model("derdnet", multi_pixel=True), path)
    assert str(path) in str(error.value)
    with pytest.raises(CheckpointError, match="multi-pixel.*multi_pixel=True"):
        fuse.load_weights(fuse.build_model("derdnet"), released("2", "multipixel", "odd"))


def test_own_checkpoints_and_bare_state_dicts_load(tmp_path):
    model = fuse.build_model("derdnet", multi_pixel=True, out_channels=2)
    save_checkpoint(tmp_path / "ours.pth", model, epoch=3)
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    for name in ("ours.pth", "bare.pth"):
        loaded, report = load_model(tmp_path / name)
        assert loaded.config == model.config and report.layout.ours == (name == "ours.pth")
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_strict_loading_uses_every_tensor(tmp_path):
    model = fuse.build_model("derdnet")
    state = model.state_dict() | {"extra.weight": torch.zeros(1)}
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="matching nothing \\['extra.weight'\\]"):
        fuse.load_weights(model, tmp_path / "extra.pth")
    report = fuse.load_weights(model, tmp_path / "extra.pth", strict=False)
    assert list(report.ignored) == ["extra.weight"] and len(report.loaded) == 10


def test_ensemble_averages_raw_outputs_before_any_clip():
    members = [fuse.build_model("derdnet") for _ in range(3)]
    with torch.no_grad():
        for member, bias in zip(members, (-2.0, 0.5, 4.0)):
            member.dense_output[3].bias.fill_(bias)
        sub_dsi = torch.rand(4, 20, 7, 7)
        expected = sum(member(sub_dsi) for member in members) / 3
        assert torch.allclose(DerdNetEnsemble(members)(sub_dsi), expected, atol=1e-6)
    with pytest.raises(UsageError, match="same options"):
        DerdNetEnsemble([fuse.build_model("derdnet"), fuse.build_model("derdnet", multi_pixel=True)])


def test_metres_are_linear_in_depth_after_the_clip():
    outputs = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5])
    assert DEPTH_RANGES["mvsec"].to_metres(outputs).tolist() == [1.0, 1.0, 3.75, 6.5, 6.5]
    assert DEPTH_RANGES["dsec"].to_metres(outputs).tolist() == [4.0, 4.0, 27.0, 50.0, 50.0]
    assert DEPTH_RANGES["dsec"].normalize(torch.tensor(27.0)).item() == 0.5


def test_multi_pixel_write_back_is_row_major_and_the_last_centre_wins():
    assert OFFSETS[CENTRE] == (0, 0) and all(OFFSETS[3 * (dr + 1) + (dc + 1)] == (dr, dc)
                                             for dr in (-1, 0, 1) for dc in (-1, 0, 1))
    centres = torch.tensor([[2, 2], [2, 3], [3, 2]])  # row-major, as torch.nonzero gives them
    values = torch.arange(9.0).repeat(3, 1) + torch.tensor([[0.0], [100.0], [200.0]])  # centre k, output i: 100k + i
    depth = write_points((6, 6), centres, values)
    assert depth[1, 1] == 0  # only the first centre covers (1, 1): its index 0 (dr = dc = -1)
    assert depth[1, 2] == 100 + 0  # first and second overlap: the second wins, its top-left
    assert depth[2, 2] == 200 + 1  # all three: the third (centre (3, 2)) wins, its index (dr=-1, dc=0)
    assert depth[2, 4] == 100 + 5 and depth[4, 3] == 200 + 8
    assert torch.isnan(depth[0]).all() and torch.isnan(depth[:, 5]).all() and (~torch.isnan(depth)).sum() == 9 + 3 + 3
    single = write_points((4, 4), torch.tensor([[1, 2]]), torch.tensor([5.0]))
    assert single[1, 2] == 5 and (~torch.isnan(single)).sum() == 1
    with pytest.raises(ValueError, match="leaves the 6 x 6 map"):
        write_points((6, 6), torch.tensor([[0, 3]]), values[:1])
