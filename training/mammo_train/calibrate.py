"""Temperature, operating threshold and out-of-distribution detector, fitted after training on
images the network never trained on.

python -m mammo_train.calibrate runs/v2.3.0-inner

Reads the run's summary.json (data, split, held-out and validation folds, preprocessing); the
held-out fold is not read. On the validation fold (the inner split):
1. temperature: the T that minimises the 8-class negative log-likelihood of logits / T;
2. threshold: the largest P(malignant), after T, whose sensitivity reaches 0.90;
3. out-of-distribution: every method of `mammo_train.ood`, fitted on the training folds'
   features, is compared by AUROC between the validation images and proxy sets made from
   them (`mammo_train.proxies`); of the methods the graph computes, the one whose worst
   AUROC over the acquisition and non-mammogram sets is highest is chosen (ties: the highest
   mean AUROC over every set, `full_field` included, the subtlest shift), with the threshold
   that flags 5% of the validation images.
Writes RUN/calibration.json (every number and the comparison table) and RUN/ood.pt (the chosen
detector), which `mammo_train.export --run RUN` reads.

python -m mammo_train.calibrate runs/v2.3.0 --from runs/v2.3.0-inner

A refit run (`train.py --refit`: the inner families trained on too) has no images of its own to
calibrate on; it takes the temperature, threshold, detector method and detector threshold that
the run of the same recipe with an inner split fitted there, and fits the detector's Gaussian
on its own training images. `ood_training_flagged` (the share of training images above the
threshold) is recorded for both networks as a check that the threshold means the same to each.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

from . import ood, prepared, proxies
from .families import read_split
from .labels import class_index
from .models import MEAN, STD, build
from .report import threshold_for_sensitivity
from .train import normalise

TARGET_SENSITIVITY = 0.9
FLAG_RATE = 0.05


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(z - ood.logsumexp(z)[:, None])


def nll(logits: np.ndarray, allowed: np.ndarray, t: float) -> float:
    """Mean -log P(the classes each image's labels allow) of logits / t (8-class NLL for fully
    labelled images)."""
    z = logits / t
    return float(np.mean(ood.logsumexp(z) - ood.logsumexp(np.where(allowed, z, -np.inf))))


def fit_temperature(logits: np.ndarray, allowed: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood, searched over log T."""
    best = minimize_scalar(lambda s: nll(logits, allowed, float(np.exp(s))), bounds=(-3, 3), method="bounded")
    return float(np.exp(best.x))


def label_arrays(samples: list[prepared.Prepared]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 8) the classes each image's labels allow, and (N,) 1/0 malignant or NaN unknown."""
    allowed = np.stack([s.allowed() for s in samples])
    malignant = np.array([np.nan if s.malignant is None else float(s.malignant) for s in samples])
    return allowed, malignant


