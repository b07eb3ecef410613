"""Temperature, operating threshold and out-of-distribution detector, fitted after training on
images the network never trained on.

python -m mammo_train.calibrate runs/xfit-1

Reads the run's summary.json (data, split, held-out and validation folds, preprocessing); the
held-out fold is not read. The run's network scores its validation images: their logits, and
every method of `mammo_train.ood` fitted on the training folds' features, compared by AUROC
between the validation images and proxy sets made from them (`mammo_train.proxies`); these
measurements are kept in RUN/validation.npz and calibration.json. From them:
1. temperature: the T that minimises the 8-class negative log-likelihood of logits / T;
2. threshold: the largest P(malignant), after T, whose sensitivity reaches 0.90;
3. out-of-distribution: of the methods the graph computes, the one whose worst AUROC over the
   acquisition and non-mammogram sets is highest (ties: the highest mean AUROC over every set,
   `full_field` included, the subtlest shift), with the threshold that flags 5% of the
   validation images.
Writes RUN/calibration.json (every number and the comparison table) and RUN/ood.pt (the chosen
detector), which `mammo_train.export --run RUN` reads. With `--views V` the logits are averaged
over V test-time views (`mammo_train.views`) and the export averages them the same way; the
detector reads the image alone either way.

python -m mammo_train.calibrate runs/v2.4.0 --from runs/xfit-1 runs/xfit-2 runs/xfit-3 runs/xfit-4

A refit run (`train.py --refit`: every family outside the held-out fold trained on) has no
images of its own to calibrate on. It fits the three steps above on the pooled measurements of
calibrated runs of the same recipe: the cross-fitted runs (`train --inner K --inner-share 1`
for K = 1..4, each validating on a whole fold, so that every training family is scored once by
a network that did not train on it), or one run with an inner split. The detector's Gaussian is
fitted on the refit network's own training images. `ood_training_flagged` (the share of
training images above the threshold) is recorded for every network as a check that the
threshold means the same to each.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

from . import ood, prepared, proxies, views
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


def ece_if_calibrated(p: np.ndarray, family: np.ndarray, rounds: int = 500, seed: int = 0) -> dict:
    """The binary ECE a perfectly calibrated model with these P(malignant) would show on these
    images: labels drawn so that each image is malignant with exactly its p while the images of
    one family share one draw (one lesion, one pathology: label = [u_family < p]). Mean and
    5-95% range over `rounds` draws: the floor a measured ECE on so many families cannot be told
    from."""
    rng = np.random.default_rng(seed)
    _, which = np.unique(family, return_inverse=True)
    draws = np.array([binary_ece(p, (rng.random(which.max() + 1)[which] < p).astype(float)) for _ in range(rounds)])
    return {"mean": float(draws.mean()), "range90": [float(v) for v in np.quantile(draws, [0.05, 0.95])],
            "share_at_most_0.05": float((draws <= 0.05).mean()), "families": int(which.max() + 1)}


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


def labels_of(samples: list[prepared.Prepared]) -> np.ndarray:
    return np.array([class_index(s.label) for s in samples])


def inputs_of(grey: torch.Tensor):
    return lambda a, b: normalise(grey[a:b]) if a < len(grey) else None


EXPORTABLE = [m for m in ood.METHODS if m.startswith("maha_") and m != "maha_penultimate"]


def graph_scores(score: "ood.OodScore", f: dict) -> np.ndarray:
    """What the exported graph's `ood_score` gives for features `f`."""
    return score({t: torch.from_numpy(f[t]).float() for t in score.taps}).numpy()


