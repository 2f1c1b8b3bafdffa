"""IID-RDepth's parts on tiny models: the couplings invert to 1e-5 and stay within their configured
bi-Lipschitz bounds (and the probe catches unbounded ones); with nothing switched on the wrapper is
the frozen base bit for bit (DA-V2 and FUSE); AV-LFE is the identity without an auxiliary view;
restored features keep their shapes; only the plug-in trains; checkpoints round-trip."""
import pytest
import torch

import fuse
from fuse.checkpoint import save_checkpoint
from fuse.errors import UsageError
from fuse.methods.iid_rdepth import AVLFE, CouplingSettings, InvertibleStack, lipschitz_bounds
from fuse.weights import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

HEIGHT, WIDTH = 56, 70
TINY = dict(restorer_width=16)


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, HEIGHT, WIDTH, generator=generator), torch.randn(2, 3, HEIGHT, WIDTH, generator=generator)


def _dav2(seed: int = 0):
    torch.manual_seed(seed)
    return fuse.build_model("depth_anything_v2", encoder="vitt", head="metric", max_depth=10.0).eval()


def _fuse(seed: int = 0):
    torch.manual_seed(seed)
    return fuse.build_model("fuse", encoder="vitt", head="metric", max_depth=10.0).eval()


def _nudge(model: torch.nn.Module, seed: int = 1) -> None:
    """Move every trainable parameter off its identity start (as training would)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.5 * torch.randn(param.shape, generator=generator))


def _stack(**options) -> InvertibleStack:
    torch.manual_seed(0)
    stack = InvertibleStack(16, CouplingSettings(**options))
    with torch.no_grad():
        for block in stack.blocks:
            block.gh.gain.fill_(2.0)
            block.g2.gain.fill_(2.0)
    return stack


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_coupling_stack_inverts_and_stays_within_its_configured_bounds(coupling):
    stack = _stack(coupling=coupling, blocks=3)
    x = 2 * torch.randn(3, 16, 12, 10, generator=torch.Generator().manual_seed(1))
    y = stack(x)
    assert (y - x).abs().max() > 0.05  # not the identity
    assert (stack.inverse(y) - x).abs().max() <= 1e-5
    probe = lipschitz_bounds(stack, x, rounds=4)
    bounds = stack.configured_bounds(probe.radius)
    assert 0 < bounds[0] <= probe.lower <= probe.upper <= bounds[1]
    assert probe.within(bounds)


def test_lipschitz_probe_catches_unbounded_sub_networks_and_too_tight_bounds():
    stack = _stack(lipschitz_method="none")
    with torch.no_grad():
        for block in stack.blocks:
            for net in (block.gh, block.g2):
                net.conv1.weight.mul_(30)
                net.conv2.weight.mul_(30)
    x = 1e-3 * torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    probe = lipschitz_bounds(stack, x, rounds=2)
    assert probe.upper > stack.configured_bounds(probe.radius)[1]
    bounded = _stack()
    probe = lipschitz_bounds(bounded, x, rounds=2)
    assert not probe.within((1.0, 1.0 + 1e-9))  # the probe sees the couplings move away from isometry


@pytest.mark.parametrize("make_base", [_dav2, _fuse], ids=["depth_anything_v2", "fuse"])
def test_everything_off_is_the_frozen_base_bit_for_bit(make_base, inputs):
    image, events = inputs
    base = make_base()
    call = (image,) if base.config.kind == "depth_anything_v2" else (image, events)
    with torch.no_grad():
        expected = base(*call)
        model = fuse.build_model("iid_rdepth", base=base, diffusion_steps=0, invertible_stages=False, aux_view=None)
        assert model.restorer is None and model.fine is None and model.av_lfe is None
        assert torch.equal(model.eval()(*call), expected)
        # every trainable part starts as an exact identity: a fresh full model is the base too
        full = fuse.build_model("iid_rdepth", base=base, diffusion_steps=2, **TINY).eval()
        assert torch.equal(full(*call), expected)


def test_restored_features_keep_their_shapes_and_the_restorer_changes_them(inputs):
    image, _ = inputs
    base = _dav2()
    model = fuse.build_model("iid_rdepth", base=base, diffusion_steps=3, restore_levels=[0, 2, 3], **TINY).eval()
    _nudge(model.restorer)
    with torch.no_grad():
        _, original = base(image, return_features=True)
        depth, restored = model(image, return_features=True)
        again = model(image)
    assert [f.shape for f in restored] == [f.shape for f in original]
    assert torch.equal(restored[1], original[1])  # not restored
    assert all(not torch.equal(restored[i], original[i]) for i in (0, 2, 3))
    assert depth.shape == (2, HEIGHT, WIDTH) and torch.equal(depth, again)  # eval noise is seeded


def test_av_lfe_is_exactly_the_identity_without_an_auxiliary_view(inputs):
    module = AVLFE(8, align="offsets", align_patch=2)
    _nudge(module)
    main = torch.randn(2, 8, 10, 12)
    assert module(main) is main
    assert not torch.equal(module(main, torch.randn(2, 8, 5, 6)), main)
    deformable = AVLFE(8, align="deformable")
    _nudge(deformable)
    assert not torch.equal(deformable(main, torch.randn(2, 8, 10, 12)), main)

    image, events = inputs
    base = _dav2()
    with torch.no_grad():
        expected = base(image)
    for view, aux in (("right", image.flip(-1)), ("events", events)):
        model = fuse.build_model("iid_rdepth", base=base, diffusion_steps=0, invertible_stages=False, aux_view=view)
        _nudge(model)
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(image), expected)  # no auxiliary input: identity path
            assert not torch.equal(model(image, aux=aux), expected)


def test_only_the_plug_in_trains_and_the_base_stays_frozen(inputs):
    image, events = inputs
    base = _fuse()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = fuse.build_model("iid_rdepth", base=base, diffusion_steps=2, aux_view="events", **TINY)
    model.train()
    assert not base.training and not any(p.requires_grad for p in base.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    target = torch.full((2, HEIGHT, WIDTH), 3.0)
    losses = []
    for _ in range(3):
        loss = (model(image, events) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in base.parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    names = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"restorer", "fine", "av_lfe", "event_features"}


def test_a_checkpoint_rebuilds_the_wrapper_through_the_generic_loader(tmp_path, inputs):
    image, _ = inputs
    model = fuse.build_model("iid_rdepth", base=_dav2(), diffusion_steps=2, aux_view="right", coupling="additive",
                             **TINY)
    _nudge(model)
    path = save_checkpoint(tmp_path / "iid.pth", model)
    loaded, report = load_model(path)
    assert loaded.config == model.config and not report.ignored
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(image, aux=image), model(image, aux=image))


def test_usage_errors_say_what_to_pass(inputs):
    image, _ = inputs
    with pytest.raises(UsageError, match="pass the model to wrap"):
        fuse.build_model("iid_rdepth")
    with pytest.raises(UsageError, match="wraps a depth_anything_v2 or fuse"):
        fuse.build_model("iid_rdepth", base=fuse.build_model("event_student", encoder="vitt"))
    with pytest.raises(UsageError, match="diffusion_stepz"):
        fuse.build_model("iid_rdepth", base=_dav2(), diffusion_stepz=3)
    with pytest.raises(UsageError, match="diffusion steps must be between 0 and 500"):
        fuse.build_model("iid_rdepth", base=_dav2(), diffusion_steps=600)
    with pytest.raises(UsageError, match="no auxiliary view"):
        fuse.build_model("iid_rdepth", base=_dav2(), diffusion_steps=0)(image, aux=image)
