"""Side-by-side execution of independent model parts (fuse.layers.parallel) and the token-layout
FreDFuse convolutions: same results as the plain sequential / NCHW computation."""
import threading

import pytest
import torch

import fuse
from fuse.methods.fuse.fredfuse import FusionConv
from fuse.layers.parallel import run_side_by_side

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_results_in_order_on_separate_threads(two_threads):
    names = run_side_by_side([lambda i=i: (i, threading.current_thread().name) for i in range(5)], CPU)
    assert [i for i, _ in names] == list(range(5))
    assert all(name.startswith("fuse-worker-") for _, name in names)
    assert len({name for _, name in names}) == 2  # five tasks shared by two threads
    assert torch.get_num_threads() == 2


def test_thread_modes_are_carried_into_the_workers(two_threads):
    def modes():
        return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu"), \
            torch.get_autocast_dtype("cpu"), torch.get_num_threads()

    with torch.no_grad():
        assert run_side_by_side([modes, modes], CPU) == [(False, False, False, torch.bfloat16, 1)] * 2
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert run_side_by_side([modes, modes], CPU)[0][1:4] == (True, True, torch.bfloat16)
    assert run_side_by_side([modes, modes], CPU)[0][0] is True


def test_errors_reach_the_caller(two_threads):
    def fail():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run_side_by_side([lambda: 1, fail], CPU)
    assert torch.get_num_threads() == 2


def test_one_thread_runs_in_the_calling_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_side_by_side([threading.current_thread, threading.current_thread], CPU) == [threading.main_thread()] * 2
    finally:
        torch.set_num_threads(before)


def test_fuse_side_by_side_equals_sequential_with_gradients(two_threads):
    torch.manual_seed(0)
    model = fuse.build_model("fuse", encoder="vitt").eval()
    image, events = torch.randn(2, 3, 70, 56), torch.randn(2, 3, 70, 56, requires_grad=True)
    parallel = model(image, events)
    parallel.sum().backward()
    grad_parallel = events.grad.clone()
    events.grad = None
    torch.set_num_threads(1)
    sequential = model(image, events)
    sequential.sum().backward()
    assert torch.allclose(parallel, sequential, rtol=1e-5, atol=1e-6)
    assert float((grad_parallel - events.grad).norm() / events.grad.norm()) < 1e-4


def test_fusion_conv_token_layout_equals_nchw_modules():
    torch.manual_seed(0)
    conv = FusionConv(64)
    for param in conv.parameters():
        torch.nn.init.normal_(param)
    x = torch.randn(2, 5, 7, 128, requires_grad=True)
    ours = conv.forward_channels_last(x)
    nchw = conv(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
    assert ours.shape == (2, 5, 7, 64)
    assert torch.allclose(ours, nchw, rtol=1e-5, atol=1e-4)
    grad_ours = torch.autograd.grad(ours.square().sum(), conv[0].weight)[0]
    grad_nchw = torch.autograd.grad(nchw.square().sum(), conv[0].weight)[0]
    assert torch.allclose(grad_ours, grad_nchw, rtol=1e-4, atol=1e-3)
