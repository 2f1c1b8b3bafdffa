"""AIMDepth (fuse.methods.aimdepth): the chunked selective scan against the recurrence, ISS's
exchange of B and D, the shared encoder, the asymmetric selection, sizes and bad input."""
import pytest
import torch

import fuse
from fuse.errors import UsageError
from fuse.methods.aimdepth.model import AIMDepthConfig, build_aimdepth
from fuse.methods.aimdepth.modilocal import InteractiveScan
from fuse.methods.aimdepth.scan import selective_scan, selective_scan_reference
from fuse.methods.aimdepth.vss import SS2D, cross_merge, cross_scan, scan_orders


def _scan_inputs(length: int, batch: int = 2, groups: int = 3, per_group: int = 2, states: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    channels = groups * per_group
    tensors = dict(u=torch.randn(batch, channels, length, generator=g),
                   delta=torch.randn(batch, channels, length, generator=g) - 1,
                   A=-torch.rand(channels, states, generator=g) * 3 - 0.1,
                   B=torch.randn(batch, groups, states, length, generator=g),
                   C=torch.randn(batch, groups, states, length, generator=g),
                   D=torch.randn(channels, generator=g), delta_bias=torch.randn(channels, generator=g))
    return {name: value.requires_grad_() for name, value in tensors.items()}


@pytest.mark.parametrize("length, chunk", [(1, None), (16, None), (64, 8), (100, None), (257, 16), (300, 64)])
def test_chunked_scan_equals_the_sequential_recurrence_in_outputs_and_gradients(length, chunk):
    inputs = _scan_inputs(length)
    reference = selective_scan_reference(**inputs, delta_softplus=True)
    chunked = selective_scan(**inputs, delta_softplus=True, chunk=chunk)
    scale = reference.abs().max()
    assert (chunked - reference).abs().max() <= 1e-5 * scale
    weights = torch.randn(reference.shape, generator=torch.Generator().manual_seed(1))
    names = list(inputs)
    expected = torch.autograd.grad((reference * weights).sum(), [inputs[n] for n in names])
    got = torch.autograd.grad((chunked * weights).sum(), [inputs[n] for n in names])
    for name, e, c in zip(names, expected, got):
        assert (c - e).abs().max() <= 1e-5 * e.abs().max(), name


def test_reference_is_the_recurrence_written_out():
    """One channel, one state, three steps by hand: h_t = exp(Δ_t a) h_{t-1} + Δ_t b_t x_t, y = c_t h_t + d x_t."""
    u, delta = torch.tensor([[[1.0, 2.0, -1.0]]]), torch.tensor([[[0.5, 0.25, 1.0]]])
    A, D = torch.tensor([[-2.0]]), torch.tensor([0.5])
    B, C = torch.tensor([[[[1.0, -1.0, 2.0]]]]), torch.tensor([[[[3.0, 1.0, -1.0]]]])
    h, expected = 0.0, []
    for t in range(3):
        h = torch.exp(delta[0, 0, t] * -2.0) * h + delta[0, 0, t] * B[0, 0, 0, t] * u[0, 0, t]
        expected.append(C[0, 0, 0, t] * h + 0.5 * u[0, 0, t])
    expected = torch.stack(expected)
    torch.testing.assert_close(selective_scan_reference(u, delta, A, B, C, D)[0, 0], expected)
    torch.testing.assert_close(selective_scan(u, delta, A, B, C, D, chunk=2)[0, 0], expected)


def test_strong_decay_over_long_chunks_stays_finite():
    """Every exponent is A * (a sum of Δ) <= 0: no overflow where a log-space scan would give inf/NaN."""
    inputs = {k: v.detach() for k, v in _scan_inputs(200).items()}
    inputs["delta"] = inputs["delta"] + 8  # softplus ~ 7 per step, A down to -3.1: exp(+4000) in log space
    y = selective_scan(**inputs, delta_softplus=True, chunk=200)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, selective_scan_reference(**inputs, delta_softplus=True), rtol=1e-5, atol=1e-5)


