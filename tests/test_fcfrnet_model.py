"""STD and FCFRNet (spec fcfrnet.md §2-§3): parameter counts, channel shuffle, energy fusion, the
wiring quirk, the decoder order, output mappings, input modes and bad-input messages."""
from __future__ import annotations

import pytest
import torch

import fuse
from fuse.errors import UsageError
from fuse.methods.fcfrnet.layers import channel_shuffle, energy_fusion, window_energy
from fuse.registry import model_kind

HEIGHT, WIDTH = 16, 32  # small multiples of 16: every test runs in seconds


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights large enough that every layer shows in the output: the spec's N(0, 1e-3) conv weights
    scaled to N(0, 0.05), BatchNorm parameters and statistics drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and tensor.ndim > 1:
                tensor.mul_(50.0)
            elif tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.05
                tensor.copy_(values.abs() + 0.5 if name.endswith(("running_var", ".weight")) else values)
    return model


def inputs(seed: int = 0, image_channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, image_channels, HEIGHT, WIDTH, generator=generator)
    depth = torch.rand(1, 1, HEIGHT, WIDTH, generator=generator) * 90
    return image, depth


def test_parameter_counts_are_the_specs():
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(fuse.build_model("std")) == 26_108_193
    assert count(fuse.build_model("fcfrnet")) == 50_592_577


def test_kinds_are_registered_with_their_inputs_and_output():
    for name in ("std", "fcfrnet"):
        kind = model_kind(name)
        assert kind.inputs == ("image", "sparse_depth") and kind.output(kind.default_head) == "metric_depth"


def test_channel_shuffle_interleaves_and_splits_in_halves():
    colour = torch.tensor([10.0, 11, 12, 13]).view(1, 4, 1, 1)
    depth = torch.tensor([20.0, 21, 22, 23]).view(1, 4, 1, 1)
    first, second = channel_shuffle(colour, depth)
    assert first.flatten().tolist() == [10, 20, 11, 21]
    assert second.flatten().tolist() == [12, 22, 13, 23]


def test_window_energy_is_a_zero_padded_5x5_sum_of_squares():
    spike = torch.zeros(1, 1, 7, 7)
    spike[0, 0, 0, 0] = 3.0
    energy = window_energy(spike, 5)[0, 0]
    assert energy[2, 2] == 9 and energy[0, 2] == 9 and energy[2, 3] == 0 and energy[3, 0] == 0
    counts = window_energy(torch.ones(1, 1, 7, 7), 5)[0, 0]
    assert counts[0, 0] == 9 and counts[0, 1] == 12 and counts[1, 1] == 16 and counts[3, 3] == 25


def test_energy_fusion_takes_the_stronger_branch_ties_to_branch_1_and_doubles():
    spike = torch.zeros(1, 1, 7, 7)
    spike[0, 0, 0, 0] = 3.0  # window energy 9 around the corner
    flat = torch.ones(1, 1, 7, 7)  # energy 9 at the corner (zero padding), more inside
    fused = energy_fusion(spike, flat)[0, 0]
    assert fused[0, 0] == 6  # tie 9 = 9: branch 1, doubled; with replicate padding branch 2 would win
    assert fused[0, 1] == 2 and fused[3, 3] == 2  # branch 2 stronger: 12 > 9, 25 > 0
    assert torch.equal(energy_fusion(-flat, flat), -2 * flat)  # equal energy everywhere: branch 1
    assert torch.equal(energy_fusion(flat, 0.5 * flat, gain=1.0), flat)


