"""Explanations: attributions of the networks (Captum) and their overlap with the feedback masks."""
from .attributions import (METHODS, REFERENCE_METHODS, REFERENCES, ExplainError, attribute, channel_mean,
                           default_occlusion_window, explain, explained_network, gradcam_layer_map, parse_methods,
                           reference_image)
from .overlap import (attribution_magnitude, figure_indices, masked_indices, overlap, overlap_metrics,
                      overlap_per_image)

__all__ = ["METHODS", "REFERENCE_METHODS", "REFERENCES", "ExplainError", "attribute", "channel_mean",
           "default_occlusion_window", "explain", "explained_network", "gradcam_layer_map", "parse_methods",
           "reference_image", "attribution_magnitude", "figure_indices", "masked_indices", "overlap", "overlap_metrics",
           "overlap_per_image"]
