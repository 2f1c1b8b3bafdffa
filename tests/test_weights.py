"""Checkpoint compatibility: published layouts filled with random values, loaded and compared
against the functional reference of the spec (fuse/testing/reference_fuse.py)."""
import subprocess
import sys

import pytest
import torch

import fuse
from fuse.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from fuse.methods.fuse.weights import inspect_state
from fuse.weights import load_model
from fuse.methods.fuse import LoRALinear
from fuse.testing import reference_fuse
from fuse.testing.published_layout import depth_anything_layout, fuse_layout, random_state


def rel_l2(a, b):
    assert b.norm() > 0, "reference output is all zero: the comparison would be vacuous"
    return float((a - b).norm() / b.norm())


def assert_every_value_reached(model, state, mapping=lambda k: k):
    model_state = model.state_dict()
    for key, value in state.items():
        target = mapping(key)
        if target is not None:
            assert torch.equal(model_state[target], value), key


@pytest.fixture(scope="module")
def dav2_vits(tmp_path_factory):
    state = random_state(depth_anything_layout("vits"), seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "depth_anything_v2_vits.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("size", [(266, 266), (252, 336)])
def test_depth_anything_v2_release_matches_reference(dav2_vits, size):
    path, state = dav2_vits
    model = fuse.build_model("depth_anything_v2", encoder="vits").eval()
    report = fuse.load_weights(model, path)
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert report.ignored == {} and report.initialized == {}
    assert_every_value_reached(model, state)
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(image)
        ref = reference_fuse.depth_anything(state, image, "vits")
    assert ours.shape == (1, *size)
    assert rel_l2(ours, ref) < 1e-4


def test_release_as_both_encoders_of_fuse(dav2_vits):
    path, state = dav2_vits
    model = fuse.build_model("fuse", encoder="vits", head="relative")
    report = fuse.load_weights(model, path)
    for prefix in ("image_encoder.", "prompt_encoder."):
        assert_every_value_reached(model, state, lambda k: k.replace("pretrained.", prefix) if k.startswith("pretrained.") else None)
    assert_every_value_reached(model, state, lambda k: k if k.startswith("depth_head.") else None)
    assert set(k.split(".")[0] for k in report.initialized) == {"prompt_fuse", "prompt_encoder"}
    assert all("lora" in k for k in report.initialized if k.startswith("prompt_encoder"))
    # LoRA adapters start as a zero update, so the event encoder equals the image encoder.
    assert all(m.lora_B.abs().sum() == 0 for m in model.modules() if isinstance(m, LoRALinear))


def _upstream_fuse_file(tmp_path, size, head=None, conv_wrapper=False, seed=3):
    state = random_state(fuse_layout(size, head), seed=seed)
    file_state = {}
    for key, value in state.items():
        if conv_wrapper and key.startswith("prompt_encoder.patch_embed.proj."):
            key = key.replace("patch_embed.proj.", "patch_embed.proj.conv.")
        file_state["module." + key] = value
    path = tmp_path / f"fuse_{size}.pth"
    torch.save({"model": file_state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 9,
                "previous_best": {"abs_rel": 0.2}}, path)
    return path, state


@pytest.mark.parametrize("head,max_depth", [("metric", 80.0), ("relative", 1.0)])
def test_upstream_fuse_checkpoint_matches_reference(tmp_path, head, max_depth):
    path, state = _upstream_fuse_file(tmp_path, "vits", conv_wrapper=head == "relative")
    model = fuse.build_model("fuse", encoder="vits", head=head, max_depth=max_depth).eval()
    report = fuse.load_weights(model, path)
    assert all(k.startswith("prompt_encoder.") and ".lora_" in k for k in report.initialized)
    ignored = set(report.ignored)
    assert all(".lora_" in k or "cross_att.temperature" in k or "cross_att.norm2" in k for k in ignored)
    assert any("temperature" in k for k in ignored) and any(".lora_A" in k for k in ignored)
    # Every upstream adapter (qkv, proj, fc1, fc2) is reported as already merged, none loaded.
    merged = {k for k, why in report.ignored.items() if "already merged" in why}
    assert merged == {k for k in state if ".lora_" in k}
    assert {"prompt_encoder.blocks.0.mlp.fc1.lora_A", "prompt_encoder.blocks.11.mlp.fc2.lora_B"} <= merged
    assert_every_value_reached(model, state, lambda k: None if (".lora_" in k or "temperature" in k or "cross_att.norm2" in k) else k)
    g = torch.Generator().manual_seed(4)
    image, events = torch.randn(1, 3, 266, 266, generator=g), torch.randn(1, 3, 266, 266, generator=g)
    with torch.no_grad():
        ours = model(image, events)
        ref = reference_fuse.fuse_forward(state, image, events, "vits", head, max_depth)
    assert rel_l2(ours, ref) < 1e-4


def test_upstream_stage1_checkpoint_into_student_and_fuse(tmp_path):
    state = random_state(depth_anything_layout("vitt", lora=True), seed=5)
    path = tmp_path / "align.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}, "epoch": 9}, path)
    student = fuse.build_model("event_student", encoder="vitt").eval()
    report = fuse.load_weights(student, path)
    assert {k for k, why in report.ignored.items() if "merged" in why} == {k for k in state if ".lora_" in k}
    assert {"pretrained.blocks.3.mlp.fc1.lora_A", "pretrained.blocks.3.mlp.fc2.lora_B"} <= set(report.ignored)
    assert_every_value_reached(student, state, lambda k: None if ".lora_" in k else k)
    voxel = torch.randn(2, 3, 70, 98, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ours = student(voxel)
    assert rel_l2(ours, reference_fuse.depth_anything(state, voxel, "vitt")) < 1e-4

    model = fuse.build_model("fuse", encoder="vitt")
    with pytest.raises(CheckpointError, match="into='prompt_encoder'"):
        fuse.load_weights(model, path)
    report = fuse.load_weights(model, path, into="prompt_encoder")
    assert_every_value_reached(model, state, lambda k: k.replace("pretrained.", "prompt_encoder.")
                               if k.startswith("pretrained.") and ".lora_" not in k else None)
    assert all(k.startswith("depth_head.") or ".lora_" in k for k in report.ignored)


def test_own_checkpoint_round_trip_keeps_lora_separate(tmp_path):
    torch.manual_seed(0)
    model = fuse.build_model("fuse", encoder="vitt", event_bins=5).eval()
    for layer in model.modules():
        if isinstance(layer, LoRALinear):
            torch.nn.init.normal_(layer.lora_B, std=0.1)
    path = save_checkpoint(tmp_path / "run" / "latest.pth", model, epoch=3, step=10)
    assert not list((tmp_path / "run").glob(".*.partial"))
    restored, report = load_model(path)
    assert restored.config == model.config
    assert report.ignored == {} and report.initialized == {}
    image, events = torch.randn(1, 3, 56, 56), torch.randn(1, 5, 56, 56)
    with torch.no_grad():
        assert torch.equal(restored.eval()(image, events), model(image, events))
    assert read_checkpoint(path)["epoch"] == 3


def test_size_mismatch_names_what_the_file_holds(tmp_path):
    path = tmp_path / "vits.pth"
    torch.save(random_state(depth_anything_layout("vits")), path)
    model = fuse.build_model("depth_anything_v2", encoder="vitt")
    with pytest.raises(CheckpointError) as error:
        fuse.load_weights(model, path)
    message = str(error.value)
    assert "encoder vits" in message and "encoder vitt" in message and str(path) in message


def test_head_size_detected_separately(tmp_path):
    path = tmp_path / "vitt_headvits.pth"
    state = random_state(depth_anything_layout("vitt", head="vits"))
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="head_size='vits'"):
        fuse.load_weights(fuse.build_model("depth_anything_v2", encoder="vitt"), path)
    model = fuse.build_model("depth_anything_v2", encoder="vitt", head_size="vits")
    fuse.load_weights(model, path)
    assert_every_value_reached(model, state)
    auto, _ = load_model(path)
    assert auto.config.encoder == "vitt" and auto.config.head_size == "vits"


def test_other_model_kind_is_refused(tmp_path):
    path, _ = _upstream_fuse_file(tmp_path, "vitt")
    with pytest.raises(CheckpointError, match="fuse checkpoint"):
        fuse.load_weights(fuse.build_model("depth_anything_v2", encoder="vitt"), path)


@pytest.mark.parametrize("size", ["vits", "vitb", "vitl", "vitg"])
def test_sizes_detected_from_shapes(size):
    with torch.device("meta"):
        dav2 = {k: torch.empty(s) for k, s in depth_anything_layout(size).items()}
        full = {k: torch.empty(s) for k, s in fuse_layout(size).items()}
    assert (inspect_state(dav2).kind, inspect_state(dav2).encoder, inspect_state(dav2).head_size) == \
        ("depth_anything_v2", size, size)
    layout = inspect_state(full)
    assert (layout.kind, layout.encoder, layout.head_size, layout.event_bins) == ("fuse", size, size, 3)


def test_event_bins_other_than_three_adapt_the_patch_embedding(tmp_path):
    path = tmp_path / "dav2.pth"
    state = random_state(depth_anything_layout("vitt"))
    torch.save(state, path)
    student = fuse.build_model("event_student", encoder="vitt", event_bins=5)
    report = fuse.load_weights(student, path)
    assert list(report.adapted) == ["pretrained.patch_embed.proj.weight"]
    expected = state["pretrained.patch_embed.proj.weight"].mean(1, keepdim=True).expand(-1, 5, -1, -1) * 3 / 5
    assert torch.allclose(student.pretrained.patch_embed.proj.weight, expected)
    # A trained 5-bin event encoder is never silently squeezed into a 3-bin model.
    save_checkpoint(tmp_path / "five.pth", student)
    with pytest.raises(CheckpointError, match="event_bins=5"):
        fuse.load_weights(fuse.build_model("event_student", encoder="vitt"), tmp_path / "five.pth")


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        fuse.load_weights(fuse.build_model("depth_anything_v2", encoder="vitt"), tmp_path / "nope.pth")
    good = tmp_path / "good.pth"
    torch.save(random_state(depth_anything_layout("vitt")), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        fuse.load_weights(fuse.build_model("depth_anything_v2", encoder="vitt"), truncated)
    foreign = tmp_path / "foreign.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint of any known layout"):
        fuse.load_weights(fuse.build_model("depth_anything_v2", encoder="vitt"), foreign)


def test_convert_upstream_file(tmp_path):
    path, state = _upstream_fuse_file(tmp_path, "vitt")
    out = tmp_path / "converted.pth"
    result = subprocess.run([sys.executable, "-m", "fuse", "convert", str(path), str(out), "--head", "metric",
                             "--max-depth", "80"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model, report = load_model(out)
    assert model.config.kind == "fuse" and model.config.max_depth == 80.0
    assert_every_value_reached(model, state, lambda k: None if (".lora_" in k or "temperature" in k or "cross_att.norm2" in k) else k)
    bad = subprocess.run([sys.executable, "-m", "fuse", "convert", str(tmp_path / "missing.pth"), str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
