"""Baselines that steer a network away from masked (irrelevant) pixels by other means than evidence:
counterexamples (``augment``), loss penalties (``rrr``, ``l1grad``, ``cdep``, ``eg``; a name ->
function table, :data:`PENALTIES`) and the point (deterministic) network they were published on."""
from .counterexamples import replace_with_noise
from .decomposition import cd_decompose, cdep_penalty
from .gradients import eg_penalty, expected_gradients, l1_grad_penalty, other_images, rrr_penalty
from .penalties import DEFAULT_WEIGHTS, PENALTIES, PENALTY_MODES, default_weight, make_penalty, penalty_terms
from .point import POINT_MODES, PointModel, point_network

__all__ = ["replace_with_noise", "cd_decompose", "cdep_penalty", "eg_penalty", "expected_gradients",
           "l1_grad_penalty", "other_images", "rrr_penalty", "DEFAULT_WEIGHTS", "PENALTIES", "PENALTY_MODES",
           "default_weight", "make_penalty", "penalty_terms", "POINT_MODES", "PointModel", "point_network"]
