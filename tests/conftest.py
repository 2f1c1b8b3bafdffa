import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module runs: the models of these tests are small, and on a shared
    2-core machine the second thread's waits cost far more than it gains (measured 3.2 s against
    0.08 s per small FCFRNet forward; the vitt and DERD-Net models about 2x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
