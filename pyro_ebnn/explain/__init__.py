"""Explanations: attributions of the networks (Captum) and their overlap with the feedback masks."""
from .attributions import (METHODS, REFERENCE_METHODS, REFERENCES, ExplainError, attribute, batch_sizes,
                           bytes_per_image, channel_mean, default_occlusion_window, explain, explained_network,
                           gradcam_layer_map, occlusion_windows, parse_methods, reference_image)
from .overlap import (SAMPLE_IMAGES, SAMPLE_SEED, attribution_magnitude, figure_indices, image_selection,
                      masked_indices, mean_and_se, overlap, overlap_metrics, overlap_per_image)

__all__ = ["METHODS", "REFERENCE_METHODS", "REFERENCES", "ExplainError", "attribute", "batch_sizes", "bytes_per_image",
           "channel_mean", "default_occlusion_window", "explain", "explained_network", "gradcam_layer_map",
           "occlusion_windows", "parse_methods", "reference_image", "SAMPLE_IMAGES", "SAMPLE_SEED",
           "attribution_magnitude", "figure_indices", "image_selection", "masked_indices", "mean_and_se", "overlap",
           "overlap_metrics", "overlap_per_image"]
