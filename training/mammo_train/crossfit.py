"""What cross-fitted runs say about their recipe, from the measurements `calibrate` kept for
each (RUN/validation.npz): every training family scored once by a network that did not train
on it. The numbers `training/README.md` ("Cross-fitted calibration") and the model card quote.

python -m mammo_train.crossfit runs/xfit-1 runs/xfit-2 runs/xfit-3 runs/xfit-4 --temperature 1.44526

- 8-class accuracy (images with both labels) and malignancy AUC of the pooled predictions, with
  95% intervals from 1,000 resamples of whole families; accuracy by source;
- binary ECE (15 bins) of P(malignant) on each source's images with a temperature fitted on the
  other sources' (8-class NLL, as `calibrate` fits it; binary NLL of P(malignant)), with none
  (T = 1), and with each `--temperature` given, and their image-weighted means;
- for each source, the binary ECE a perfectly calibrated model would show on it
  (`calibrated_ece`): the noise floor of the ECE on a fold of ~42 families;
- the binary ECE of those left-out probabilities pooled over every source (~170 families), and
  its floor there (`pooled_ece`);
- for each source, the sensitivity and specificity of the operating threshold fitted on the
  other sources (`left_out_operating_point`);
- with `--against` another recipe's runs over the same images, the paired differences (this
  recipe minus that one) of the pooled accuracy and AUC, resampling the same families for both.

python -m mammo_train.crossfit runs/half-xfit-{1,2,3,4} --against runs/xfit-{1,2,3,4}-views2
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

from .calibrate import (binary_ece, ece_if_calibrated, kept, left_out_ece, malignancy, nll_temperature,
                        operating_threshold)
from .families import read_split
from .report import family_bootstrap


def binary_temperature(arrays: list[dict]) -> float:
    """The temperature minimising the binary NLL of P(malignant) over the images with that label."""
    logits, malignant = (np.concatenate([a[k] for a in arrays]) for k in ("logits", "malignant"))
    known = ~np.isnan(malignant)
    z, y = logits[known], malignant[known]

    def loss(s: float) -> float:
        p = np.clip(malignancy(z, float(np.exp(s))), 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(np.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x))


def with_ci(statistic, positive: np.ndarray | None, fam: np.ndarray) -> dict:
    values = family_bootstrap(statistic, positive, fam)
    return {"value": float(statistic(np.arange(len(fam)))), "ci95": [float(v) for v in np.percentile(values, [2.5, 97.5])]}


def accuracy(logits: np.ndarray, allowed: np.ndarray) -> float:
    full = allowed.sum(1) == 1
    return float((logits[full].argmax(1) == allowed[full].argmax(1)).mean())


def family_of(source: Path) -> dict[str, int]:
    """File name -> family, from the split a run trained on."""
    return read_split(Path(json.loads((source / "summary.json").read_text())["split"]))[0]


def numbers(arrays: list[dict], family: dict[str, int], temperatures: tuple[float, ...] = ()) -> dict:
    """Pooled accuracy and AUC with family intervals, accuracy by source, the left-out ECE of each
    way of fitting the temperature, and the ECE a calibrated model would show on each source."""
    pool = stacked(arrays)
    logits, allowed, malignant = pool["logits"], pool["allowed"], pool["malignant"]
    fam = np.array([family[n] for n in pool["names"]])
    known = ~np.isnan(malignant)
    p = malignancy(logits, 1.0)
    fits = {"8-class NLL": nll_temperature, "binary NLL": binary_temperature, "T = 1": lambda _: 1.0,
            **{f"T = {t:g}": (lambda _, t=t: t) for t in temperatures}}
    return {
        "images": int(len(logits)), "families": int(len(np.unique(fam))),
        "accuracy": with_ci(lambda idx: accuracy(logits[idx], allowed[idx]), None, fam),
        "malignancy_auc": with_ci(lambda idx: roc_auc_score(malignant[idx][known[idx]], p[idx][known[idx]]),
                                  malignant == 1, fam),
        "accuracy_by_source": [accuracy(a["logits"], a["allowed"]) for a in arrays],
        "binary_ece_left_out": {name: left_out_ece(arrays, fit) for name, fit in fits.items()},
        "binary_ece_if_calibrated": calibrated_ece(arrays, family),
        "binary_ece_pooled_left_out": pooled_ece(arrays, family),
        "operating_point_left_out": left_out_operating_point(arrays),
    }


def stacked(arrays: list[dict]) -> dict:
    """The sources' kept arrays, one after another."""
    return {k: np.concatenate([a[k] for a in arrays]) for k in ("names", "logits", "allowed", "malignant")}