def measured(tapped, train: list, train_f: dict, val: list, steps: list[str]) -> dict:
    """What a run's network gives on its own validation images `val`: their logits and labels,
    every detector method's score (fitted on the training images), and each method's AUROC
    between them and the proxy sets made from them. Saved as RUN/validation.npz and the
    comparison in calibration.json, so that several runs' measurements can be pooled."""
    val_f = ood.features(tapped, inputs_of(prepared.load_planes(val)))
    allowed, malignant = label_arrays(val)
    detectors = ood.Detectors(train_f, labels_of(train), fit_temperature(val_f["logits"], allowed))
    in_scores = {m: detectors.score(m, val_f) for m in ood.METHODS}
    comparison = {m: {} for m in ood.METHODS}
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
    for method in EXPORTABLE:  # the graph must compute what was measured
        if not np.allclose(graph_scores(ood.OodScore.fitted(detectors, ood.taps_of(method)), val_f), in_scores[method],
                           rtol=1e-3, atol=1e-3):
            raise SystemExit(f"the graph's {method} disagrees with the fitted detector")
    arrays = {"names": np.array([s.name for s in val]), "logits": val_f["logits"], "allowed": allowed,
              "malignant": malignant, **{f"score_{m}": in_scores[m] for m in ood.METHODS}}
    return {"arrays": arrays, "comparison": comparison}


def nll_temperature(arrays: list[dict]) -> float:
    """The 8-class-NLL temperature of several sources' measurements together."""
    return fit_temperature(*(np.concatenate([a[k] for a in arrays]) for k in ("logits", "allowed")))


def left_out_ece(arrays: list[dict], fit=nll_temperature) -> dict | None:
    """Binary ECE of P(malignant) on each source's images with the temperature `fit` gives on
    the other sources' images, and their image-weighted mean: the calibration's error on images
    it was not fitted on (None with one source)."""
    if len(arrays) < 2:
        return None
    per_source = []
    for i, held in enumerate(arrays):
        t = fit([a for j, a in enumerate(arrays) if j != i])
        per_source.append(calibration_numbers(held["logits"], held["allowed"], held["malignant"], t)["binary_ece"])
    weights = [np.sum(~np.isnan(a["malignant"])) for a in arrays]
    return {"per_source": per_source, "mean": float(np.average(per_source, weights=weights))}


def views_of(run: Path) -> int:
    """The test-time views a calibrated run's logits were averaged over (1 before views existed)."""
    return json.loads((run / "calibration.json").read_text()).get("views", 1)


def kept(run: Path) -> dict:
    """A calibrated run's measurements, as `measured` gave them."""
    return {"arrays": dict(np.load(run / "validation.npz")),
            "comparison": json.loads((run / "calibration.json").read_text())["ood_comparison"]}


