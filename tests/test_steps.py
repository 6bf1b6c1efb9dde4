"""How a training step runs (pyro_ebnn.experiment.steps): the step without host reads is the same
objective as Pyro's own; the captured CUDA graph step gives the eager step's loss, gradients,
weights and random state on the same inputs (CUDA only); a step that cannot be captured or
compiled steps eagerly and says why on one line; the training loop reads device losses one step
late and still stops at the step whose loss is not finite; ``--jobs auto`` and ``step`` refuse bad
input with the fix."""
import copy
import dataclasses
import math

import pytest
import torch
from click.testing import CliRunner

from pyro_ebnn.bnn.evidence import MaskedNormal
from pyro_ebnn.cli import cli
from pyro_ebnn.data import ImageSet, Split
from pyro_ebnn.errors import ConfigError, TrainingError
from pyro_ebnn.experiment import compare, steps
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.steps import WARMUP_STEPS, resolve_step
from pyro_ebnn.experiment.training import Trainer, device_loss, training_loss

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="CUDA graph capture needs a CUDA device and none is visible")


def _model(mode="feedback", device="cpu", **keys):
    cfg = load_config(None, {"mode": mode, "lam": 1e-3, "batch_size": 16, **keys})
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28), 10)
    model.net.to(device)
    return cfg, model


def _batch(g, n=16, device="cpu"):
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    m = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
    m[:, :, :7, :7] = torch.rand(n, 1, 1, 1, generator=g) < 0.7   # a corner marked on most images
    return x.to(device), y.to(device), m.to(device)


class _NoHostReads:
    """Inside the block, reading a tensor's value on the host (item, bool, float, int) raises: what
    a CUDA graph capture cannot hold, checked on the CPU."""

    NAMES = ("item", "__bool__", "__float__", "__int__", "tolist")

    def __enter__(self):
        self.saved = {name: getattr(torch.Tensor, name) for name in self.NAMES}

        def refuse(name):
            def read(*args, **kwargs):
                raise AssertionError(f"a host read (Tensor.{name}) inside the step")
            return read
        for name in self.NAMES:
            setattr(torch.Tensor, name, refuse(name))

    def __exit__(self, *exc):
        for name, f in self.saved.items():
            setattr(torch.Tensor, name, f)


@pytest.mark.parametrize("mode", ["none", "feedback"])
def test_the_step_without_host_reads_is_pyros_loss_and_gradient(mode):
    cfg, model = _model(mode)
    x, y, m = _batch(torch.Generator().manual_seed(1))
    mask = m if mode == "feedback" else None
    params = list(model.net.parameters())
    torch.manual_seed(5)
    loss, value = training_loss(cfg, model)(x, y, mask, 1000)
    grads = torch.autograd.grad(loss, params)
    torch.manual_seed(5)
    with _NoHostReads():
        quiet, record = device_loss(cfg, model)(x, y, mask, 1000)
        quiet_grads = torch.autograd.grad(quiet, params)
    assert float(record) == pytest.approx(value, rel=1e-6) and float(quiet.detach()) == pytest.approx(value, rel=1e-6)
    for a, b in zip(grads, quiet_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max()))
    # Pyro's own host reads are back after the block
    assert steps._trace_elbo.torch_item(torch.tensor(2.0)) == 2.0


def test_the_dense_evidence_is_the_evidence_of_the_marked_cells():
    g = torch.Generator().manual_seed(2)
    loc = torch.randn(4, 3, 5, 5, generator=g).requires_grad_()
    scale = (torch.rand(4, 3, 5, 5, generator=g) + 0.1).requires_grad_()
    cells = torch.rand(4, 1, 5, 5, generator=g) < 0.3
    d = MaskedNormal(loc, scale, cells.expand(4, 3, 5, 5))
    zeros = loc.new_zeros(()).expand(loc.shape)
    sparse, dense = d.log_prob(zeros), d.dense_log_prob(zeros)        # on the CPU log_prob is the sparse one
    assert torch.allclose(sparse, dense, atol=1e-5)
    for a, b in zip(torch.autograd.grad(sparse.sum(), (loc, scale)), torch.autograd.grad(dense.sum(), (loc, scale))):
        assert torch.allclose(a, b, atol=1e-6)
    assert float(dense[0].detach()) != 0 or not bool(cells[0].any())


def test_step_graph_on_the_cpu_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="use step: auto or eager"):
        load_config(None, {"step": "graph", "device": "cpu"})
    with pytest.raises(ConfigError, match="use auto, eager, graph, compile"):
        load_config(None, {"step": "cuda-graph"})
    with pytest.raises(ConfigError, match=r"--set step=auto or eager"):
        resolve_step("graph", torch.device("cpu"))
    assert resolve_step("auto", "cpu") == ("eager", None)
    kind, why = resolve_step("graph", "cuda", distributed=True)
    assert kind == "eager" and "torchrun" in why


