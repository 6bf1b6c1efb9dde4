"""The Pyro model and guide of a Bayesian CNN that takes explanation feedback as evidence.

    model:  w ~ P(w)                                      sites "<layer>.weight", "<layer>.bias"
            for each image i in the subsampled data plate (scale N / B):
                a_i ~ N(mu_U, sigma_U^2)                  site  "last_conv.preactivation"
                a_iF = 0 observed, weight lambda          site  "feedback.irrelevant_preactivation"
                y_i ~ Categorical(head(a_i))              site  "label"
    guide:  w ~ q(w) = prod N(mu, softplus(rho)^2);  a_i ~ the same LRT Gaussian N(mu_U, sigma_U^2)

With ``analytic_kl=True`` the weights enter only through their closed-form KL: the model holds
``pyro.factor("weights.kl", -KL(q(w) || P(w)))`` in place of the weight sites, and neither program
draws a weight (the LRT never uses a weight sample). The loss is the same (tests check it).

The negative ELBO of this pair is [000] Eq. (3) with the likelihood of Eq. (4):
    KL(q(w) || P(w)) - N/B sum_i [log P(y_i | a_i, a_iF = 0) + lambda log N(0; mu_U, sigma_U^2)_F].
(The latent pre-activation has the same distribution in model and guide, so it adds nothing but
 the sample that the head sees.)

Both model and guide need mu_U and sigma_U; the guide computes them and hands them to the model,
which runs right after it on the same batch, so a step makes exactly one forward pass.
"""
from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Callable, Optional

import torch
import pyro
from pyro import poutine
from pyro.poutine.runtime import get_plates
from torch.distributions import kl_divergence

from .evidence import PREACTIVATION_SITE, FeedbackEvidence, preactivation_distribution
from .layers import bayesian_layers, shared_scales
from .likelihoods import CategoricalLikelihood
from .nets import BayesianCNN
from .priors import NormalPrior

__all__ = ["LOGITS_SITE", "PENALTY_SITE", "KL_SITE", "FeedbackBNN"]

LOGITS_SITE = "logits"
PENALTY_SITE = "explanation_penalty"
KL_SITE = "weights.kl"


