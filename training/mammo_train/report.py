"""Grouped cross-validation report from out-of-fold predictions (train.py's oof.csv).

python -m mammo_train.report runs/lite0-last [--leaky runs/lite0-last-leaky] [--sensitivity 0.9]

Metrics: 8-class accuracy and balanced accuracy; malignancy ROC AUC with a 95% bootstrap CI
that resamples families; the threshold reaching the target sensitivity on the out-of-fold
predictions, with sensitivity and specificity there; density accuracy and linear-weighted
Cohen's kappa; per-fold accuracy (mean ± sd); the majority-class baseline beside them. `--versus RUN` adds
the paired difference to another run's out-of-fold predictions on the same files (accuracy and
AUC, with a 95% CI from resampling families).
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, roc_auc_score

from .labels import CLASSES


def load(run: Path):
    rows = list(csv.DictReader(open(run / "oof.csv", newline="")))
    p = np.array([[float(r[c]) for c in CLASSES] for r in rows])
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    fam = np.array([int(r["family"]) for r in rows])
    fold = np.array([int(r["fold"]) for r in rows])
    return p, y, fam, fold


def threshold_for_sensitivity(score: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The largest threshold whose sensitivity (score >= t among positives) reaches `target`."""
    pos = np.sort(score[positive])[::-1]
    k = int(np.ceil(target * len(pos)))
    return float(pos[k - 1])


def family_bootstrap(statistic, positive, fam, rounds=1000, seed=0):
    """`statistic(idx)` over `rounds` resamples of whole families (or patients) with
    replacement; resamples holding only one class of `positive` are skipped (`positive=None`:
    none are)."""
    rng = np.random.default_rng(seed)
    families = np.unique(fam)
    members = {f: np.where(fam == f)[0] for f in families}
    values = []
    for _ in range(rounds):
        idx = np.concatenate([members[f] for f in rng.choice(families, len(families))])
        if positive is None or (positive[idx].any() and not positive[idx].all()):
            values.append(statistic(idx))
    return values


def bootstrap_auc(score, positive, fam):
    aucs = family_bootstrap(lambda idx: roc_auc_score(positive[idx], score[idx]), positive, fam)
    return float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))


def metrics(p, y, fam, fold, target):
    pred = p.argmax(1)
    malignant_p = p[:, 1::2].sum(1)
    positive = y % 2 == 1
    t = threshold_for_sensitivity(malignant_p, positive, target)
    called = malignant_p >= t
    density_p = p[:, 0::2] + p[:, 1::2]
    per_fold = [float((pred[fold == k] == y[fold == k]).mean()) for k in np.unique(fold)]
    lo, hi = bootstrap_auc(malignant_p, positive, fam)
    return {
        "images": int(len(y)), "families": int(len(np.unique(fam))),
        "accuracy": float((pred == y).mean()),
        "accuracy_per_fold_mean": float(np.mean(per_fold)), "accuracy_per_fold_sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "malignancy_auc": float(roc_auc_score(positive, malignant_p)), "malignancy_auc_ci95": [lo, hi],
        "threshold": t, "target_sensitivity": target,
        "sensitivity": float(called[positive].mean()), "specificity": float((~called[~positive]).mean()),
        "density_accuracy": float((density_p.argmax(1) == y // 2).mean()),
        "density_kappa_linear": float(cohen_kappa_score(y // 2, density_p.argmax(1), weights="linear")),
    }


def versus(run: Path, other: Path):
    """This run minus `other` on the same files: accuracy and malignancy AUC differences with a
    paired family-bootstrap 95% CI."""
    names = [[r["filename"] for r in csv.DictReader(open(r / "oof.csv", newline=""))] for r in (run, other)]
    if names[0] != names[1]:
        raise ValueError(f"{run} and {other} hold different files")
    (p, y, fam, _), (q, _, _, _) = load(run), load(other)
    positive = y % 2 == 1

    def diff(idx):
        acc = (p[idx].argmax(1) == y[idx]).mean() - (q[idx].argmax(1) == y[idx]).mean()
        auc = roc_auc_score(positive[idx], p[idx, 1::2].sum(1)) - roc_auc_score(positive[idx], q[idx, 1::2].sum(1))
        return acc, auc

    samples = family_bootstrap(diff, positive, fam)
    acc, auc = diff(np.arange(len(y)))
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    return {"versus": str(other), "accuracy_difference": float(acc), "accuracy_difference_ci95": [float(lo[0]), float(hi[0])],
            "auc_difference": float(auc), "auc_difference_ci95": [float(lo[1]), float(hi[1])]}


def majority(y):
    top = np.bincount(y).argmax()
    pred = np.full_like(y, top)
    return {"class": CLASSES[top], "accuracy": float((pred == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)), "malignancy_auc": 0.5,
            "density_accuracy": float((pred // 2 == y // 2).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description="grouped CV report")
    parser.add_argument("run", type=Path)
    parser.add_argument("--leaky", type=Path, help="a --leaky run of the same model, for comparison")
    parser.add_argument("--versus", type=Path, action="append", default=[],
                        help="another run on the same files, for a paired comparison (repeatable)")
    parser.add_argument("--sensitivity", type=float, default=0.9)
    args = parser.parse_args()
    p, y, fam, fold = load(args.run)
    report = {"grouped_cv": metrics(p, y, fam, fold, args.sensitivity), "majority_baseline": majority(y)}
    if args.leaky:
        lp, ly, lfam, lfold = load(args.leaky)
        report["leaky_random_split"] = metrics(lp, ly, lfam, lfold, args.sensitivity)
    if args.versus:
        report["paired_differences"] = [versus(args.run, other) for other in args.versus]
    (args.run / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