def test_a_compilation_that_fails_steps_eagerly_and_says_why_once(monkeypatch, capsys):
    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no compiler here\nsecond line")
        return compiled
    monkeypatch.setattr(steps.torch, "compile", broken_compile)
    cfg, model = _model("feedback", step="compile")
    reference = copy.deepcopy(model)
    trainer = Trainer(cfg, model, cfg.lr, torch.device("cpu"))
    eager = Trainer(dataclasses.replace(cfg, step="eager"), reference, cfg.lr, torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    for k in range(3):
        x, y, m = _batch(g)
        torch.manual_seed(k)
        a = trainer.step(x, y, m, 1000)
        torch.manual_seed(k)
        b = eager.step(x, y, m, 1000)
        assert a == b                       # a float, and the eager step's
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["step: compile: torch.compile failed (RuntimeError: no compiler here); training steps eagerly"]
    assert trainer.step_kind == "eager"
    for p, q in zip(model.net.parameters(), reference.net.parameters()):
        assert torch.equal(p, q)


def _split(n_train=40, n_test=8):
    g = torch.Generator().manual_seed(4)
    x, y, m = _batch(g, n_train)
    tx, ty, tm = _batch(g, n_test)
    return Split(ImageSet(x, y, m, 10), None, ImageSet(tx, ty, tm, 10))


@pytest.mark.parametrize("bad_step", [None, 1])
def test_the_loop_reads_device_losses_a_step_late_and_stops_where_one_is_not_finite(tmp_path, bad_step):
    cfg, model = _model("none", epochs=2)
    trainer = Trainer(cfg, model, cfg.lr, torch.device("cpu"))
    seen = []

    def on_the_device(inputs, constants):
        """A fake step whose loss stays a tensor (as a replayed graph's does): 1, 2, 3, ... or NaN."""
        seen.append(len(inputs[0]))
        value = math.nan if len(seen) - 1 == bad_step else float(len(seen))
        return torch.tensor(value)
    trainer._fast = on_the_device
    params = list(model.net.parameters())
    trainer.loss = lambda x, y, mask, n: (sum(p.sum() for p in params) * 0, 100.0)   # the eager step: 100
    if bad_step is None:
        trainer.fit(_split(), 2, tmp_path, use_masks=False, progress=False)
        # 40 images: two full batches "replayed" and the partial one (8 images) eager, per epoch
        assert seen == [16, 16, 16, 16]
        assert [h["loss"] * 40 for h in trainer.history] == pytest.approx([1 + 2 + 100, 3 + 4 + 100])
    else:
        with pytest.raises(TrainingError, match=f"the loss became nan at epoch 1, step {bad_step + 1};"):
            trainer.fit(_split(), 2, tmp_path, use_masks=False, progress=False)


def test_a_resumed_run_steps_as_it_is_configured_now():
    cfg, model = _model("none")
    trainer = Trainer(cfg, model, cfg.lr, torch.device("cpu"))
    state = trainer.state()
    state["optimizer"]["param_groups"][0]["capturable"] = True      # written by a run that stepped by a graph
    again = Trainer(cfg, copy.deepcopy(model), cfg.lr, torch.device("cpu"))
    again.load_state(state)
    assert [g["capturable"] for g in again.optimizer.param_groups] == [False]


def test_jobs_auto_on_a_gpu_takes_the_least_of_runs_cores_and_memory(monkeypatch):
    cfgs = [load_config(None, {"device": "cuda", "fold": f % 3}) for f in range(6)]
    pending = [(cfg, None, str(k)) for k, cfg in enumerate(cfgs)]
    monkeypatch.setattr(compare, "resolve_device", lambda name: torch.device(name))
    monkeypatch.setattr(compare.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(compare, "gpu_free_mib", lambda device: 10 * 1024)       # 10 GiB: 5 LeNet runs
    said = []
    assert compare.auto_jobs(pending, cpu_jobs=2, echo=said.append) == 5
    assert "5 run(s) at a time on cuda" in said[0] and "10 GiB free / 2 GiB per run" in said[0]
    monkeypatch.setattr(compare, "gpu_free_mib", lambda device: 500 * 1024)
    assert compare.auto_jobs(pending, echo=said.append) == 6                       # the runs
    monkeypatch.setattr(compare.os, "cpu_count", lambda: 6)
    assert compare.auto_jobs(pending, echo=said.append) == 3                       # cores // 2
    monkeypatch.setattr(compare, "gpu_free_mib", lambda device: 1024)
    assert compare.auto_jobs(pending, echo=said.append) == 1                       # at least one
    on_cpu = [(load_config(None, {"device": "cpu"}), None, "a")] * 4
    assert compare.auto_jobs(on_cpu, cpu_jobs=2, echo=said.append) == 2            # the CPU's own rule


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_jobs_value_names_the_fix(value, tmp_path):
    res = CliRunner().invoke(cli, ["grid", "--config", "configs/custom_npz.yaml", "--jobs", value, "--out", str(tmp_path)])
    assert res.exit_code == 2 and "use a positive number (e.g. --jobs 2) or --jobs auto" in res.output


# -- on a CUDA device ------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("mode", ["none", "feedback"])
def test_the_captured_step_is_the_eager_step(mode, monkeypatch):
    """The same inputs and random state through the eager step and the graph: the same loss,
    gradients, weights after Adam and random state; after the learning rate changes, the graph is
    captured again and still agrees. (A wrong or stale learning rate, a missing Adam step or other
    noise would move the weights by about the learning rate, 1e-3: far beyond the tolerance.)"""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # the same kernels' sums in both
    dev = torch.device("cuda")
    cfg, model = _model(mode, device=dev, lr_decay=0.5)
    reference = copy.deepcopy(model)
    graph = Trainer(dataclasses.replace(cfg, step="graph"), model, cfg.lr, dev)
    eager = Trainer(dataclasses.replace(cfg, step="eager"), reference, cfg.lr, dev)
    g = torch.Generator().manual_seed(6)
    for k in range(WARMUP_STEPS + 4):
        if k == WARMUP_STEPS + 2:
            graph.schedule.step()
            eager.schedule.step()
        x, y, m = _batch(g, device=dev)
        m = m if mode == "feedback" else None
        torch.cuda.manual_seed(100 + k)
        a = eager.step(x, y, m, 1000)
        after_eager = torch.cuda.get_rng_state()
        torch.cuda.manual_seed(100 + k)
        b = graph.step(x, y, m, 1000)
        torch.cuda.synchronize()
        assert torch.equal(torch.cuda.get_rng_state(), after_eager), f"step {k}: the graph drew other noise"
        assert float(b) == pytest.approx(a, rel=1e-5), f"step {k}"
        for p, q in zip(model.net.parameters(), reference.net.parameters()):
            assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5 * float(q.grad.abs().max())), f"step {k}"
            assert torch.allclose(p, q, rtol=0, atol=2e-4), f"step {k}"
    assert graph.step_kind == "graph" and graph._fast.captures == 2


@needs_cuda
def test_a_step_that_cannot_be_captured_steps_eagerly_and_says_why(capsys):
    dev = torch.device("cuda")
    cfg, model = _model("none", device=dev, step="graph")
    trainer = Trainer(cfg, model, cfg.lr, dev)
    whole = trainer._fast.step

    def reads_back(*args):
        record = whole(*args)
        float(record)               # a host read: a capture cannot hold it
        return record
    trainer._fast.step = reads_back
    g = torch.Generator().manual_seed(7)
    values = [trainer.step(*_batch(g, device=dev), 1000) for _ in range(WARMUP_STEPS + 2)]
    assert trainer.step_kind == "eager" and trainer._fast is None
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("step: graph: the CUDA graph capture failed (")
    assert err[0].endswith("; training steps eagerly")
    assert all(math.isfinite(float(v)) for v in values) and isinstance(values[-1], float)


@needs_cuda
def test_a_run_trained_by_the_graph_is_the_eager_run(tmp_path, capsys, monkeypatch):
    """train() end to end on a small set with partial batches and a learning-rate decay per epoch:
    the graph run's epoch losses are the eager run's, and nothing fell back."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    from test_inputs import _write_npz
    from pyro_ebnn.experiment.runs import train
    _write_npz(tmp_path / "d.npz")
    histories = {}
    for step in ("eager", "graph"):
        cfg = load_config("configs/custom_npz.yaml", {"npz_path": str(tmp_path / "d.npz"), "eval_samples": 2,
                                                      "batch_size": 8, "epochs": 3, "lam": 1e-3, "device": "cuda",
                                                      "step": step})
        train(cfg, tmp_path / step, progress=False)
        history = torch.load(tmp_path / step / "checkpoint.pt", weights_only=False)["history"]
        histories[step] = [h["loss"] for h in history]
    assert "training steps eagerly" not in capsys.readouterr().err
    assert histories["graph"] == pytest.approx(histories["eager"], rel=1e-4)
