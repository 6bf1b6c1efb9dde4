"""Baselines that steer a network away from masked (irrelevant) pixels by other means than evidence:
counterexamples (``augment``), loss penalties (``rrr``, ``l1grad``, ``cdep``, ``eg``, ``rrr_gradcam``, ``hint``; a name ->
function table, :data:`PENALTIES`) and the point (deterministic) network they were published on."""
from .counterexamples import replace_with_noise
from .decomposition import cd_decompose, cdep_penalty
from .gradcam import hint_penalty, rrr_gradcam_penalty, split_at_evidence
from .influence import check_rbr_cost, influence_map, rbr_penalty
from .gradients import eg_penalty, expected_gradients, l1_grad_penalty, other_images, rrr_penalty
from .penalties import DEFAULT_WEIGHTS, PENALTIES, PENALTY_MODES, default_weight, make_penalty, penalty_terms
from .point import POINT_MODES, PointModel, point_network

__all__ = ["replace_with_noise", "cd_decompose", "cdep_penalty", "eg_penalty", "expected_gradients",
           "l1_grad_penalty", "other_images", "rrr_penalty", "DEFAULT_WEIGHTS", "PENALTIES", "PENALTY_MODES",
           "default_weight", "make_penalty", "penalty_terms", "POINT_MODES", "PointModel", "point_network",
           "hint_penalty", "rrr_gradcam_penalty", "split_at_evidence", "check_rbr_cost", "influence_map", "rbr_penalty"]
