"""Speed of one training step of the Pyro model against a plain PyTorch step of the same LRT objective.

    python experiments/benchmark_step.py [--batch 128] [--threads 2] [--repeats 200] [--clock wall|cpu]
                                         [--device cpu|cuda] [--steps eager,graph,compile]

All are timed in the same run on real Decoy MNIST batches (LeNet, 1 particle), taking turns step
by step within each round:
  torch, torch+feedback   the hand-written objective (pyro_ebnn.bnn.objective.negative_elbo: the
                          straightforward LRT of [000]'s reference code) with torch's Adam;
  pyro, pyro+feedback     the step of ``train`` (Trainer.step: Pyro's differentiable_loss, torch's Adam,
                          fused where torch has it);
  pyro+feedback, weight sites
                          the same with ``FeedbackBNN(analytic_kl=False)``: weight sites in model and
                          guide, whose KL TraceMeanField_ELBO takes in closed form after drawing and
                          scoring every weight (what ``train`` ran before ``analytic_kl``);
  deterministic           the point LeNet of ``network: deterministic`` through the same Trainer.step;
  network without Pyro    the network code of the Pyro model (LRT moments, one sample, head,
                          closed-form KL, cross-entropy) called directly, with fused Adam: the
                          step less Pyro's traces and sites (no feedback).
``--steps`` adds the same steps run another way (pyro_ebnn.experiment.steps): ``graph`` (CUDA
only) replays the whole step captured as a CUDA graph: "pyro, graph", "pyro+feedback, graph" (the
Trainer with ``step: graph``) and "torch, graph" (the plain step with fused, capturable Adam under
the same capture); ``compile`` passes the Pyro loss through ``torch.compile`` ("pyro, compile",
"pyro+feedback, compile"; compiling takes a minute or more on the CPU, before the timing). On
CUDA the clock is read after ``torch.cuda.synchronize()``, so a step is timed until its kernels
have run. The JSON records the device's name (``setup.device``).
Reports the median ms/step over rounds and the ratios, each the median over rounds of the ratio
within a round: Pyro over plain PyTorch, feedback over none, and each Bayesian step over the
deterministic one (an LRT step runs two convolutions per layer and draws one Gaussian per
activation, so it cannot cost much less than two deterministic steps).
``--clock cpu`` times the process's CPU time instead of the wall clock: on a machine shared with
other work, at one thread, it leaves out the time the process waits for a core.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

import pyro
import torch

from pyro_ebnn.bnn import negative_elbo
from pyro_ebnn.data import load_dataset
from pyro_ebnn.experiment.build import build_model
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.steps import GraphedStep
from pyro_ebnn.experiment.training import Trainer


def cpu_name() -> str:
    """The processor's model name (steps differ by machine: record which one ran them)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--elbo", default="meanfield")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--steps", default="eager",
                    help="comma-separated: eager (always run), graph (CUDA), compile; e.g. eager,graph")
    args = ap.parse_args()
    steps = [k.strip() for k in args.steps.split(",") if k.strip()]
    if set(steps) - {"eager", "graph", "compile"} or ("graph" in steps and args.device != "cuda"):
        ap.error(f"--steps takes eager, graph (with --device cuda) and compile; got {args.steps!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible; use --device cpu")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config("configs/decoy_mnist_position.yaml", {"max_train_images": 4096, "elbo": args.elbo,
                                                            "batch_size": args.batch, "step": "eager"})
    trainval, _ = load_dataset(cfg)
    images, labels, masks = (t.to(device) for t in (trainval.images, trainval.labels, trainval.masks))
    n = 40000  # the size of a [000] training fold: sets the N/B scale only

    def batches():
        while True:
            perm = torch.randperm(len(images), device=device)
            for s in range(0, len(perm) - args.batch + 1, args.batch):
                i = perm[s:s + args.batch]
                yield images[i], labels[i], masks[i]

    def pyro_step(feedback, weight_sites=False, kind="eager"):
        cfg.mode, cfg.step = ("feedback" if feedback else "none"), kind
        model = build_model(cfg, (1, 28, 28), 10)
        if weight_sites:
            model.analytic_kl = False
        model.net.to(device)
        trainer = Trainer(copy.copy(cfg), model, 1e-3, device)  # the step of `train`
        cfg.step = "eager"

        def step(x, y, m):
            return trainer.step(x, y, m if feedback else None, n)
        step.trainer = trainer
        return step

    def deterministic_step():
        cfg.mode, cfg.network = "none", "deterministic"
        model = build_model(cfg, (1, 28, 28), 10)
        model.net.to(device)
        trainer = Trainer(cfg, model, 1e-3, device)
        cfg.network = "bayesian"

        def step(x, y, m):
            return trainer.step(x, y, None, n)
        return step

    def network_step():
        """The network code of the Pyro model (LRT moments, one sample, head, closed-form KL) called
        directly, without Pyro's traces: what Pyro's bookkeeping adds to the step."""
        cfg.mode = "none"
        model = build_model(cfg, (1, 28, 28), 10)
        net = model.net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)

        def step(x, y, m):
            opt.zero_grad(set_to_none=True)
            with model.for_torch_optimizer():
                mean, std = net.evidence_moments(x)
                logits = net.classify(torch.addcmul(mean, std, torch.randn_like(std)))
                loss = model.kl() + n / len(x) * torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            loss.backward()
            opt.step()
            return loss.item()
        return step

    def torch_step(feedback):
        cfg.mode = "none"
        net = build_model(cfg, (1, 28, 28), 10).net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step(x, y, m):
            opt.zero_grad()
            loss = negative_elbo(net, x, y, n, m if feedback else None, cfg.lam)
            loss.backward()
            opt.step()
            return loss.item()
        return step

    def torch_graph_step():
        """The plain step (fused, capturable Adam) captured whole as a CUDA graph, as ``step: graph`` does."""
        cfg.mode = "none"
        net = build_model(cfg, (1, 28, 28), 10).net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True, capturable=True)

        def whole(x, y):
            opt.zero_grad(set_to_none=True)
            loss = negative_elbo(net, x, y, n, None, cfg.lam)
            loss.backward()
            opt.step()
            return loss.detach()
        graphed = GraphedStep(whole, opt)

        def step(x, y, m):
            return graphed((x, y))
        return step

    variants = {"torch": torch_step(False), "pyro": pyro_step(False),
                "torch+feedback": torch_step(True), "pyro+feedback": pyro_step(True),
                "pyro+feedback, weight sites": pyro_step(True, weight_sites=True),
                "deterministic": deterministic_step(), "network without Pyro": network_step()}
    for kind in steps:
        if kind == "graph":
            variants["torch, graph"] = torch_graph_step()
        if kind != "eager":
            variants[f"pyro, {kind}"] = pyro_step(False, kind=kind)
            variants[f"pyro+feedback, {kind}"] = pyro_step(True, kind=kind)
    data = batches()
    wall = time.perf_counter if args.clock == "wall" else time.process_time
    if device.type == "cuda":
        def clock():
            torch.cuda.synchronize()
            return wall()
    else:
        clock = wall
    per_round = max(1, args.repeats // args.rounds)
    times = {k: [] for k in variants}
    for _ in range(10):  # warm-up
        for step in variants.values():
            step(*next(data))
    for _ in range(args.rounds):
        spent = dict.fromkeys(variants, 0.0)
        for _ in range(per_round):  # the variants take turns step by step: they share the load of the machine
            for name, step in variants.items():
                x, y, m = next(data)
                t0 = clock()
                step(x, y, m)
                spent[name] += clock() - t0
        for name in variants:
            times[name].append(spent[name] / per_round * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = cpu_name()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu

    def ratio(a, b):
        """Median over rounds of the ratio within a round (the variants of a round share the machine's load)."""
        return statistics.median(x / y for x, y in zip(times[a], times[b]))
    result = {
        "ms_per_step": med,
        "pyro_over_torch": ratio("pyro", "torch"),
        "pyro_over_torch_feedback": ratio("pyro+feedback", "torch+feedback"),
        "feedback_over_none_pyro": ratio("pyro+feedback", "pyro"),
        "feedback_over_none_torch": ratio("torch+feedback", "torch"),
        "weight_sites_over_analytic_kl": ratio("pyro+feedback, weight sites", "pyro+feedback"),
        "pyro_over_network_without_pyro": ratio("pyro", "network without Pyro"),
        "over_deterministic": {k: ratio(k, "deterministic") for k in med if k != "deterministic"},
        "rounds_ms": times,
        "setup": {"batch": args.batch, "threads": args.threads, "elbo": args.elbo, "rounds": args.rounds,
                  "steps_per_round": per_round, "clock": args.clock, "cpu": cpu, "torch": torch.__version__,
                  "pyro": pyro.__version__, "device": device_name, "device_type": device.type, "steps": steps},
        # how each Pyro variant stepped in the end (eager after a capture or compilation that failed)
        "step_kind": {k: v.trainer.step_kind for k, v in variants.items() if hasattr(v, "trainer")},
    }
    for kind in steps:
        if kind == "eager":
            continue
        result[f"{kind}_over_eager"] = {v: ratio(f"{v}, {kind}", v) for v in ("pyro", "pyro+feedback", "torch")
                                        if f"{v}, {kind}" in times}
        result[f"pyro_{kind}_over_torch"] = ratio(f"pyro, {kind}", "torch")
        if f"torch, {kind}" in times:
            result[f"pyro_{kind}_over_torch_{kind}"] = ratio(f"pyro, {kind}", f"torch, {kind}")
    print(f"ms/step (median of {args.rounds} rounds x {per_round} steps, batch {args.batch}, {args.threads} threads, "
          f"{args.elbo} ELBO, {args.clock} clock, {device_name}):")
    for k, v in med.items():
        print(f"  {k:28s} {v:7.2f}")
    print("ratios (median over rounds of the ratio within a round):")
    print(f"Pyro / PyTorch (no feedback):  {result['pyro_over_torch']:.3f}")
    print(f"Pyro / PyTorch (feedback):     {result['pyro_over_torch_feedback']:.3f}")
    print(f"feedback / none (Pyro):        {result['feedback_over_none_pyro']:.3f}")
    print(f"feedback / none (PyTorch):     {result['feedback_over_none_torch']:.3f}")
    print(f"weight sites / analytic KL:    {result['weight_sites_over_analytic_kl']:.3f}")
    print(f"Pyro / its network without Pyro: {result['pyro_over_network_without_pyro']:.3f}")
    over = result["over_deterministic"]
    print("over the deterministic LeNet:  " + ", ".join(f"{k} {v:.2f}" for k, v in over.items()))
    for kind in steps:
        if kind != "eager":
            print(f"{kind} / eager:  " + ", ".join(f"{k} {v:.3f}" for k, v in result[f"{kind}_over_eager"].items()))
            print(f"Pyro, {kind} / PyTorch eager:  {result[f'pyro_{kind}_over_torch']:.3f}")
            if f"pyro_{kind}_over_torch_{kind}" in result:
                print(f"Pyro, {kind} / PyTorch, {kind}:  {result[f'pyro_{kind}_over_torch_{kind}']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