class FeedbackBNN:
    """Model and guide (plain callables for SVI and Predictive) around a :class:`BayesianCNN`.

    prior      : ``prior(site, shape, device) -> Distribution``        (default N(0, 0.1^2)); a fixed
                 distribution, evaluated once per site and device
    likelihood : ``likelihood(logits, y)`` issuing the observation site (default Categorical)
    evidence   : ``evidence(mean, std, irrelevant) -> activation`` plus ``irrelevant_cells(mask, mean,
                 net)``; ``None`` trains without feedback (no evidence site at all).
    penalty    : optional loss-penalty baseline ``penalty(net, x, y, mask) -> per-image penalty (B,)``
                 (RRR, CDEP, ...). It enters the model as ``pyro.factor("explanation_penalty", -penalty)``
                 inside the data plate, so the objective is then *no longer an ELBO* ([000] Sec. 1).
    analytic_kl: ``True``: no weight sites; the model adds the closed-form KL as the factor
                 ``"weights.kl"`` (needs a prior with a KL to the Gaussian posterior in torch). The
                 loss equals ``TraceMeanField_ELBO`` on the weight sites without drawing or scoring
                 a weight sample: 3.93 against 9.49 s per AlexNet step at 224 px (batch 4), 27.3
                 against 31.5 ms per LeNet step with feedback (batch 128), 2 CPU threads
                 (experiments/benchmark_alexnet.py, benchmark_step.py). ``False``
                 (default): weight sites in model and guide, for ``Trace_ELBO``'s Monte Carlo KL and
                 for ``pyro.infer.Predictive`` draws of the weights.
    """

    def __init__(self, net: BayesianCNN, prior: Callable = NormalPrior(0.1),
                 likelihood: Callable = CategoricalLikelihood(), evidence: Optional[FeedbackEvidence] = None,
                 name: str = "bnn", penalty: Optional[Callable] = None, analytic_kl: bool = False,
                 kl_scale: float = 1.0):
        if not kl_scale > 0:
            raise ValueError(f"kl_scale must be > 0 (1 for the ELBO), got {kl_scale}")
        self.net, self.prior, self.likelihood, self.evidence, self.name = net, prior, likelihood, evidence, name
        self.penalty, self.analytic_kl, self.kl_scale = penalty, analytic_kl, float(kl_scale)
        self.layers = bayesian_layers(net)
        self._parameters = tuple(net.parameters())  # versions key the guide's hand-off to the model
        self._handoff = None
        self._priors = {}
        self._register_params = True

    @contextmanager
    def for_torch_optimizer(self):
        """Inside the block, model and guide compute a loss for a torch optimizer over
        ``net.parameters()`` (what ``Trainer.step`` does): the guide does not register the network
        in Pyro's param store (``pyro.module``: what ``pyro.infer.SVI`` needs to find the
        parameters, 20 param-store look-ups per step for LeNet), and each layer evaluates
        sigma = softplus(rho) once for q(w) and the LRT (:func:`~.layers.shared_scales`).
        Together 8% of a LeNet step (37.1 against 35.1 ms, 1 CPU thread, the same process)."""
        self._register_params = False
        try:
            with shared_scales(self.net):
                yield self
        finally:
            self._register_params = True

    # -- sites on the weights ------------------------------------------------------------------
    def _weight_sites(self, distributions_of) -> torch.Size:
        """Sample every weight site; return the leading (particle) shape of the samples. Under
        ``analytic_kl`` there are none: the shape of the enclosing (particle) plates, as the weight
        samples would have had."""
        if self.analytic_kl:
            sizes = [f.size for f in sorted(get_plates(), key=lambda f: f.dim) if f.dim is not None]
            return torch.Size(sizes + [1]) if sizes else torch.Size()
        lead = None
        with self._tempered():
            for lname, layer in self.layers.items():
                for pname, fn in distributions_of(lname, layer).items():
                    w = pyro.sample(f"{lname}.{pname}", fn)
                    if lead is None:
                        lead = w.shape[: w.dim() - fn.event_dim]
        return lead

    def _tempered(self):
        """The weights' terms of the loss weighted by ``kl_scale`` (no handler at all for 1)."""
        return poutine.scale(scale=self.kl_scale) if self.kl_scale != 1.0 else nullcontext()

    def _priors_of(self, lname, layer):
        dev = layer.weight_loc.device
        key = (id(self.prior), lname, dev)
        if key not in self._priors:  # the same distributions every step (0.24 ms of a LeNet step)
            self._priors[key] = {p: self.prior(f"{lname}.{p}", shape, dev) for p, shape in layer.shapes().items()}
        return self._priors[key]

    @staticmethod
    def _posteriors_of(lname, layer):
        return layer.posterior()

    # -- the shared LRT pass up to the evidence layer ------------------------------------------
    def _evidence_inputs(self, x, mask, lead):
        # Under vectorized particles the weight samples have batch shape (P, ..., 1), the last 1
        # being the data plate; draw the LRT noise of the body once per particle.
        particles = lead[:-1]
        n = math.prod(particles)
        mean, std = self.net.evidence_moments(x, torch.Size([n]) if n > 1 else torch.Size())
        if mean.dim() == x.dim() + 1:
            mean, std = (t.reshape(particles + t.shape[1:]) for t in (mean, std))
        irrelevant = None
        if self.evidence is not None and mask is not None:
            irrelevant = self.evidence.irrelevant_cells(mask, mean, self.net)
        return mean, std, irrelevant

    def _key(self, x, mask):
        return (id(x), id(mask), x._version, sum(p._version for p in self._parameters))

    # -- Pyro programs ---------------------------------------------------------------------------
    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
              data_size: Optional[int] = None):
        if self._register_params:
            pyro.module(self.name, self.net)
        lead = self._weight_sites(self._posteriors_of)
        with self._data_plate(x, data_size):
            mean, std, irrelevant = self._evidence_inputs(x, mask, lead)
            pyro.sample(PREACTIVATION_SITE, preactivation_distribution(mean, std))
        self._handoff = (self._key(x, mask), (mean, std, irrelevant))

    def model(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
              data_size: Optional[int] = None) -> torch.Tensor:
        lead = self._weight_sites(self._priors_of)
        if self.analytic_kl:
            with self._tempered():
                pyro.factor(KL_SITE, -self.kl(), has_rsample=True)
        with self._data_plate(x, data_size):
            handoff, self._handoff = self._handoff, None
            if handoff is not None and handoff[0] == self._key(x, mask):
                mean, std, irrelevant = handoff[1]
            else:  # run on its own (prior predictive, or Predictive with posterior samples)
                mean, std, irrelevant = self._evidence_inputs(x, mask, lead)
            if irrelevant is None:
                a = pyro.sample(PREACTIVATION_SITE, preactivation_distribution(mean, std))
            else:
                a = self.evidence(mean, std, irrelevant)
            logits = pyro.deterministic(LOGITS_SITE, self.net.classify(a), event_dim=1)
            if self.penalty is not None and mask is not None and y is not None:
                pyro.factor(PENALTY_SITE, -self.penalty(self.net, x, y, mask), has_rsample=True)
            return self.likelihood(logits, y)

    def predictive_preactivation(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``num_samples`` x N x C x u x v draws of the model's ``last_conv.preactivation`` site for
        the images ``x``: the LRT through the body, then a ~ N(mu_U, sigma_U^2), all draws in one
        pass with the draws folded into the batch. The first Bayesian layer sees the image itself,
        so it computes its moments once per image and only draws its noise ``num_samples`` times
        (exact); every later layer sees a different input per draw. No feedback (the site is
        latent at test time)."""
        mean, std, _ = self._evidence_inputs(x, None, torch.Size([num_samples, 1]))
        if mean.dim() == x.dim():  # one draw, or no Bayesian layer below the last convolution
            mean, std = (t.expand((num_samples,) + t.shape) for t in (mean, std))
        return torch.addcmul(mean, std, torch.randn(mean.shape, dtype=mean.dtype, device=mean.device))

    def predictive_logits(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``num_samples`` x N x K draws of the model's ``logits`` site for the images ``x`` (no labels,
        no feedback): the head on :meth:`predictive_preactivation`.

        The same distribution as ``pyro.infer.Predictive`` over model and guide (tests check it),
        which runs the guide and the model three times each and draws every weight of q(w) for
        each sample though the LRT uses none of them: 3.5 times the images per second on LeNet
        (1,862 against 539 at 1 thread, 10 samples; experiments/benchmark_predictive.py). Call it under ``torch.no_grad()``.

        >>> from pyro_ebnn.bnn import lenet
        >>> bnn = FeedbackBNN(lenet())
        >>> tuple(bnn.predictive_logits(torch.rand(3, 1, 28, 28), num_samples=5).shape)
        (5, 3, 10)
        """
        return self.net.classify(self.predictive_preactivation(x, num_samples))

    def _kl_to_prior(self, lname, layer, pname, loc, scale) -> torch.Tensor:
        """KL(q || P) of one parameter tensor: the prior's own closed form where it has one
        (:meth:`NormalPrior.kl <.priors.NormalPrior.kl>`), else torch's ``kl_divergence`` of the
        distributions."""
        if hasattr(self.prior, "kl"):
            return self.prior.kl(loc, scale)
        q = pyro.distributions.Normal(loc, scale).to_event(loc.dim())
        return kl_divergence(q, self._priors_of(lname, layer)[pname])

    @staticmethod
    def _data_plate(x, data_size):
        n = len(x) if data_size is None else int(data_size)
        return pyro.plate("data", size=n, subsample=torch.arange(len(x), device=x.device))

    def kl(self) -> torch.Tensor:
        """KL(q(w) || P(w)) summed over all weights, in closed form (the term that
        ``TraceMeanField_ELBO`` computes analytically). A prior without a closed form in torch (say
        a Student-t) raises ``NotImplementedError`` with the fix: ``analytic_kl=False`` and
        ``Trace_ELBO``, or a KL registered with ``torch.distributions.kl.register_kl``.

        >>> from pyro_ebnn import lenet
        >>> bool(FeedbackBNN(lenet()).kl() > 0)
        True
        """
        total = 0.0
        for lname, layer in self.layers.items():
            weight_scale, bias_scale = layer.scales()
            posterior = {"weight": (layer.weight_loc, weight_scale), "bias": (layer.bias_loc, bias_scale)}
            for pname, (loc, scale) in posterior.items():
                try:
                    total = total + self._kl_to_prior(lname, layer, pname, loc, scale)
                except NotImplementedError:
                    prior = self._priors_of(lname, layer)[pname]
                    raise NotImplementedError(
                        f"the prior of {lname}.{pname} ({type(prior.base_dist).__name__}) has no closed-form KL "
                        "to the Gaussian posterior in torch: use FeedbackBNN(..., analytic_kl=False) with Trace_ELBO "
                        "(config: elbo: trace), or register one with torch.distributions.kl.register_kl") from None
        return total
