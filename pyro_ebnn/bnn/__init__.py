"""The Bayesian CNN as a Pyro model: LRT layers, architectures, feedback evidence, priors,
likelihoods, the model and guide, the posterior predictive and the hand-derived objective.

Nothing here knows which dataset it sees or how an experiment is run."""
from .backbones import STAGES, TORCHVISION_PREFIX, ResidualBlock, is_torchvision, torchvision_cnn, torchvision_state
from .evidence import (EVIDENCE_SITE, PREACTIVATION_SITE, FeedbackEvidence, MaskedNormal, downsize_mask,
                       observe_irrelevant_activations, reaches_output)
from .layers import (BayesianConv2d, BayesianLayer, BayesianLinear, bayesian_layers, max_pool_2x2, run_lrt,
                     shared_scales)
from .likelihoods import CategoricalLikelihood
from .model import KL_SITE, LOGITS_SITE, PENALTY_SITE, FeedbackBNN
from .nets import (ARCHITECTURES, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS, BayesianCNN, Standardize, alexnet,
                   cdep_cnn, fit_standardization, imagenet_alexnet_file, imagenet_alexnet_state, layer_sequence, lenet,
                   load_means, load_pretrained_means, logits_at, normalized, plain_network, posterior_network,
                   standardization_of, standardized, weights_at)
from .objective import negative_elbo
from .predictive import mean_probs, posterior_predictive, predictive_probs
from .priors import PRIORS, LaplacePrior, NormalPrior

__all__ = ["EVIDENCE_SITE", "PREACTIVATION_SITE", "LOGITS_SITE", "PENALTY_SITE", "KL_SITE", "FeedbackEvidence", "MaskedNormal",
           "downsize_mask", "observe_irrelevant_activations", "reaches_output", "BayesianConv2d", "BayesianLayer",
           "BayesianLinear", "bayesian_layers", "run_lrt", "shared_scales", "max_pool_2x2", "CategoricalLikelihood",
           "FeedbackBNN", "ARCHITECTURES", "BayesianCNN", "Standardize", "alexnet", "IMAGENET_MEAN", "IMAGENET_STD",
           "NORMALIZATIONS", "normalized", "imagenet_alexnet_file", "imagenet_alexnet_state", "load_pretrained_means",
           "load_means", "cdep_cnn", "lenet", "fit_standardization", "standardization_of", "standardized",
           "layer_sequence", "plain_network", "posterior_network", "weights_at", "logits_at", "negative_elbo",
           "mean_probs", "posterior_predictive", "predictive_probs", "PRIORS", "NormalPrior", "LaplacePrior",
           "STAGES", "TORCHVISION_PREFIX", "ResidualBlock", "is_torchvision", "torchvision_cnn", "torchvision_state"]