def test_cross_scan_orders_and_merge():
    orders = scan_orders(("h", "v", "h_flip", "v_flip", "window", "window_shifted"), 4, 6, window=2)
    assert all(sorted(order.tolist()) == list(range(24)) for order in orders)  # each visits every pixel once
    assert orders[1][:4].tolist() == [0, 6, 12, 18]  # column-major: down the first column
    assert orders[2].tolist() == list(range(23, -1, -1))
    assert orders[4][:4].tolist() == [0, 1, 6, 7]  # the first 2x2 tile before moving on
    assert orders[5][:3].tolist() == [0, 1, 2]  # shifted tiling: a 1x1 corner tile, then a 1x2 tile
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    scanned = cross_scan(x, orders)
    assert torch.equal(scanned[:, 1], x.transpose(2, 3).flatten(2))
    # merging puts every order's values back in place: K copies of the image
    assert torch.equal(cross_merge(scanned, orders), 6 * x.flatten(2))


def _iss_with_distinct_parameters() -> InteractiveScan:
    torch.manual_seed(0)
    iss = InteractiveScan(8, d_state=4, ssm_ratio=1.0)
    with torch.no_grad():
        for branch in (iss.image, iss.events):
            branch.A_logs.uniform_(-1, 1)
            branch.Ds.normal_()
    return iss


@pytest.mark.parametrize("part", ["A_logs", "Ds", "x_proj_B", "x_proj_C", "x_proj_dt"])
def test_iss_uses_the_other_modality_b_and_d_and_its_own_a_c_and_delta(part):
    """Change one parameter of the image branch and see which branch's output moves: B and D act on the
    event output only, A, C and Δ on the image output only (spec §4.1)."""
    iss = _iss_with_distinct_parameters()
    image, events = torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 8)
    with torch.no_grad():
        before = iss(image, events)
        rank, states = iss.image.dt_rank, iss.image.d_state
        rows = {"x_proj_dt": slice(0, rank), "x_proj_B": slice(rank, rank + states),
                "x_proj_C": slice(rank + states, rank + 2 * states)}
        if part in rows:
            iss.image.x_proj_weight[:, rows[part]] += torch.randn_like(iss.image.x_proj_weight[:, rows[part]])
        else:
            getattr(iss.image, part).add_(0.5)
        after = iss(image, events)
    image_moved = not torch.allclose(before[0], after[0])
    events_moved = not torch.allclose(before[1], after[1])
    crosses = part in ("x_proj_B", "Ds")
    assert (image_moved, events_moved) == (not crosses, crosses)


def test_iss_without_exchange_is_two_independent_ss2d():
    iss = _iss_with_distinct_parameters()
    iss.exchange = "none"
    image, events = torch.randn(1, 4, 5, 8), torch.randn(1, 4, 5, 8)
    out_image, out_events = iss(image, events)
    torch.testing.assert_close(out_image, image + iss.image(iss.norm_image(image)))
    torch.testing.assert_close(out_events, events + iss.events(iss.norm_events(events)))


