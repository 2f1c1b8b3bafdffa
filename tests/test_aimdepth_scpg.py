"""AIMDepth's SCPG (spec aimdepth.md §2) on hand-built spectra.

Images made of a few known frequencies show which amplitudes EAT moves; events made of one pattern
scaled by known factors fix IPE's channel ranking.
"""
from __future__ import annotations

import math

import pytest
import torch

from fuse.errors import ConfigError, UsageError
from fuse.methods.aimdepth.spectral import (
    SpectralSettings,
    amplitude_transfer,
    low_frequency_mask,
    phase_maps,
    spectral_prior,
    top_amplitude_channels,
)


def _fft(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fft2(x.double())


def _same_phase(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> bool:
    """Phases compared as unit complex numbers, so -pi and pi agree."""
    return torch.allclose((a / a.abs())[where], (b / b.abs())[where], atol=1e-4)


def _negated_index(n: int) -> torch.Tensor:
    return (-torch.arange(n)) % n


def _cosine_image(height: int, width: int, fh: int, fw: int) -> torch.Tensor:
    """(1, 1, H, W): 0.7 + 0.5 cos at frequency (fh, fw); spectrum nonzero at DC and +-(fh, fw) only."""
    y = torch.arange(height, dtype=torch.float64)[:, None] / height
    x = torch.arange(width, dtype=torch.float64)[None, :] / width
    return (0.7 + 0.5 * torch.cos(2 * math.pi * (fh * y + fw * x))).float()[None, None]


def _frequency_set(mask: torch.Tensor, axis: int) -> set[int]:
    """Signed frequencies of the rows (axis 0) or columns (axis 1) holding a True."""
    n = mask.shape[axis]
    kept = mask.any(dim=1 - axis).nonzero().flatten().tolist()
    return {k if k <= n // 2 else k - n for k in kept}


def test_mask_bin_counts_at_mvsec_size():
    sheet = low_frequency_mask(260, 346, 0.01, "sheet")
    assert sheet.dtype == torch.bool and sheet.shape == (260, 346)
    assert int(sheet.sum()) == 35
    assert _frequency_set(sheet, 0) == set(range(-2, 3))
    assert _frequency_set(sheet, 1) == set(range(-3, 4))
    fda = low_frequency_mask(260, 346, 0.01, "fda")
    assert int(fda.sum()) == 25
    assert _frequency_set(fda, 1) == set(range(-2, 3))


@pytest.mark.parametrize("convention", ["sheet", "fda"])
def test_mask_at_beta_zero_is_dc_only(convention):
    mask = low_frequency_mask(16, 21, 0.0, convention)
    assert int(mask.sum()) == 1 and bool(mask[0, 0])


def test_mask_half_width_survives_float_rounding():
    # 0.29 * 100 = 28.999999999999996 in floating point: frequency 29 is still in.
    assert _frequency_set(low_frequency_mask(100, 100, 0.29), 0) == set(range(-29, 30))


@pytest.mark.parametrize("height, width, beta, convention", [
    (260, 346, 0.01, "sheet"), (32, 48, 0.05, "sheet"), (15, 20, 0.5, "sheet"),
    (16, 16, 0.5, "sheet"), (17, 30, 0.2, "fda"), (260, 346, 0.01, "fda")])
def test_mask_is_symmetric_under_frequency_negation(height, width, beta, convention):
    mask = low_frequency_mask(height, width, beta, convention)
    assert torch.equal(mask[_negated_index(height)][:, _negated_index(width)], mask)


def test_eat_moves_exactly_the_masked_amplitudes_and_keeps_event_phase():
    torch.manual_seed(0)
    image = _cosine_image(32, 48, 1, 2).expand(2, 1, 32, 48)
    events = torch.randn(2, 3, 32, 48)
    settings = SpectralSettings(beta=0.05)  # |h| <= 1.6, |w| <= 2.4
    mask = low_frequency_mask(32, 48, 0.05)
    assert int(mask.sum()) == 15 and bool(mask[1, 2]) and not bool(mask[2, 2]) and not bool(mask[1, 3])

    out = amplitude_transfer(image, events, settings)
    assert out.shape == events.shape and out.dtype == events.dtype
    f_out, f_ev, f_im = _fft(out), _fft(events), _fft(image)
    scale = f_ev.abs().max()
    expected = torch.where(mask, f_im.abs().expand_as(f_ev), f_ev.abs())
    assert torch.allclose(f_out.abs(), expected, atol=1e-4 * scale, rtol=1e-4)
    assert (f_im.abs() - f_ev.abs())[..., mask].abs().max() > 0.1 * scale  # the masked bins did move
    visible = (f_ev.abs() > 1e-3 * scale) & (f_out.abs() > 1e-3 * scale)
    assert int(visible.sum()) > 0.9 * visible.numel()
    assert _same_phase(f_out, f_ev, visible)


def test_eat_at_beta_zero_with_equal_dc_returns_events():
    torch.manual_seed(1)
    image = torch.rand(2, 1, 20, 24)
    events = torch.randn(2, 5, 20, 24)
    events = events - events.mean(dim=(-2, -1), keepdim=True) + image.mean(dim=(-2, -1), keepdim=True)
    out = amplitude_transfer(image, events, SpectralSettings(beta=0.0))
    assert torch.allclose(out, events, atol=1e-5)


def test_eat_with_mix_zero_returns_events():
    torch.manual_seed(2)
    image, events = torch.rand(2, 3, 20, 24), torch.randn(2, 5, 20, 24)
    out = amplitude_transfer(image, events, SpectralSettings(beta=0.2, mix=0.0))
    assert torch.allclose(out, events, atol=1e-5)


def test_eat_mix_blends_amplitudes_inside_the_mask():
    torch.manual_seed(3)
    image, events = torch.rand(1, 1, 16, 20), torch.randn(1, 2, 16, 20)
    out = amplitude_transfer(image, events, SpectralSettings(beta=0.5, mix=0.25))
    expected = 0.75 * _fft(events).abs() + 0.25 * _fft(image).abs()
    assert torch.allclose(_fft(out).abs(), expected, atol=1e-4 * float(expected.max()))


@pytest.mark.parametrize("height, width", [(15, 20), (16, 16), (13, 11)])
def test_full_mask_gives_the_image_amplitude_everywhere(height, width):
    torch.manual_seed(4)
    image, events = torch.rand(2, 1, height, width), torch.randn(2, 4, height, width)
    out = amplitude_transfer(image, events, SpectralSettings(beta=0.5))
    target = _fft(image).abs().expand(2, 4, height, width)
    assert torch.allclose(_fft(out).abs(), target, atol=1e-4 * float(target.max()))


@pytest.mark.parametrize("source", ["gray", "mean"])
def test_image_amplitude_of_a_colour_image(source):
    # Channels in antiphase: the channel mean is flat, but each channel has its own cosine.
    cosine = _cosine_image(16, 24, 1, 1) - 0.7
    image = torch.cat([0.7 + cosine, 0.7 - cosine, torch.full_like(cosine, 0.7)], dim=1)
    events = torch.randn(1, 2, 16, 24)
    out = amplitude_transfer(image, events, SpectralSettings(beta=0.5, image_amplitude=source))
    if source == "gray":
        target = _fft(image.mean(dim=1, keepdim=True)).abs()
    else:
        target = _fft(image).abs().mean(dim=1, keepdim=True)
    assert torch.allclose(_fft(out).abs(), target.expand(1, 2, 16, 24), atol=1e-3)
    assert float(_fft(out).abs()[0, 0, 1, 1]) == pytest.approx(0.0 if source == "gray" else 64.0, abs=1e-3)


def _scaled_events(factors: list[list[float]], height: int = 12, width: int = 14) -> torch.Tensor:
    """(B, K, H, W): one random pattern times factors[b][k], so amplitude L1 norms rank as |factor|."""
    torch.manual_seed(5)
    pattern = torch.randn(height, width)
    return torch.tensor(factors)[:, :, None, None] * pattern


def test_top_two_channels_per_sample_largest_first():
    events = _scaled_events([[1, 5, 2, 4, 3], [3, 0.5, -6, 1, 2]])
    channels = top_amplitude_channels(events)
    assert channels.tolist() == [[1, 3], [2, 0]]
    assert channels.dtype == torch.long


def test_top_channels_ties_take_the_lower_index():
    events = _scaled_events([[2, 1, 2, -2, 0], [0, -4, 1, 4, 4]])
    assert top_amplitude_channels(events).tolist() == [[0, 2], [1, 3]]
    assert top_amplitude_channels(events, count=3).tolist() == [[0, 2, 3], [1, 3, 4]]
    # Many equal channels: an unstable sort would return them in any order.
    many = _scaled_events([[1.0 if k % 3 == 0 else -2.0 for k in range(81)]], 4, 4)
    assert top_amplitude_channels(many, count=4).tolist() == [[1, 2, 4, 5]]


def test_channel_ranking_uses_the_l1_norm_of_the_amplitude():
    # On 8 x 8: a cosine of amplitude 1 has two bins of 32 (L1 64, L2 ~45); a unit impulse of
    # height 2 has 64 bins of 2 (L1 128, L2 16). L1 ranks the impulse first, L2 would not.
    cosine = _cosine_image(8, 8, 1, 0)[0, 0] - 0.7
    impulse = torch.zeros(8, 8)
    impulse[3, 5] = 2.0
    events = torch.stack([torch.zeros(8, 8), 2 * cosine, impulse])[None]
    assert top_amplitude_channels(events).tolist() == [[2, 1]]


def test_phase_maps_are_the_angles_of_the_chosen_channels():
    torch.manual_seed(6)
    events = torch.randn(2, 5, 12, 14)
    channels = torch.tensor([[3, 1], [0, 4]])
    phases = phase_maps(events, channels)
    assert phases.shape == (2, 2, 12, 14)
    for b in range(2):
        for i in range(2):
            expected = torch.angle(torch.fft.fft2(events[b, int(channels[b, i])]))
            assert torch.allclose(torch.polar(torch.ones_like(expected), phases[b, i]),
                                  torch.polar(torch.ones_like(expected), expected), atol=1e-5)
    assert float(phases.abs().max()) <= math.pi + 1e-6
    assert torch.allclose(phase_maps(events, channels, "unit"), phases / math.pi)


def test_spectral_prior_shapes_image_kept_phases_of_raw_top_two():
    torch.manual_seed(7)
    image, events = torch.rand(2, 3, 16, 20), torch.randn(2, 5, 16, 20)
    settings = SpectralSettings()
    guided, transferred = spectral_prior(image, events, settings)
    assert guided.shape == (2, 5, 16, 20) and transferred.shape == (2, 5, 16, 20)
    assert torch.equal(guided[:, :3], image)
    assert torch.equal(transferred, amplitude_transfer(image, events, settings))
    assert torch.equal(guided[:, 3:], phase_maps(events, top_amplitude_channels(events)))
    unit, _ = spectral_prior(image, events, SpectralSettings(phase_scale="unit"))
    assert torch.allclose(unit[:, 3:], guided[:, 3:] / math.pi)
    assert float(unit[:, 3:].abs().max()) <= 1 + 1e-6


def test_ipe_source_eat_ranks_the_transferred_channels():
    # Channel 0 is mostly DC; EAT at beta = 0 swaps in the image's zero DC, so channel 0 drops out.
    torch.manual_seed(8)
    patterns = torch.randn(1, 4, 16, 16)
    patterns = patterns - patterns.mean(dim=(-2, -1), keepdim=True)
    events = patterns * torch.tensor([0.01, 1.0, 0.5, 0.1])[None, :, None, None]
    events[:, 0] += 100.0
    image = torch.zeros(1, 1, 16, 16)

    raw_guided, transferred = spectral_prior(image, events, SpectralSettings(beta=0.0))
    eat_guided, _ = spectral_prior(image, events, SpectralSettings(beta=0.0, ipe_source="eat"))
    assert top_amplitude_channels(events).tolist() == [[0, 1]]
    assert top_amplitude_channels(transferred).tolist() == [[1, 2]]
    assert torch.equal(raw_guided[:, 1:], phase_maps(events, torch.tensor([[0, 1]])))
    assert torch.equal(eat_guided[:, 1:], phase_maps(transferred, torch.tensor([[1, 2]])))


def test_gradients_reach_image_and_events():
    torch.manual_seed(9)
    image = torch.rand(2, 1, 12, 16, requires_grad=True)
    events = torch.randn(2, 5, 12, 16, requires_grad=True)
    guided, transferred = spectral_prior(image, events, SpectralSettings(beta=0.1))
    (guided.sum() + transferred.sum()).backward()
    for tensor in (image, events):
        assert tensor.grad is not None and bool(torch.isfinite(tensor.grad).all())
        assert float(tensor.grad.abs().sum()) > 0


def test_half_precision_inputs_come_back_in_their_dtype():
    torch.manual_seed(10)
    image, events = torch.rand(1, 1, 12, 14), torch.randn(1, 3, 12, 14)
    guided, transferred = spectral_prior(image.bfloat16(), events.bfloat16(), SpectralSettings(beta=0.2))
    assert guided.dtype == torch.bfloat16 and transferred.dtype == torch.bfloat16
    reference = amplitude_transfer(image.bfloat16().float(), events.bfloat16().float(), SpectralSettings(beta=0.2))
    assert torch.allclose(transferred.float(), reference, atol=2e-2)


@pytest.mark.parametrize("field, value", [
    ("mask", "centred"), ("beta", 0.6), ("beta", -0.01), ("beta", float("nan")), ("mix", 1.5),
    ("image_amplitude", "rgb"), ("ipe_source", "both"), ("phase_scale", "degrees")])
def test_settings_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        SpectralSettings(**{field: value})


def test_bad_mask_convention_and_single_event_channel_are_refused():
    with pytest.raises(ConfigError, match="'mask'.*'sheet'"):
        low_frequency_mask(8, 8, 0.1, "square")
    with pytest.raises(UsageError, match="at least 2"):
        spectral_prior(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), SpectralSettings())
    with pytest.raises(UsageError, match="share"):
        spectral_prior(torch.rand(1, 1, 8, 8), torch.rand(1, 5, 8, 9), SpectralSettings())
