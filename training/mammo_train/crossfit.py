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
  (`calibrated_ece`): the noise floor of the ECE on a fold of ~42 families.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

from .calibrate import ece_if_calibrated, kept, left_out_ece, malignancy, nll_temperature
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
    logits, allowed, malignant = (np.concatenate([a[k] for a in arrays]) for k in ("logits", "allowed", "malignant"))
    fam = np.array([family[n] for a in arrays for n in a["names"]])
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
    }


def calibrated_ece(arrays: list[dict], family: dict[str, int]) -> list[dict]:
    """For each source, the binary ECE a perfectly calibrated model would show on its images
    (`calibrate.ece_if_calibrated`), with P(malignant) at the temperature fitted on the other
    sources."""
    out = []
    for i, held in enumerate(arrays):
        t = nll_temperature([a for j, a in enumerate(arrays) if j != i])
        known = ~np.isnan(held["malignant"])
        out.append(ece_if_calibrated(malignancy(held["logits"][known], t),
                                     np.array([family[n] for n in held["names"][known]])))
    return out


def report(sources: list[Path], temperatures: list[float]) -> dict:
    arrays = [kept(s)["arrays"] for s in sources]
    return {"sources": [str(s) for s in sources], **numbers(arrays, family_of(sources[0]), tuple(temperatures))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path, nargs="+", help="calibrated runs with disjoint validation folds")
    parser.add_argument("--temperature", type=float, action="append", default=[],
                        help="also score this fixed temperature (e.g. a shipped model's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = json.dumps(report(args.sources, args.temperature), indent=2)
    if args.out:
        args.out.write_text(result)
    print(result)


if __name__ == "__main__":
    main()
