import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_num_threads(2)
    yield
    pyro.clear_param_store()
