"""Reference metrics from scikit-learn for a fixed prediction set (tests/fixtures/eval_reference.json).

`tests/eval_metrics.rs` computes the same metrics with `mammo_serve::eval::metrics` and compares.
Run with the training venv (it has scikit-learn): .venv-train/bin/python scripts/eval_reference.py
"""

import json

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, brier_score_loss,
                             cohen_kappa_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score,
                             roc_curve)

rng = np.random.default_rng(20261127)
n, k = 300, 8
truth = rng.integers(0, k, n)
truth[:8] = np.arange(8)  # every class present
logits = rng.normal(0, 1, (n, k))
logits[np.arange(n), truth] += rng.uniform(0, 3, n)  # informative but imperfect
probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
probs = np.round(probs, 6)
probs /= probs.sum(1, keepdims=True)
groups = rng.integers(0, 30, n)
pred = probs.argmax(1)

malignant_p = probs[:, 1::2].sum(1)
positive = truth % 2 == 1
threshold = 0.5
called = malignant_p >= threshold
fpr, tpr, _ = roc_curve(positive, malignant_p)
density_true, density_pred = truth // 2, (probs[:, 0::2] + probs[:, 1::2]).argmax(1)
confidence = probs.max(1)
correct = pred == truth
edges = np.linspace(0, 1, 11)
ece = 0.0
for lo, hi in zip(edges[:-1], edges[1:]):
    m = (confidence > lo) & (confidence <= hi)
    if m.any():
        ece += m.mean() * abs(correct[m].mean() - confidence[m].mean())
precision, recall, f1, support = precision_recall_fscore_support(truth, pred, labels=range(k), zero_division=0)
# Binary ECE of P(malignant) over 15 equal-width bins: scikit-learn's calibration curve (the
# same bins, empty ones dropped), weighted by each bin's share of images.
share_positive, mean_p = calibration_curve(positive, malignant_p, n_bins=15, strategy="uniform")
bin_of = np.searchsorted(np.linspace(0, 1, 16)[1:-1], malignant_p)
counts = np.bincount(bin_of, minlength=15)
binary_ece = float(np.sum(counts[counts > 0] / n * np.abs(share_positive - mean_p)))

reference = {
    "inputs": {"truth": truth.tolist(), "probabilities": probs.tolist(), "groups": groups.tolist(), "threshold": threshold},
    "accuracy": accuracy_score(truth, pred),
    "balanced_accuracy": balanced_accuracy_score(truth, pred),
    "confusion": confusion_matrix(truth, pred, labels=range(k)).tolist(),
    "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(), "support": support.tolist(),
    "malignancy_auc": roc_auc_score(positive, malignant_p),
    "malignancy_confusion": confusion_matrix(positive, called, labels=[False, True]).tolist(),
    "sensitivity": called[positive].mean(), "specificity": (~called[~positive]).mean(),
    "sensitivity_at_90_specificity": float(tpr[(1 - fpr) >= 0.9].max()),
    "density_confusion": confusion_matrix(density_true, density_pred, labels=range(4)).tolist(),
    "density_accuracy": accuracy_score(density_true, density_pred),
    "density_kappa_linear": cohen_kappa_score(density_true, density_pred, weights="linear", labels=range(4)),
    "ece_10_bins": ece,
    "binary_ece_15_bins": binary_ece,
    "brier": brier_score_loss(positive, malignant_p),
    "average_precision": average_precision_score(positive, malignant_p),
}
with open("tests/fixtures/eval_reference.json", "w") as f:
    json.dump(reference, f, indent=1, default=float)
print("wrote tests/fixtures/eval_reference.json")
