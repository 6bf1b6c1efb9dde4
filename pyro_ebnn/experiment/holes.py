"""What the head sees on the observed cells, looked at before training.

Under [000] Eq. (4) the head of a feedback run sees zeros on the marked cells. When the marks come
with one class more than with the others, the pattern of zeros tells the class by itself and the
head can learn it in place of the images (docs/evaluation.md, "When feedback does not help").
:func:`look_at_holes` measures that (:func:`~pyro_ebnn.metrics.holes.hole_information`) and, for
``evidence_holes: auto``, chooses the holes: ``shared`` (an image without a mark sees a marked
image's zeros), or ``none`` (no zeros reach the head) when even shared holes nearly decide the class,
as they do when every image carries a mark at its class's place.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data import batches
from ..metrics.holes import hole_information
from .build import build_evidence
from .config import AUTO, Config

__all__ = ["HOLE_SAMPLE", "HOLES_DECIDE_CLASS", "holes_information", "look_at_holes"]

#: how many training images :func:`holes_information` looks at
HOLE_SAMPLE = 4000
#: the hole information from which ``evidence_holes: auto`` shows the head no holes
HOLES_DECIDE_CLASS = 0.9


def holes_information(cfg: Config, model, images) -> Optional[float]:
    """How much the holes the head of ``model`` will see tell the class by themselves, on up to
    :data:`HOLE_SAMPLE` training images in a shuffled order, batched as training batches them
    (shared holes are lent within a batch); None when no image carries a mark or the head sees no
    holes. Draws nothing from torch's generator: the run trains as it would without this look."""
    evidence = model.evidence
    if evidence is None or evidence.holes == "none":
        return None
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[:HOLE_SAMPLE]
    if not images.has_mask[order].any():
        return None
    holes, labels = [], []
    with torch.random.fork_rng(devices=[]):
        for _, y, m in batches(images.subset(order), cfg.batch_size, workers=cfg.workers):
            holes.append(evidence.holes_seen(m, model.net))
            labels.append(y)
    return hole_information(torch.cat(holes), torch.cat(labels), images.num_classes)


def look_at_holes(cfg: Config, model, images, lam: Optional[float]) -> dict:
    """metrics.json's ``hole_information`` of a feedback run, and for ``evidence_holes: auto`` its
    choice, ``evidence_holes`` (``model.evidence`` is replaced by the one without holes when shared
    holes reach :data:`HOLES_DECIDE_CLASS`); empty for a run without evidence."""
    if model.evidence is None:
        return {}
    information = holes_information(cfg, model, images)
    if cfg.evidence_holes != AUTO:
        return {"hole_information": information}
    chosen = "none" if information is not None and information >= HOLES_DECIDE_CLASS else "shared"
    if chosen == "none":
        model.evidence = build_evidence(cfg, lam, holes="none")
    return {"hole_information": information, "evidence_holes": chosen}