def spec_residual(model: torch.nn.Module, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """``convtf``'s output y by FCFRNet's table in spec §3, row by row (released wiring)."""
    conv1, conv1_2 = model.conv1_img(image), model.conv1_d_2(depth.clamp(max=85) / 85)
    conv2, conv2_2 = channel_shuffle(model.conv2(conv1), model.conv2_2(conv1_2))
    conv3, conv3_2 = channel_shuffle(model.conv3(conv2), model.conv3_2(conv2_2))
    conv4, conv4_2 = channel_shuffle(model.conv4(conv3), model.conv4_2(conv3))
    conv5, conv5_2 = channel_shuffle(model.conv5(conv4), model.conv5_2(conv4))
    conv6, conv6_2 = channel_shuffle(model.conv6(conv5), model.conv6_2(conv5))
    y = model.convt5(energy_fusion(conv6, conv6_2))
    y = model.convt4(torch.cat((y, conv5, conv5_2), 1))
    y = model.convt3(torch.cat((y, conv4, conv4_2), 1))
    y = model.convt2(torch.cat((y, conv3, conv3_2), 1))
    y = model.convt1(torch.cat((y, conv2, conv2_2), 1))
    return model.convtf(torch.cat((y, conv1, conv1_2), 1))


def residual(model: torch.nn.Module, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """``convtf``'s output y in the model's own forward pass."""
    seen = []
    handle = model.convtf.register_forward_hook(lambda module, args, output: seen.append(output))
    model(image, depth)
    handle.remove()
    return seen[0]


def test_fcfrnet_follows_the_specs_table_and_the_clean_wiring_differs():
    model = randomize(fuse.build_model("fcfrnet")).eval()
    image, depth = inputs()
    with torch.no_grad():
        expected = spec_residual(model, image, depth)
        assert expected.std() > 0.01  # every layer matters at this scale
        assert torch.allclose(residual(model, image, depth), expected, rtol=1e-4, atol=1e-6)
        clean = fuse.build_model("fcfrnet", wiring="clean").eval()
        clean.load_state_dict(model.state_dict())
        fed = {}
        clean.conv4_2.register_forward_pre_hook(lambda module, args: fed.setdefault("conv4_2", args[0]))
        clean.conv4.register_forward_pre_hook(lambda module, args: fed.setdefault("conv4", args[0]))
        clean_residual = residual(clean, image, depth)
    assert fed["conv4_2"].shape == fed["conv4"].shape and not torch.equal(fed["conv4_2"], fed["conv4"])
    assert (clean_residual - expected).abs().max() > 1e-3


def zero_residual(model: torch.nn.Module, bias: float) -> torch.nn.Module:
    with torch.no_grad():
        model.convtf[0].weight.zero_()
        model.convtf[0].bias.fill_(bias)
    return model


def test_fcfrnet_output_mappings_train_and_eval_with_the_clamp():
    model = zero_residual(fuse.build_model("fcfrnet"), 0.0)
    image = torch.rand(1, 3, HEIGHT, WIDTH)
    depth = torch.tensor([0.1, 0.5, 10.0, 100.0]).repeat_interleave(WIDTH // 4).expand(1, 1, HEIGHT, WIDTH)
    with torch.no_grad():
        train = model.train()(image, depth)[0, 0]
        evaluation = model.eval()(image, depth)[0, 0]
        assert torch.allclose(train, torch.tensor([0.1, 0.5, 10.0, 85.0]).repeat_interleave(WIDTH // 4))
        assert torch.allclose(evaluation, torch.tensor([0.9, 0.9, 10.0, 85.0]).repeat_interleave(WIDTH // 4))
        below = zero_residual(model, -1.0)(image, depth)  # 85 (-1 + d / 85) < 0.9 everywhere
        assert torch.all(below == 0.9) and torch.allclose(model.train()(image, depth), depth[:, 0].clamp(max=85) - 85, atol=1e-4)
        above = zero_residual(model, 1.0).eval()(image, depth)
        assert torch.all(above == 85)


def test_std_output_mappings_train_and_eval():
    model = zero_residual(fuse.build_model("std"), 0.05)
    image, depth = inputs()
    with torch.no_grad():
        assert torch.allclose(model.train()(image, depth), torch.full((1, HEIGHT, WIDTH), 5.0))
        assert torch.allclose(model.eval()(image, depth), torch.full((1, HEIGHT, WIDTH), 5.0))
        zero_residual(model, -0.01)
        assert torch.allclose(model.train()(image, depth), torch.full((1, HEIGHT, WIDTH), -1.0))
        assert torch.all(model.eval()(image, depth) == 0.9)


@pytest.mark.parametrize("mode, image_channels, std_stems", [("rgbd", 3, (16, 48)), ("gd", 1, (32, 32)),
                                                             ("d", 0, (64, 0))])
def test_input_modes_set_the_stems(mode, image_channels, std_stems):
    std = fuse.build_model("std", input_mode=mode)
    fcfrnet = fuse.build_model("fcfrnet", input_mode=mode)
    assert std.conv1_d[0].out_channels == std_stems[0] and fcfrnet.conv1_d_2[0].in_channels == 1
    if image_channels:
        assert std.conv1_img[0].in_channels == image_channels and std.conv1_img[0].out_channels == std_stems[1]
        assert fcfrnet.conv1_img[0].in_channels == image_channels and fcfrnet.conv1_img[0].out_channels == 64
    else:
        assert not hasattr(std, "conv1_img") and not hasattr(fcfrnet, "conv1_img")
    image, depth = inputs(image_channels=max(image_channels, 1))
    with torch.no_grad():
        for model in (std.eval(), fcfrnet.eval()):
            assert model(image if image_channels else None, depth).shape == (1, HEIGHT, WIDTH)


@pytest.mark.parametrize("image_shape, depth_shape, says", [
    ((1, 3, 32, 64), (1, 1, 32, 48), ["(1, 3, 32, 64)", "(1, 1, 32, 48)", "differ in batch or size"]),
    ((1, 3, 40, 64), (1, 1, 40, 64), ["(1, 3, 40, 64)", "multiples of 16", "48 x 64"]),
    ((1, 1, 32, 64), (1, 1, 32, 64), ["(1, 1, 32, 64)", "3-channel image", "input_mode='gd'"]),
    ((1, 3, 32, 64), (1, 2, 32, 64), ["(1, 2, 32, 64)", "one depth channel"]),
    ((1, 3, 32, 64), (1, 32, 64), ["(1, 32, 64)", "depth[:, None]"]),
])
def test_bad_inputs_are_one_clear_usage_error(image_shape, depth_shape, says):
    for kind in ("std", "fcfrnet"):
        model = fuse.build_model(kind).eval()
        with pytest.raises(UsageError) as error:
            model(torch.zeros(image_shape), torch.zeros(depth_shape))
        assert all(text in str(error.value) for text in says), str(error.value)


@pytest.mark.parametrize("options", [{"wiring": "other"}, {"energy_kernel": 4}, {"input_mode": "rgb"},
                                     {"max_depth": 0.5}, {"depth": 3}])
def test_bad_options_are_usage_errors(options):
    with pytest.raises(UsageError):
        fuse.build_model("fcfrnet", **options)
