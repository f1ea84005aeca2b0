import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Training tests run on one thread: the same results, and no fight with a parallel job."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
