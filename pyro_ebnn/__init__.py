"""pyro-ebnn: Bayesian CNNs that take explanation feedback as evidence, in Pyro."""
from .feedback import EVIDENCE_SITE, PREACTIVATION_SITE, FeedbackEvidence, downsize_mask, observe_irrelevant_activations
from .layers import BayesianConv2d, BayesianLinear
from .likelihoods import CategoricalLikelihood
from .model import LOGITS_SITE, FeedbackBNN
from .nets import BayesianCNN, Standardize, alexnet, cdep_cnn, fit_standardization, lenet, standardized
from .priors import LaplacePrior, NormalPrior

__version__ = "0.1.0"
__all__ = ["FeedbackBNN", "FeedbackEvidence", "BayesianCNN", "BayesianConv2d", "BayesianLinear",
           "CategoricalLikelihood", "NormalPrior", "LaplacePrior", "lenet", "alexnet", "cdep_cnn",
           "Standardize", "standardized", "fit_standardization", "downsize_mask",
           "observe_irrelevant_activations", "EVIDENCE_SITE", "PREACTIVATION_SITE", "LOGITS_SITE"]