def pooled(sources: list[Path], measurements: list[dict]) -> dict:
    """Temperature, threshold and detector choice fitted on the validation images of `sources`
    (their `measurements`) together: one run's inner split, or the folds of cross-fitted runs
    (`train --inner K --inner-share 1` for each K), whose pooled predictions cover every training
    family once, each from a network that did not train on it."""
    arrays = [m["arrays"] for m in measurements]
    comparisons = [m["comparison"] for m in measurements]
    logits, allowed, malignant = (np.concatenate([a[k] for a in arrays]) for k in ("logits", "allowed", "malignant"))
    names = np.concatenate([a["names"] for a in arrays])
    if len(set(names)) != len(names):
        raise SystemExit("the sources validate on overlapping images: pool runs with disjoint validation families")
    t = fit_temperature(logits, allowed)
    judged = proxies.ACQUISITION + proxies.NON_MAMMOGRAMS
    auroc = {m: {s: float(np.mean([c[m][s]["auroc"] for c in comparisons])) for s in proxies.SETS} for m in ood.METHODS}
    worst = {m: min(auroc[m][s] for s in judged) for m in ood.METHODS}
    mean = {m: float(np.mean(list(auroc[m].values()))) for m in ood.METHODS}
    method = max(EXPORTABLE, key=lambda m: (round(worst[m], 4), mean[m]))
    return {
        "fitted_on": f"the validation images of {', '.join(map(str, sources))} ({len(names)} images, "
                     "each scored by a network that did not train on it)",
        "calibration_sources": [str(s) for s in sources],
        "temperature": t,
        "malignancy_threshold": operating_threshold(logits, malignant, t),
        "target_sensitivity": TARGET_SENSITIVITY,
        "validation_before_temperature": calibration_numbers(logits, allowed, malignant, 1.0),
        "validation_after_temperature": calibration_numbers(logits, allowed, malignant, t),
        "binary_ece_left_out": left_out_ece(arrays),
        "ood_method": method,
        "ood_threshold": float(np.quantile(np.concatenate([a[f"score_{method}"] for a in arrays]), 1 - FLAG_RATE)),
        "ood_flag_rate_target": FLAG_RATE,
        "ood_selection": "highest worst-case AUROC (mean over the sources) over " + ", ".join(judged)
                         + "; ties by the highest mean AUROC over every set",
        "ood_worst_auroc": worst,
        "ood_mean_auroc": mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--from", dest="sources", type=Path, nargs="+",
                        help="for a --refit run: the calibrated runs of the same recipe whose validation images it pools "
                             "(an inner run, or the cross-fitted runs)")
    parser.add_argument("--views", type=int, choices=views.COUNTS, default=1,
                        help="average the logits over this many test-time views (mammo_train.views); "
                             "a --refit run's sources must have been calibrated with the same")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    summary = json.loads((args.run / "summary.json").read_text())
    [fold] = summary["folds"]
    held_out, validation = fold["fold"], fold["validation_fold"]
    if held_out is None or validation is None or held_out == validation:
        raise SystemExit("calibration needs a run with a held-out fold and a separate validation fold")
    validating = set(fold["validation_families"])
    if bool(validating) == (args.sources is not None):
        raise SystemExit("--from RUN... is for a --refit run, and a --refit run needs it")
    for source in args.sources or []:
        if views_of(source) != args.views:
            raise SystemExit(f"{source} was calibrated with {views_of(source)} views, this run asks {args.views}")
    steps = [s for s in summary["preprocess"].split(",") if s]
    samples, _ = prepared.unique(prepared.read(Path(summary["data"]))[0])
    family, folds = read_split(Path(summary["split"]))
    train = [s for s in samples if folds[s.name] != held_out and family[s.name] not in validating]
    print(f"training folds: {len(train)} images", file=sys.stderr)

    net = build(summary["init"], weights=args.run / "model.pt").eval()
    stats = ood.InputStats(MEAN[0], STD[0])
    train_f = ood.features(ood.Tapped(net, stats), inputs_of(prepared.load_planes(train)))
    if args.sources is None:
        own = measured(ood.Tapped(net, stats, views=args.views), train, train_f,
                       [s for s in samples if family[s.name] in validating], steps)
        np.savez(args.run / "validation.npz", **own["arrays"])
        calibration = pooled([args.run], [own]) | {"ood_comparison": own["comparison"]}
    else:
        calibration = pooled(args.sources, [kept(s) for s in args.sources])
    calibration["views"] = args.views
    calibration["fitted_on"] += f"; the detector's Gaussian on this run's training images ({len(train)})"
    detectors = ood.Detectors(train_f, labels_of(train), calibration["temperature"])
    score = ood.OodScore.fitted(detectors, ood.taps_of(calibration["ood_method"]))
    calibration["ood_training_flagged"] = float((graph_scores(score, train_f) > calibration["ood_threshold"]).mean())
    if args.sources is not None:
        calibration["sources_training_flagged"] = [
            json.loads((s / "calibration.json").read_text())["ood_training_flagged"] for s in args.sources]
    torch.save({"method": calibration["ood_method"], "parameters": score.parameters_by_tap()}, args.run / "ood.pt")
    (args.run / "calibration.json").write_text(json.dumps(calibration, indent=2))
    print(json.dumps({k: v for k, v in calibration.items() if k != "ood_comparison"}, indent=2))


if __name__ == "__main__":
    main()
