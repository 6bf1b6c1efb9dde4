"""One torch optimizer over all parameters of an SVI step, with per-epoch learning-rate decay.

``pyro.optim.PyroOptim`` builds one optimizer per parameter tensor; for a network of twenty
tensors that is twenty optimizer steps per SVI step. This drop-in ``PyroOptim`` keeps a single
(multi-tensor) optimizer instead; it is what ``pyro.infer.SVI`` receives.
"""
from __future__ import annotations

import pyro
import torch
from pyro.optim import PyroOptim


class JointOptim(PyroOptim):
    def __init__(self, optimizer=torch.optim.Adam, optim_args=None, gamma: float = 1.0):
        self.optimizer_cls, self.optim_args, self.gamma = optimizer, dict(optim_args or {}), gamma
        self.optimizer, self.scheduler, self._params, self._pending = None, None, None, None

    def _ordered(self, params):
        names = {id(v): k for k, v in pyro.get_param_store().named_parameters()}
        return sorted(params, key=lambda p: names.get(id(p), ""))

    def __call__(self, params, *args, **kwargs):
        params = set(params)
        if self._params is None or params != set(self._params):
            self._params = self._ordered(params)
            self.optimizer = self.optimizer_cls(self._params, **self.optim_args)
            self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, self.gamma)
            if self._pending is not None:
                self.optimizer.load_state_dict(self._pending["optimizer"])
                self.scheduler.load_state_dict(self._pending["scheduler"])
                self._pending = None
        self.optimizer.step()

    def step(self):
        """Decay the learning rate (call once per epoch)."""
        if self.scheduler is not None:
            self.scheduler.step()

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"] if self.optimizer else self.optim_args.get("lr")

    def get_state(self):
        if self.optimizer is None:
            return self._pending or {}
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def set_state(self, state):
        if state:
            self._pending = state
            self.optimizer = self.scheduler = self._params = None

    def save(self, filename):
        torch.save(self.get_state(), filename)

    def load(self, filename, map_location=None):
        self.set_state(torch.load(filename, map_location=map_location, weights_only=False))
