"""How much the holes alone tell the class.

Under [000] Eq. (4) the head sees zeros on the observed cells of the last convolution. When the
marked cells depend on the class (a shortcut's mask does: it marks the shortcut, which comes with
one class), the pattern of zeros is a feature of its own, and the head can learn it in place of
the image. ``hole_information`` measures that before training: a logistic regression (scikit-learn)
that sees only which cells are holes, cross-validated, scored by balanced accuracy and rescaled so
that 0 is chance and 1 tells every class apart.

>>> import torch
>>> holes = torch.zeros(40, 1, 2, 2, dtype=torch.bool)
>>> labels = torch.arange(40) % 2
>>> holes[labels == 1, :, 0, 0] = True              # every image of class 1 has a hole in its corner
>>> round(hole_information(holes, labels, 2), 2)
1.0
>>> holes[:] = False; holes[torch.arange(40) % 4 < 2, :, 0, 0] = True   # as many holes in either class
>>> round(hole_information(holes, labels, 2), 2)
0.0
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

__all__ = ["hole_information"]


def hole_information(holes: torch.Tensor, labels: torch.Tensor, num_classes: int, folds: int = 3) -> float:
    """(balanced accuracy - 1/K) / (1 - 1/K) of a classifier that sees only ``holes`` (bool N x ... of
    the cells the head sees as zero), cross-validated over ``folds`` stratified folds; 0 where every
    image has the same holes (nothing to tell the classes by)."""
    x = holes.reshape(len(holes), -1).cpu().numpy().astype(np.float32)
    y = labels.cpu().numpy()
    counts = np.bincount(y, minlength=num_classes)
    folds = min(folds, int(counts[counts > 0].min()))
    if (x == x[:1]).all() or folds < 2 or (counts > 0).sum() < 2:
        return 0.0
    split = StratifiedKFold(folds, shuffle=True, random_state=0)
    # lent holes of a watermark's text boxes are nested, nearly collinear features: lbfgs needs more
    # than its default iterations for them (tests/test_runs.py)
    guess = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=split)
    chance = 1.0 / int((counts > 0).sum())
    return max(0.0, float(balanced_accuracy_score(y, guess) - chance) / (1.0 - chance))
