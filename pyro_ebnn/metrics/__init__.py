"""Metrics of a posterior predictive: classification (scikit-learn), accuracy per group (class x marked), and
calibration / uncertainty."""
from .calibration import (N_BINS, UncertaintyError, brier, ece, entropy, mutual_information,
                          mutual_information_per_image, nll, plugin_metrics, predictive_entropy,
                          predictive_entropy_per_image, reliability, uncertainty_metrics)
from .classification import classification_metrics
from .groups import GROUP_STATES, group_accuracies, groups_of, marked_shares, marked_shares_of

__all__ = ["classification_metrics", "GROUP_STATES", "group_accuracies", "groups_of", "marked_shares", "marked_shares_of", "N_BINS", "UncertaintyError", "brier", "ece", "entropy", "mutual_information",
           "mutual_information_per_image", "nll", "plugin_metrics", "predictive_entropy",
           "predictive_entropy_per_image", "reliability", "uncertainty_metrics"]
