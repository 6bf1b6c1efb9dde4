"""Classification metrics (scikit-learn) from posterior predictive probabilities."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true, probs) -> dict:
    """Flat dict named like scikit-learn's functions. ``probs``: N x K mean predictive probabilities."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    y_pred = probs.argmax(1)
    labels = np.arange(k)
    out = {
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro" if k > 2 else "binary", labels=labels if k > 2 else None, zero_division=0)),
        "precision_macro": float(skm.precision_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        "recall_macro": float(skm.recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
    }
    probs = probs / probs.sum(1, keepdims=True)
    try:
        if k == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=labels))
    except ValueError:  # a class absent from y_true
        out["roc_auc"] = float("nan")
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out
