"""pyro-ebnn: Bayesian CNNs that take explanation feedback as evidence, in Pyro.

>>> from pyro_ebnn import FeedbackBNN, FeedbackEvidence, lenet
>>> bnn = FeedbackBNN(lenet(num_classes=10), evidence=FeedbackEvidence(lam=3e-4))
>>> sorted(bnn.layers)
['conv1', 'conv2', 'fc1', 'fc2', 'fc3']
"""
from .bnn import (EVIDENCE_SITE, LOGITS_SITE, PREACTIVATION_SITE, BayesianCNN, BayesianConv2d, BayesianLinear,
                  CategoricalLikelihood, FeedbackBNN, FeedbackEvidence, LaplacePrior, NormalPrior, Standardize, alexnet,
                  cdep_cnn, downsize_mask, fit_standardization, lenet, observe_irrelevant_activations,
                  posterior_network, posterior_predictive, predictive_probs, standardized)
from .explain import explain, overlap

__version__ = "0.1.0"
__all__ = ["FeedbackBNN", "FeedbackEvidence", "BayesianCNN", "BayesianConv2d", "BayesianLinear",
           "CategoricalLikelihood", "NormalPrior", "LaplacePrior", "lenet", "alexnet", "cdep_cnn",
           "Standardize", "standardized", "fit_standardization", "downsize_mask",
           "observe_irrelevant_activations", "posterior_network", "posterior_predictive", "predictive_probs",
           "explain", "overlap", "EVIDENCE_SITE", "PREACTIVATION_SITE", "LOGITS_SITE"]
