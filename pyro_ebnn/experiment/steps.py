"""How a training step runs (the config key ``step``): eagerly, captured once as a CUDA graph and
replayed, or with its loss through ``torch.compile``.

An eager step is Python: Pyro traces the guide and the model, builds their sites and sums the
ELBO, torch launches one kernel per operation, and Pyro reads the loss back to the host three
times (``torch_item`` twice, ``warn_if_nan`` once). On a GPU a LeNet step at batch 128 is then
pure launch and Python overhead (9.6 ms for Pyro's step, 8.8 ms for the plain PyTorch step, on
one H200). ``step: graph`` runs that Python once, under CUDA graph capture, and afterwards replays
the recorded kernels: Pyro's loss (``elbo.differentiable_loss``), the backward pass and the fused
Adam step, with the batch copied into static input buffers first. What has to happen in Python
every step, and how it is handled:

* Pyro's host reads (:func:`sync_free`): inside the captured step ``torch_item`` returns the
  tensor detached and ``warn_if_nan`` returns its input, so the loss stays on the device (the
  same value and the same gradient); the training loop reads it once the next step is launched
  and stops on a non-finite loss as before.
* The LRT noise (``torch.randn``) and dropout: PyTorch's CUDA generator is graph-safe: a captured
  draw reads its Philox seed and offset from device memory that every replay refreshes, and each
  replay advances the generator's offset by what the step consumed. Replays therefore draw fresh
  noise, the same draws an eager step would take from the same generator state, and the random
  state saved in ``checkpoint.pt`` stays exact.
* The data plate's subsample indices (``arange`` of the batch), its scale N / B and the loss's
  constants are the same every full batch; the graph is keyed on the shapes of the inputs, the
  training-set size, whether there are masks, and the learning rates, and is captured again when
  any of them changes (the learning-rate decay: once per epoch; Adam's ``step`` count lives on the
  device, ``capturable=True``). The last, partial batch of an epoch runs eagerly.
* The feedback evidence reads the marked cells by ``nonzero`` on the CPU; on a GPU it takes the
  density of every cell and keeps the marked ones (:class:`~pyro_ebnn.bnn.evidence.MaskedNormal`),
  which needs no host read.
* Adam's state is made in the first steps: the first :data:`WARMUP_STEPS` steps run eagerly on
  the capture's side stream, as CUDA graphs want.

Where capture is not possible (a process of a ``torchrun`` group, a loss that reads a value back
to the host, ...), the run steps eagerly and says why on one line of stderr. Tests compare the
loss, the gradients and the updated weights of the captured and the eager step on the same
inputs from the same random state (``tests/test_steps.py``; they need a CUDA device).

``step: compile`` passes the loss through ``torch.compile`` (full batches; the backward pass and
Adam as they are). On the CPU it is slower than eager for LeNet: Pyro's messengers break the
graph into pieces (Dynamo cannot trace Pyro's ``Message`` TypedDict), and the guide's hand-off
key and Pyro's ``log_prob`` are recompiled every step until Dynamo's recompile limit. LeNet,
batch 128, after about a minute of compiling (``experiments/benchmark_step.py --steps
eager,compile``, 2-core AMD EPYC, torch 2.14): at 1 thread (process CPU time) 100.3 against 26.4
ms per step without feedback (3.8 times) and 101.8 against 28.2 ms with it (3.6 times); at 2
threads, wall clock on the machine shared with other work, 1.35 and 1.54 times. So ``auto``
stays eager on the CPU.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import pyro.infer.trace_elbo as _trace_elbo
import pyro.infer.trace_mean_field_elbo as _mean_field_elbo
import torch

from ..errors import ConfigError
from .config import STEPS

__all__ = ["WARMUP_STEPS", "CaptureError", "resolve_step", "sync_free", "GraphedStep", "CompiledStep"]

#: eager steps before the first capture (they make Adam's state and warm cuBLAS / cuDNN)
WARMUP_STEPS = 3

#: Pyro's host reads of the loss, by module: replaced inside :func:`sync_free`
_HOST_READS = ((_trace_elbo, "torch_item"), (_trace_elbo, "warn_if_nan"),
               (_mean_field_elbo, "torch_item"), (_mean_field_elbo, "warn_if_nan"))


class CaptureError(RuntimeError):
    """The step could not be captured or compiled; the message says why."""


def resolve_step(step: str, device, distributed: bool = False) -> tuple[str, Optional[str]]:
    """``(how the steps run, why not as asked)``: ``auto`` -> graph on a CUDA device, eager on the
    CPU; ``graph`` on the CPU is a :class:`~pyro_ebnn.errors.ConfigError` naming the fix; graph in
    a process of a ``torchrun`` group (whose gradients are averaged between backward and Adam) ->
    eager, with the reason.

    >>> resolve_step("auto", torch.device("cpu"))
    ('eager', None)
    """
    if step not in STEPS:
        raise ConfigError(f"config key 'step': use {', '.join(STEPS)}, got {step!r}")
    cuda = torch.device(device).type == "cuda"
    if step == "graph" and not cuda:
        raise ConfigError(f"config key 'step': graph captures CUDA graphs and this run's device is "
                          f"{torch.device(device).type}; use --set step=auto or eager (or compile), or --device cuda")
    kind = ("graph" if cuda else "eager") if step == "auto" else step
    if kind == "graph" and distributed:
        return "eager", ("the processes of a torchrun group average their gradients between the backward pass "
                         "and Adam, outside a graph")
    return kind, None


def _detached(x):
    return x.detach() if torch.is_tensor(x) else x


def _unchecked(value, *args, **kwargs):
    return value


@contextlib.contextmanager
def sync_free():
    """Inside the block Pyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` leave their loss on the
    device: ``torch_item`` returns the tensor detached instead of its value on the host, and
    ``warn_if_nan`` (a NaN check read on the host, and a hook that checks the gradient) returns
    its input. ``differentiable_loss`` then returns the same value with the same gradient without
    reading anything back: what a CUDA graph can hold (a capture fails on any host read) and what
    does not stall a GPU. Not thread-safe: it replaces the two modules' functions while it is open.
    """
    saved = [(module, name, getattr(module, name)) for module, name in _HOST_READS if hasattr(module, name)]
    for module, name, _ in saved:
        setattr(module, name, _detached if name == "torch_item" else _unchecked)
    try:
        yield
    finally:
        for module, name, function in saved:
            setattr(module, name, function)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


class GraphedStep:
    """A whole training step captured once as a CUDA graph and replayed on every later batch.

    ``step(*inputs, *constants)`` runs one full step (zero the gradients, loss, backward, optimizer
    step) and returns a tensor to record (the loss), reading nothing back to the host; ``inputs``
    are tensors (or None), copied into static buffers before each replay; ``constants`` are
    numbers baked into the graph. The graph is captured again when the inputs' shapes, the
    constants or the optimizer's learning rates change. The first ``warmup`` calls run the step
    eagerly on the capture stream. ``optimizer`` must be ``capturable`` (Adam's step count on the
    device). A call returns the recorded tensor (a copy: the next replay overwrites the graph's
    own); a capture that fails raises :class:`CaptureError` and leaves no gradient behind.
    """

    def __init__(self, step: Callable, optimizer: torch.optim.Optimizer, warmup: int = WARMUP_STEPS):
        self.step, self.optimizer, self.warmup = step, optimizer, warmup
        self.stream = torch.cuda.Stream()
        self.graph = self.inputs = self.output = self.key = None
        self.eager_steps = self.captures = 0

    def _key(self, inputs: Sequence, constants: Sequence) -> tuple:
        shapes = tuple(None if t is None else (tuple(t.shape), t.dtype, t.device) for t in inputs)
        return shapes, tuple(constants), tuple(float(g["lr"]) for g in self.optimizer.param_groups)

    def __call__(self, inputs: Sequence, constants: Sequence = ()) -> torch.Tensor:
        if self.eager_steps < self.warmup:
            self.eager_steps += 1
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out = self.step(*inputs, *constants)
            torch.cuda.current_stream().wait_stream(self.stream)
            torch.cuda.synchronize()  # what the side stream allocated is free for the main stream again
            return out
        key = self._key(inputs, constants)
        if key != self.key:
            self._capture(inputs, constants, key)
        for static, t in zip(self.inputs, inputs):
            if static is not None:
                static.copy_(t)
        self.graph.replay()
        return self.output.clone()

    def _capture(self, inputs: Sequence, constants: Sequence, key: tuple):
        self.release()
        self.inputs = tuple(None if t is None else t.clone() for t in inputs)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                output = self.step(*self.inputs, *constants)
        except Exception as e:  # noqa: BLE001 - any failure of capture means: step eagerly
            graph = None  # its memory goes back to the pool
            self.release()
            raise CaptureError(_first_line(e)) from e
        self.graph, self.output, self.key = graph, output, key
        self.captures += 1

    def release(self):
        """Drop the graph, its outputs and the gradients it holds (its memory goes back to the pool)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = self.output = self.key = None


class CompiledStep:
    """A training step whose loss goes through ``torch.compile``: ``make_step(loss)`` builds the
    whole step (as :class:`GraphedStep` takes it) around the compiled ``loss`` (static shapes: one
    compilation per batch shape). A failure of the first call, where compilation happens (the
    loss's forward and backward), raises :class:`CaptureError`."""

    def __init__(self, make_step: Callable, loss: Callable):
        self.step = make_step(torch.compile(loss, dynamic=False))
        self.calls = 0

    def __call__(self, inputs: Sequence, constants: Sequence = ()) -> torch.Tensor:
        try:
            out = self.step(*inputs, *constants)
        except Exception as e:  # noqa: BLE001 - a failure to compile means: step eagerly
            if self.calls:
                raise
            raise CaptureError(_first_line(e)) from e
        self.calls += 1
        return out
