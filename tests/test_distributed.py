"""Data-parallel training with torch.distributed (gloo, 2 processes on this CPU): the averaged
gradient is the gradient of the union batch, and a 2-process run trains one model, writes one
metrics.json, and resumes exactly after a kill."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import pyro.distributions as pdist

from pyro_ebnn.bnn import model as model_module
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.distributed import Group
from pyro_ebnn.experiment.training import Trainer

from test_inputs import _write_npz

N = 40000  # the training-set size the data plate is scaled by


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_noise():
    """The objective without its Monte Carlo noise: LRT layers at their means (eval mode) and the
    last-conv site a point mass at its mean, so that gradients can be compared exactly (in double
    precision); the KL, the likelihood and the evidence term stay as they are."""
    torch.set_default_dtype(torch.float64)
    model_module.preactivation_distribution = lambda mean, std: pdist.Delta(mean, event_dim=3).mask(False)


def _model_and_batch():
    _without_noise()
    cfg = load_config(None, {"mode": "feedback", "lam": 1e-3})
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28), 10)
    model.net.eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    mask = torch.zeros(16, 1, 28, 28, dtype=torch.bool)
    mask[::2, :, :4, :4] = True
    return cfg, model, (x, y, mask)


def _gradient(trainer, x, y, mask):
    trainer.optimizer.zero_grad()
    loss, _ = trainer.loss(x, y, mask, N)
    loss.backward()
    trainer.group.average_gradients(trainer.model.net.parameters())
    return [p.grad.clone() for p in trainer.model.net.parameters()]


def _rank(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    cfg, model, (x, y, mask) = _model_and_batch()
    half = slice(8 * rank, 8 * rank + 8)
    grads = _gradient(Trainer(cfg, model, 1e-3, torch.device("cpu"), Group(rank, 2)), x[half], y[half], mask[half])
    if rank == 0:
        torch.save(grads, out)
    dist.barrier()  # neither process closes the group while the other may still be using it
    dist.destroy_process_group()


@pytest.fixture
def float64():
    distribution = model_module.preactivation_distribution
    yield
    torch.set_default_dtype(torch.float32)
    model_module.preactivation_distribution = distribution


def test_the_averaged_gradient_is_the_gradient_of_the_union_batch(tmp_path, float64):
    out = tmp_path / "grads.pt"
    mp.spawn(_rank, args=(_free_port(), str(out)), nprocs=2, join=True)
    averaged = torch.load(out)
    cfg, model, (x, y, mask) = _model_and_batch()
    union = _gradient(Trainer(cfg, model, 1e-3, torch.device("cpu")), x, y, mask)
    assert len(averaged) == len(union) == 20
    for a, u in zip(averaged, union):
        torch.testing.assert_close(a, u, rtol=1e-9, atol=1e-9)
    # and not by accident: one process's own gradient differs from the union's
    cfg, model, _ = _model_and_batch()
    own = _gradient(Trainer(cfg, model, 1e-3, torch.device("cpu")), x[:8], y[:8], mask[:8])
    assert not all(torch.allclose(o, u, rtol=1e-3) for o, u in zip(own, union))
    assert any(u.abs().max() > 0 for u in union)


def _torchrun(npz, out, epochs=4, lam="1e-4"):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pyro_ebnn.run", "train", "--config", "configs/custom_npz.yaml", "--out", str(out),
           "--set", f"npz_path={npz}", "--set", f"epochs={epochs}", "--set", f"lam={lam}", "--set", "batch_size=8", "--set", "threads=1",
           "--set", "eval_samples=2", "--set", "workers=0"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _kill_every_process_of(out):
    """SIGKILL torchrun and its workers (they run in sessions of their own): every process whose
    command line names the run directory ``out``."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(out).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@pytest.mark.slow
def test_two_processes_train_one_model_write_one_metrics_json_and_resume_after_a_kill(tmp_path):
    rng = np.random.default_rng(0)  # 1800 images, 1200 to train on: an epoch takes long enough to be interrupted
    _write_npz(tmp_path / "d.npz", train_images=rng.random((1800, 1, 28, 28), dtype=np.float32),
               train_labels=rng.integers(0, 3, 1800), train_masks=(rng.random((1800, 1, 28, 28)) < 0.1).astype(np.uint8))
    npz = tmp_path / "d.npz"
    whole = _torchrun(npz, tmp_path / "whole", epochs=3)
    output = whole.communicate(timeout=600)[0]
    assert whole.returncode == 0, output
    assert output.count("fold 0:") == 1                       # one process reports
    m = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["epochs_run"] == 3 and m["n_train"] == 1200
    # killed once the first epoch's checkpoint is there, then run again: the same model
    run = _torchrun(npz, tmp_path / "killed", epochs=3)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    _kill_every_process_of(tmp_path / "killed")
    run.communicate()
    time.sleep(1)
    assert ckpt.exists() and not (tmp_path / "killed" / "metrics.json").exists()
    again = _torchrun(npz, tmp_path / "killed", epochs=3)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    resumed = torch.load(ckpt, weights_only=False)
    assert resumed["world_size"] == 2 and len(resumed["rng"]) == 2 and resumed["epoch"] == 3
    reference = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    for k, v in reference["net"].items():
        assert torch.equal(v, resumed["net"][k]), k
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["balanced_accuracy"] == m["balanced_accuracy"]


@pytest.mark.slow
def test_two_processes_choose_lambda_together_and_process_0_writes_the_search(tmp_path):
    rng = np.random.default_rng(1)
    _write_npz(tmp_path / "d.npz", train_images=rng.random((300, 1, 28, 28), dtype=np.float32),
               train_labels=rng.integers(0, 3, 300), train_masks=(rng.random((300, 1, 28, 28)) < 0.1).astype(np.uint8))
    run = _torchrun(tmp_path / "d.npz", tmp_path / "auto", epochs=2, lam="auto")
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output
    assert output.count("lam: auto chose ") == 1              # one process reports (a lambda, or no feedback)
    m = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["lam"] == m["lam_search"]["lam"] and m["lam_search"]["epochs"] == [1, 2]
    assert not (tmp_path / "auto" / "lam_search").exists()     # the candidates' runs are cleaned up