def versus(arrays: list[dict], others: list[dict], family: dict[str, int]) -> dict:
    """`arrays` minus `others`, scored on the same images (matched by name): pooled 8-class
    accuracy and malignancy AUC, with a paired family-bootstrap 95% interval."""
    a, b = stacked(arrays), stacked(others)
    where = {n: i for i, n in enumerate(b["names"])}
    if sorted(where) != sorted(a["names"]):
        raise SystemExit("--against: the two recipes' runs must score the same images")
    other = b["logits"][[where[n] for n in a["names"]]]
    fam = np.array([family[n] for n in a["names"]])
    known = ~np.isnan(a["malignant"])
    malignant = a["malignant"] == 1
    p, q = malignancy(a["logits"], 1.0), malignancy(other, 1.0)

    def difference(idx):
        k = idx[known[idx]]
        return (accuracy(a["logits"][idx], a["allowed"][idx]) - accuracy(other[idx], a["allowed"][idx]),
                roc_auc_score(malignant[k], p[k]) - roc_auc_score(malignant[k], q[k]))

    values = np.array(family_bootstrap(difference, malignant, fam))
    point = difference(np.arange(len(fam)))
    lo, hi = np.percentile(values, [2.5, 97.5], axis=0)
    return {name: {"difference": float(point[i]), "ci95": [float(lo[i]), float(hi[i])]}
            for i, name in enumerate(("accuracy", "malignancy_auc"))}


def held_out_in_turn(arrays: list[dict]):
    """Each source with the other sources and the temperature fitted on them (8-class NLL, as
    `calibrate` fits it): the calibration a source's images were not used for."""
    for i, held in enumerate(arrays):
        rest = [a for j, a in enumerate(arrays) if j != i]
        yield held, rest, nll_temperature(rest)


def left_out_probabilities(arrays: list[dict], family: dict[str, int]) -> list[tuple]:
    """For each source, (P(malignant), label, family) of its images with the label, P at the
    temperature fitted on the other sources: calibrated on images other than these."""
    out = []
    for held, _, t in held_out_in_turn(arrays):
        known = ~np.isnan(held["malignant"])
        out.append((malignancy(held["logits"][known], t), held["malignant"][known],
                    np.array([family[n] for n in held["names"][known]])))
    return out


def calibrated_ece(arrays: list[dict], family: dict[str, int]) -> list[dict]:
    """For each source, the binary ECE a perfectly calibrated model would show on its images
    (`calibrate.ece_if_calibrated`), with P(malignant) at the temperature fitted on the other
    sources."""
    return [ece_if_calibrated(p, fam) for p, _, fam in left_out_probabilities(arrays, family)]


def pooled_ece(arrays: list[dict], family: dict[str, int]) -> dict:
    """The binary ECE of every source's left-out P(malignant) together: all the cross-fitted
    images (~170 families), each scored by a network that did not train on it at a temperature
    not fitted on it, beside what a perfectly calibrated model shows on the same families."""
    p, y, fam = (np.concatenate(parts) for parts in zip(*left_out_probabilities(arrays, family)))
    return {"binary_ece": binary_ece(p, y), "images": int(len(p)), "if_calibrated": ece_if_calibrated(p, fam)}


def left_out_operating_point(arrays: list[dict]) -> list[dict]:
    """For each source, the operating threshold as `calibrate` fits it (the target sensitivity
    on the pooled images, after T) fitted on the other sources, and the sensitivity and
    specificity it gives on this one: how far the target carries to images it was not fitted on."""
    out = []
    for held, rest, t in held_out_in_turn(arrays):
        pool = stacked(rest)
        threshold = operating_threshold(pool["logits"], pool["malignant"], t)
        known = ~np.isnan(held["malignant"])
        called = malignancy(held["logits"][known], t) >= threshold
        malignant = held["malignant"][known] == 1
        out.append({"threshold": threshold, "sensitivity": float(called[malignant].mean()),
                    "specificity": float((~called[~malignant]).mean())})
    return out


def report(sources: list[Path], temperatures: list[float], against: list[Path]) -> dict:
    arrays, family = [kept(s)["arrays"] for s in sources], family_of(sources[0])
    result = {"sources": [str(s) for s in sources], **numbers(arrays, family, tuple(temperatures))}
    if against:
        result["against"] = {"sources": [str(s) for s in against],
                             **versus(arrays, [kept(s)["arrays"] for s in against], family)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path, nargs="+", help="calibrated runs with disjoint validation folds")
    parser.add_argument("--temperature", type=float, action="append", default=[],
                        help="also score this fixed temperature (e.g. a shipped model's)")
    parser.add_argument("--against", type=Path, nargs="+", default=[],
                        help="another recipe's cross-fitted runs over the same images: paired differences")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = json.dumps(report(args.sources, args.temperature, args.against), indent=2)
    if args.out:
        args.out.write_text(result)
    print(result)


if __name__ == "__main__":
    main()
