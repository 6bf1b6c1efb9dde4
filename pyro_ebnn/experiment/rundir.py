"""What a run directory holds, written atomically so that nothing is ever half-written:

  config.yaml      the resolved configuration
  checkpoint.pt    everything needed to resume (rewritten every epoch): network, optimizer, learning-rate
                   schedule, random states, validation history
  model.pt         the model selected on validation (its network, config, input shape, classes)
  metrics.json     the evaluation (flat keys) and the config; written last, so its presence means "finished"
  .lock            held by the process that trains into the directory (:func:`writing`), so that a second
                   command on the same directory stops with one line instead of overwriting the first
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Optional

import torch
import yaml

from ..errors import ConfigError, RunBusyError
from .build import build_evidence, build_model
from .config import AUTO, EVIDENCE_KEYS, EXECUTION_KEYS, Config, config_difference, saved_config

__all__ = ["CONFIG", "CHECKPOINT", "MODEL", "METRICS", "atomic_write", "resumable_state", "write_config", "save_model", "load_model",
           "write_metrics", "read_metrics", "prepare_run_dir", "writing"]

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"   # resumable training state (rewritten every epoch)
MODEL = "model.pt"             # the selected model (best validation score)
METRICS = "metrics.json"
LOCK = ".lock"


@contextlib.contextmanager
def writing(out: Path, claim: bool = True):
    """Hold ``out``'s lock while this process writes the run: an advisory ``flock`` on ``out/.lock``,
    which the operating system drops when the process ends, however it ends, so it never goes stale.
    A second process that claims the same directory meanwhile gets :class:`~pyro_ebnn.errors.RunBusyError`.
    ``claim=False`` (the non-writing processes of a ``torchrun`` group) holds nothing.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with writing(d):
    ...         with writing(d):
    ...             pass
    Traceback (most recent call last):
    ...
    pyro_ebnn.errors.RunBusyError: another process (pid ...) is writing ...; wait for it to finish or stop it (the run resumes from its last epoch), or choose another --out
    """
    if not claim:
        yield
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunBusyError(f"another process (pid {holder}) is writing {out}; wait for it to finish or stop it "
                               "(the run resumes from its last epoch), or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def atomic_write(path: Path, write):
    """``write(tmp)`` then rename over ``path``: readers see the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_config(out: Path, cfg: Config):
    atomic_write(Path(out) / CONFIG, lambda p: p.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False)))


def save_model(path: Path, model, cfg: Config, input_shape, num_classes, extra=None):
    """The network, the config and the shapes; ``lam``, the feedback weight it trained with (a number
    also when the config says ``lam: auto``; 0 for a feedback run that ``lam: auto`` trained without
    evidence); ``evidence_holes``, the holes its head saw (``evidence_holes: auto``'s choice)."""
    evidence = model.evidence
    lam = evidence.lam if evidence is not None else (0.0 if cfg.mode == "feedback" else None)
    payload = {"net": model.net.state_dict(), "config": cfg.to_dict(), "input_shape": tuple(input_shape),
               "num_classes": num_classes, "lam": lam, "evidence_holes": evidence.holes if evidence is not None else None,
               **(extra or {})}
    atomic_write(path, lambda p: torch.save(payload, p))


def load_model(path, device="cpu", cfg: Optional[Config] = None, lam=None):
    """Rebuild a saved model in a fresh process: (model, config, payload). ``cfg`` may change the mode
    and λ (fine-tuning) but not the keys that shape the network; ``lam`` defaults to the λ the model
    trained with where the config says ``lam: auto``."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.exists():
        raise ConfigError(f"no saved model at {path}; pass the --out directory of a finished train run")
    payload = torch.load(path, map_location=device, weights_only=False)
    saved = saved_config(payload["config"])
    cfg = cfg or Config(**saved)
    for key in ("architecture", "standardize", "normalize", "batch_norm"):  # the keys that shape the saved network
        if getattr(cfg, key) != saved[key]:
            raise ConfigError(f"the model in {path.parent} was trained with {key}: {saved[key]}, the config asks for "
                              f"{getattr(cfg, key)}; drop the override or use the run's own {CONFIG}")
    if lam is None and cfg.lam == AUTO and cfg.mode == "feedback":
        lam = payload.get("lam")
    model = build_model(cfg, payload["input_shape"], payload["num_classes"], lam=lam, initialize=False)
    if cfg.evidence_holes == AUTO and model.evidence is not None and payload.get("evidence_holes"):
        model.evidence = build_evidence(cfg, lam, holes=payload["evidence_holes"])   # the run's choice
    model.net.load_state_dict(payload["net"])
    model.net.to(device)
    return model, cfg, payload


def write_metrics(out: Path, metrics: dict):
    atomic_write(Path(out) / METRICS, lambda p: p.write_text(json.dumps(metrics, indent=2, default=float)))


def read_metrics(out: Path) -> dict:
    return json.loads((Path(out) / METRICS).read_text())


def resumable_state(out: Path, cfg: Config) -> Optional[dict]:
    """The checkpoint in ``out`` that a run of ``cfg`` resumes from (``None`` where there is none);
    a checkpoint of another config (``epochs``, ``finetune_epochs`` and :data:`EXECUTION_KEYS`
    aside, and for a run without feedback :data:`EVIDENCE_KEYS` too) is refused in one line."""
    ckpt = Path(out) / CHECKPOINT
    if not ckpt.exists():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if "optimizer" not in state:
        raise ConfigError(f"{ckpt} holds no optimizer state (another version of pyro-ebnn wrote it) and cannot be resumed; "
                          "pass --no-resume to start over or choose another --out")
    ignore = EXECUTION_KEYS + ("epochs", "finetune_epochs")
    if cfg.mode == "none" and state["config"].get("mode") == "none":  # the evidence's keys change nothing
        ignore += EVIDENCE_KEYS
    diff = config_difference(state["config"], cfg.to_dict(), ignore=ignore)
    if diff:
        raise ConfigError(f"{out} holds a run with a different config ({', '.join(diff)}); "
                          "choose another --out or pass --no-resume to start over")
    return state


def prepare_run_dir(out: Path, cfg: Config, resume: bool) -> Optional[dict]:
    """Make ``out`` ready for ``cfg``: the checkpoint to resume from (when ``resume`` and the run there
    has the same config, ``epochs``, ``finetune_epochs`` and :data:`EXECUTION_KEYS` aside, and for a run without
    feedback :data:`EVIDENCE_KEYS` too), or ``None`` after clearing what
    an earlier run left. A checkpoint of another config is refused in one line."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = resumable_state(out, cfg) if resume else None
    if state is not None:
        return state
    for name in (CHECKPOINT, MODEL, METRICS):
        (out / name).unlink(missing_ok=True)
    return None
