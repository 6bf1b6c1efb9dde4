"""What a run directory holds, written atomically so that nothing is ever half-written:

  config.yaml      the resolved configuration
  checkpoint.pt    everything needed to resume (rewritten every epoch): network, optimizer, learning-rate
                   schedule, random states, validation history
  model.pt         the model selected on validation (its network, config, input shape, classes)
  metrics.json     the evaluation (flat keys) and the config; written last, so its presence means "finished"
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
import yaml

from ..errors import ConfigError
from .build import build_model
from .config import EXECUTION_KEYS, Config, config_difference, saved_config

__all__ = ["CONFIG", "CHECKPOINT", "MODEL", "METRICS", "atomic_write", "write_config", "save_model", "load_model",
           "write_metrics", "read_metrics", "prepare_run_dir"]

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"   # resumable training state (rewritten every epoch)
MODEL = "model.pt"             # the selected model (best validation score)
METRICS = "metrics.json"


def atomic_write(path: Path, write):
    """``write(tmp)`` then rename over ``path``: readers see the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_config(out: Path, cfg: Config):
    atomic_write(Path(out) / CONFIG, lambda p: p.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False)))


def save_model(path: Path, model, cfg: Config, input_shape, num_classes, extra=None):
    payload = {"net": model.net.state_dict(), "config": cfg.to_dict(), "input_shape": tuple(input_shape),
               "num_classes": num_classes, **(extra or {})}
    atomic_write(path, lambda p: torch.save(payload, p))


def load_model(path, device="cpu", cfg: Optional[Config] = None, lam=None):
    """Rebuild a saved model in a fresh process: (model, config, payload). ``cfg`` may change the mode
    and λ (fine-tuning) but not the keys that shape the network."""
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
    model = build_model(cfg, payload["input_shape"], payload["num_classes"], lam=lam, initialize=False)
    model.net.load_state_dict(payload["net"])
    model.net.to(device)
    return model, cfg, payload


def write_metrics(out: Path, metrics: dict):
    atomic_write(Path(out) / METRICS, lambda p: p.write_text(json.dumps(metrics, indent=2, default=float)))


def read_metrics(out: Path) -> dict:
    return json.loads((Path(out) / METRICS).read_text())


def prepare_run_dir(out: Path, cfg: Config, resume: bool) -> Optional[dict]:
    """Make ``out`` ready for ``cfg``: the checkpoint to resume from (when ``resume`` and the run there
    has the same config, ``epochs`` and :data:`EXECUTION_KEYS` aside), or ``None`` after clearing what
    an earlier run left. A checkpoint of another config is refused in one line."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and resume:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if "optimizer" not in state:
            raise ConfigError(f"{ckpt} holds no optimizer state (another version of pyro-ebnn wrote it) and cannot be resumed; "
                              "pass --no-resume to start over or choose another --out")
        diff = config_difference(state["config"], cfg.to_dict(), ignore=EXECUTION_KEYS + ("epochs",))
        if diff:
            raise ConfigError(f"{out} holds a run with a different config ({', '.join(diff)}); "
                              "choose another --out or pass --no-resume to start over")
        return state
    for name in (CHECKPOINT, MODEL, METRICS):
        (out / name).unlink(missing_ok=True)
    return None