def test_encoder_is_shared_by_both_modalities_and_selection_a_is_wired_as_documented(monkeypatch):
    model = build_aimdepth("tiny")
    assert not any("event" in name and "encoder" in name for name, _ in model.named_parameters())
    calls = []
    original = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda x, stages=4, embed=None: calls.append(stages) or
                        original(x, stages, embed))
    fused = []
    for level, fusion in model.fusions.items():
        monkeypatch.setattr(fusion, "forward", lambda i, e, level=level: fused.append(level) or i + e)
    image, events = torch.randn(1, 3, 64, 64), torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        levels = model.features(image, events)
        image_levels = original(model.encoder_input(image, events)[0], 3)
        event_levels = original(model.encoder_input(image, events)[1])
    assert calls == [3, 4]  # images stop after stage 3, events run all four stages of the one encoder
    assert fused == ["1", "2"]  # ModiLocal on stages 2 and 3
    torch.testing.assert_close(levels[0], image_levels[0])  # stage 1: the image's
    torch.testing.assert_close(levels[1], image_levels[1] + event_levels[1])
    torch.testing.assert_close(levels[3], event_levels[3])  # stage 4: the events'
    assert [tuple(level.shape[1:3]) for level in levels] == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_selection_b_and_ablations_change_the_pyramid():
    image, events = torch.randn(1, 3, 64, 64), torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        b = build_aimdepth("tiny", selection="B")
        assert sorted(b.fusions) == ["0", "1", "2"] and len(b.features(image, events)) == 3
        assert b(image, events).shape == (1, 64, 64)
        symmetric = build_aimdepth("tiny", ame=False)
        assert sorted(symmetric.fusions) == ["0", "1", "2", "3"]
        assert not build_aimdepth("tiny", modilocal=False).fusions


def test_output_is_metric_depth_in_the_representable_range():
    model = build_aimdepth("tiny").eval()
    with torch.no_grad():
        depth = model(torch.randn(2, 3, 64, 96), torch.randn(2, 5, 64, 96))
        assert depth.shape == (2, 64, 96)
        low, high = 80 * torch.exp(torch.tensor(-3.70378)), 80.0
        assert bool(((depth >= low - 1e-4) & (depth <= high + 1e-4)).all())
        y = torch.tensor([0.0, 0.5, 1.0])
        torch.testing.assert_close(model.to_depth(torch.logit(y.clamp(1e-6, 1 - 1e-6))),
                                   80 * torch.exp(-3.70378 * (1 - y)), rtol=1e-4, atol=1e-4)


def test_public_api_sizes_and_parameter_count():
    assert "aimdepth" in fuse.list_models()
    paper = fuse.build_model("aimdepth")
    assert paper.config.size == "paper"
    count = sum(p.numel() for p in paper.parameters())
    assert abs(count - 45.07e6) <= 0.15 * 45.07e6, count
    tiny = fuse.build_model("aimdepth", size="tiny")
    assert sum(p.numel() for p in tiny.parameters()) < 1e6


def test_config_round_trips_through_its_dict():
    config = AIMDepthConfig.from_options("tiny", selection="B", exchange="C", spectral={"beta": 0.02})
    again = AIMDepthConfig.from_options(**{k: v for k, v in config.to_dict().items() if k != "kind"})
    assert again == config


def test_bad_input_gets_one_clear_message_each():
    model = build_aimdepth("tiny")
    with pytest.raises(UsageError, match="multiples of 32"):
        model(torch.randn(1, 3, 60, 64), torch.randn(1, 5, 60, 64))
    with pytest.raises(UsageError, match=r"RGB images of shape \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64), torch.randn(1, 5, 64, 64))
    with pytest.raises(UsageError, match="--numbins 5"):
        model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    with pytest.raises(UsageError, match="stem='separate'"):
        build_aimdepth("tiny", event_bins=3)
    with pytest.raises(UsageError, match="unknown AIMDepth size"):
        build_aimdepth("huge")
    padded = build_aimdepth("tiny", input_fit="pad").eval()
    with torch.no_grad():
        assert padded(torch.randn(1, 3, 60, 70), torch.randn(1, 5, 60, 70)).shape == (1, 60, 70)


def test_separate_stems_take_other_bin_counts():
    model = build_aimdepth("tiny", stem="separate", event_bins=3)
    assert model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)).shape == (1, 32, 32)


def test_ss2d_is_the_composition_of_its_parts():
    """SS2D.forward = finish(scan(project(x))): the pieces ISS recombines are the whole block."""
    torch.manual_seed(0)
    block = SS2D(8, d_state=4, ssm_ratio=1.0)
    x = torch.randn(2, 3, 5, 8)
    inputs = block.project(x)
    torch.testing.assert_close(block(x), block.finish(block.scan(inputs), inputs.z))