def binary_ece(p: np.ndarray, positive: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of P(positive): the |mean p - share positive| of equal-width
    bins over [0, 1], weighted by the bin's share of images."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - positive[inside].mean())
    return float(total)


def malignancy(logits: np.ndarray, t: float) -> np.ndarray:
    return softmax(logits / t)[:, 1::2].sum(axis=1)


def calibration_numbers(logits: np.ndarray, allowed: np.ndarray, malignant: np.ndarray, t: float) -> dict:
    """NLL over every image; binary ECE and Brier of P(malignant) over those with the label."""
    known = ~np.isnan(malignant)
    p = malignancy(logits[known], t)
    positive = malignant[known]
    return {"nll": nll(logits, allowed, t), "binary_ece": binary_ece(p, positive),
            "brier": float(np.mean((p - positive) ** 2))}


def operating_threshold(logits: np.ndarray, malignant: np.ndarray, t: float) -> float:
    """The largest P(malignant), after t, whose sensitivity reaches TARGET_SENSITIVITY among the
    images with a malignancy label."""
    known = ~np.isnan(malignant)
    return threshold_for_sensitivity(malignancy(logits[known], t), malignant[known] == 1, TARGET_SENSITIVITY)


def inputs_of(grey: torch.Tensor):
    return lambda a, b: normalise(grey[a:b]) if a < len(grey) else None


def graph_scores(score: "ood.OodScore", f: dict) -> np.ndarray:
    """What the exported graph's `ood_score` gives for features `f`."""
    return score({t: torch.from_numpy(f[t]).float() for t in score.taps}).numpy()


def fitted(summary: dict, tapped, train: list, train_f: dict, val: list, steps: list[str]) -> tuple[dict, "ood.OodScore"]:
    """Temperature, threshold and detector fitted on the run's own validation images `val`."""
    [fold] = summary["folds"]
    val_f = ood.features(tapped, inputs_of(prepared.load_planes(val)))
    y_train = np.array([class_index(s.label) for s in train])
    allowed, malignant = label_arrays(val)

    t = fit_temperature(val_f["logits"], allowed)
    threshold = operating_threshold(val_f["logits"], malignant, t)
    detectors = ood.Detectors(train_f, y_train, t)

    comparison = {m: {} for m in ood.METHODS}
    in_scores = {m: detectors.score(m, val_f) for m in ood.METHODS}
    for name, planes in proxies.proxy_sets([Path(s.source) for s in val], steps, seed=0):
        grey = torch.from_numpy(planes)[:, None]
        f = ood.features(tapped, inputs_of(grey))
        for m in ood.METHODS:
            out = detectors.score(m, f)
            scores = np.concatenate([in_scores[m], out])
            truth = np.concatenate([np.zeros(len(in_scores[m])), np.ones(len(out))])
            cut = np.quantile(in_scores[m], 1 - FLAG_RATE)
            comparison[m][name] = {"auroc": float(roc_auc_score(truth, scores)),
                                   "flagged": float((out > cut).mean()), "images": int(len(out))}
        print(f"  {name}: " + ", ".join(f"{m} {comparison[m][name]['auroc']:.3f}" for m in ood.METHODS), file=sys.stderr)

    judged = proxies.ACQUISITION + proxies.NON_MAMMOGRAMS
    exportable = [m for m in ood.METHODS if m.startswith("maha_") and m != "maha_penultimate"]
    worst = {m: min(comparison[m][s]["auroc"] for s in judged) for m in ood.METHODS}
    mean = {m: float(np.mean([comparison[m][s]["auroc"] for s in proxies.SETS])) for m in ood.METHODS}
    method = max(exportable, key=lambda m: (round(worst[m], 4), mean[m]))
    ood_threshold = float(np.quantile(in_scores[method], 1 - FLAG_RATE))
    score = ood.OodScore.fitted(detectors, ood.taps_of(method))
    in_graph = graph_scores(score, val_f)
    if not np.allclose(in_graph, in_scores[method], rtol=1e-3, atol=1e-3):
        raise SystemExit(f"the graph's {method} disagrees with the fitted detector")
    calibration = {
        "fitted_on": f"validation families ({summary['inner_share']:.0%} of fold {fold['validation_fold']}) of "
                     f"{summary['split']} ({len(val)} images); "
                     f"Gaussians on the training images ({len(train)}: not fold {fold['fold']}, not validation)",
        "temperature": t,
        "malignancy_threshold": threshold,
        "target_sensitivity": TARGET_SENSITIVITY,
        "validation_before_temperature": calibration_numbers(val_f["logits"], allowed, malignant, 1.0),
        "validation_after_temperature": calibration_numbers(val_f["logits"], allowed, malignant, t),
        "ood_method": method,
        "ood_threshold": ood_threshold,
        "ood_flag_rate_target": FLAG_RATE,
        "ood_selection": "highest worst-case AUROC over " + ", ".join(judged)
                         + "; ties by the highest mean AUROC over every set",
        "ood_worst_auroc": worst,
        "ood_mean_auroc": mean,
        "ood_comparison": comparison,
    }
    return calibration, score


def transferred(source: Path, train: list, train_f: dict) -> tuple[dict, "ood.OodScore"]:
    """A refit run (train.py --refit) has no images it did not train on outside the held-out
    fold. It takes the temperature, threshold, detector method and detector threshold that
    `source`, a run of the same recipe, fitted on its inner split; the detector's Gaussian is
    fitted on this run's own training images, as its graph will compute the features."""
    calibration = json.loads((source / "calibration.json").read_text())
    method = calibration["ood_method"]
    detectors = ood.Detectors(train_f, np.array([class_index(s.label) for s in train]), calibration["temperature"])
    score = ood.OodScore.fitted(detectors, ood.taps_of(method))
    calibration.update({
        "fitted_on": f"transferred from {source} (fitted there: {calibration['fitted_on']}); "
                     f"Gaussians on this run's training images ({len(train)})",
        "transferred_from": str(source),
        "source_training_flagged": calibration.get("ood_training_flagged"),
    })
    return calibration, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--from", dest="source", type=Path,
                        help="for a --refit run: the run of the same recipe whose inner-split calibration it takes")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    summary = json.loads((args.run / "summary.json").read_text())
    [fold] = summary["folds"]
    held_out, validation = fold["fold"], fold["validation_fold"]
    if held_out is None or validation is None or held_out == validation:
        raise SystemExit("calibration needs a run with a held-out fold and a separate validation fold")
    validating = set(fold["validation_families"])
    if bool(validating) == (args.source is not None):
        raise SystemExit("--from RUN is for a --refit run, and a --refit run needs it")
    steps = [s for s in summary["preprocess"].split(",") if s]
    samples, _ = prepared.unique(prepared.read(Path(summary["data"]))[0])
    family, folds = read_split(Path(summary["split"]))
    train = [s for s in samples if folds[s.name] != held_out and family[s.name] not in validating]
    print(f"training folds: {len(train)} images", file=sys.stderr)

    net = build(summary["init"], weights=args.run / "model.pt").eval()
    tapped = ood.Tapped(net, ood.InputStats(MEAN[0], STD[0]))
    train_f = ood.features(tapped, inputs_of(prepared.load_planes(train)))
    if args.source is not None:
        calibration, score = transferred(args.source, train, train_f)
    else:
        val = [s for s in samples if family[s.name] in validating]
        calibration, score = fitted(summary, tapped, train, train_f, val, steps)
    calibration["ood_training_flagged"] = float((graph_scores(score, train_f) > calibration["ood_threshold"]).mean())
    torch.save({"method": calibration["ood_method"], "parameters": score.parameters_by_tap()}, args.run / "ood.pt")
    (args.run / "calibration.json").write_text(json.dumps(calibration, indent=2))
    print(json.dumps({k: v for k, v in calibration.items() if k != "ood_comparison"}, indent=2))


if __name__ == "__main__":
    main()
