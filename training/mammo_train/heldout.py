"""What the exported model does on the held-out fold, measured once it is fixed: nothing here
feeds back into training, calibration or the choice of detector.

python -m mammo_train.heldout runs/v2.3.0 --model ../models/mammo.onnx --baseline OLD.onnx \
       [--test-prepared runs/prepared/dphi-test] [--out runs/v2.3.0/heldout.json]

On the run's held-out fold (summary.json), through ONNX Runtime with the server's
postprocessing (logits / mammo.temperature, marginals, mammo.malignancy_threshold):
- metrics of the model and the baseline with 95% CIs from resampling families, and their
  paired differences;
- binary ECE (15 bins) and Brier score of P(malignant), before and after the temperature, with
  the same family-bootstrap intervals, and the ECE a perfectly calibrated model with those
  probabilities would show on the fold's families (`calibrate.ece_if_calibrated`);
- stability: how often the density label and the malignancy call change under acquisition
  changes inside training's augmentation range (`PERTURBATIONS`), for both models;
- out-of-distribution: AUROC of every method of `mammo_train.ood` (refitted on the training
  folds, as calibrate fits them) between the held-out images and proxy sets made from them, and
  the flag rate of the exported detector on the held-out fold, on each proxy set and on the
  unlabelled test images that are not byte-copies of training files.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.metrics import roc_auc_score

from . import augment, ood, prepared, proxies
from .calibrate import binary_ece, ece_if_calibrated, inputs_of
from .families import read_split
from .labels import class_index
from .models import MEAN, STD, build
from .report import family_bootstrap
from .train import normalise

# Acquisition changes inside training's augmentation ranges, one at a time, fixed strength.
PERTURBATIONS = {
    "gamma 0.8": lambda g: g.pow(0.8),
    "gamma 1.25": lambda g: g.pow(1.25),
    "window 0.05-0.95": lambda g: ((g - 0.05) / 0.9).clamp(0, 1),
    "blur sigma 1 px": lambda g: torch.cat([augment.blur(p[None], 1.0) for p in g]),
    "resolution x0.5": lambda g: torch.cat([augment.resample(p[None], 0.5) for p in g]),
    "noise sigma 0.02": lambda g: (g + 0.02 * torch.randn(g.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1),
    "background 0.05": lambda g: 0.05 + 0.95 * g,
    "zoom 0.9": lambda g: scaled(g, 0.9),
    "zoom 1.1": lambda g: scaled(g, 1.1),
}


def scaled(g: torch.Tensor, scale: float) -> torch.Tensor:
    theta = torch.zeros(len(g), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    grid = torch.nn.functional.affine_grid(theta, list(g.shape), align_corners=False)
    return torch.nn.functional.grid_sample(g, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Onnx:
    """A model file run as the server runs it."""

    def __init__(self, path: Path):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.temperature = float(meta.get("mammo.temperature", "1"))
        self.threshold = float(meta["mammo.malignancy_threshold"])
        self.ood_threshold = float(meta["mammo.ood_threshold"]) if "mammo.ood_threshold" in meta else None
        self.version = meta.get("mammo.version", "unknown")
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, grey: torch.Tensor, batch: int = 64) -> dict[str, np.ndarray]:
        out: dict[str, list] = {}
        for i in range(0, len(grey), batch):
            x = normalise(grey[i:i + batch]).numpy()
            for name, v in zip(self.outputs, self.session.run(self.outputs, {"input": x})):
                out.setdefault(name, []).append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    def probabilities(self, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
        z = logits / (self.temperature if temperature is None else temperature)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def calls(model: Onnx, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, density, malignant call) per image, as the server answers."""
    p = model.probabilities(logits)
    density = (p[:, 0::2] + p[:, 1::2]).argmax(axis=1)
    return p.argmax(axis=1), density, p[:, 1::2].sum(axis=1) >= model.threshold


def with_ci(statistic, y: np.ndarray, fam: np.ndarray) -> dict:
    positive = y % 2 == 1
    values = family_bootstrap(statistic, positive, fam)
    lo, hi = np.percentile(values, [2.5, 97.5], axis=0)
    return {"value": statistic(np.arange(len(y))), "ci95": [lo, hi]}


def model_metrics(model: Onnx, logits: np.ndarray, y: np.ndarray, fam: np.ndarray) -> dict:
    p = model.probabilities(logits)
    cls, density, _ = calls(model, logits)
    positive = y % 2 == 1
    malignant_p = p[:, 1::2].sum(axis=1)

    def accuracy(idx):
        return float((cls[idx] == y[idx]).mean())

    def auc(idx):
        return float(roc_auc_score(positive[idx], malignant_p[idx]))

    def density_accuracy(idx):
        return float((density[idx] == y[idx] // 2).mean())

    calibration = {}
    for name, t in (("before_temperature", 1.0), ("after_temperature", model.temperature)):
        q = model.probabilities(logits, t)[:, 1::2].sum(axis=1)
        calibration[name] = {
            "binary_ece": with_ci(lambda idx: binary_ece(q[idx], positive[idx].astype(float)), y, fam),
            "brier": with_ci(lambda idx: float(np.mean((q[idx] - positive[idx]) ** 2)), y, fam),
            "binary_ece_if_calibrated": ece_if_calibrated(q, fam)}
    return {"version": model.version, "temperature": model.temperature, "threshold": model.threshold,
            "accuracy": with_ci(accuracy, y, fam), "malignancy_auc": with_ci(auc, y, fam),
            "density_accuracy": with_ci(density_accuracy, y, fam), "calibration": calibration}


def paired(a: tuple[Onnx, np.ndarray], b: tuple[Onnx, np.ndarray], y: np.ndarray, fam: np.ndarray) -> dict:
    """a minus b: accuracy, malignancy AUC and density accuracy, with family-bootstrap CIs."""
    (ma, la), (mb, lb) = a, b
    ca, cb = calls(ma, la), calls(mb, lb)
    pa, pb = (m.probabilities(l)[:, 1::2].sum(axis=1) for m, l in (a, b))
    positive = y % 2 == 1

    def diff(idx):
        return (float((ca[0][idx] == y[idx]).mean() - (cb[0][idx] == y[idx]).mean()),
                float(roc_auc_score(positive[idx], pa[idx]) - roc_auc_score(positive[idx], pb[idx])),
                float((ca[1][idx] == y[idx] // 2).mean() - (cb[1][idx] == y[idx] // 2).mean()))

    values = np.array(family_bootstrap(diff, positive, fam))
    point = diff(np.arange(len(y)))
    lo, hi = np.percentile(values, [2.5, 97.5], axis=0)
    names = ("accuracy", "malignancy_auc", "density_accuracy")
    return {n: {"difference": point[i], "ci95": [lo[i], hi[i]]} for i, n in enumerate(names)}


def stability(model: Onnx, grey: torch.Tensor, logits: np.ndarray) -> dict:
    _, density, malignant = calls(model, logits)
    table = {}
    for name, change in PERTURBATIONS.items():
        _, d, m = calls(model, model.run(change(grey))["logits"])
        table[name] = {"density_flips": float((d != density).mean()), "malignancy_flips": float((m != malignant).mean())}
    return table


def ood_report(run: Path, summary: dict, held: list, held_grey: torch.Tensor, model: Onnx,
               calibration: dict, steps: list[str], test_prepared: Path | None) -> dict:
    listed, _ = prepared.read(Path(summary["data"]))
    samples, _ = prepared.unique(listed)
    family, folds = read_split(Path(summary["split"]))
    [fold] = summary["folds"]
    validating = set(fold["validation_families"])
    train = [s for s in samples if folds[s.name] != fold["fold"] and family[s.name] not in validating]
    net = build(summary["init"], weights=run / "model.pt").eval()
    tapped = ood.Tapped(net, ood.InputStats(MEAN[0], STD[0]))
    train_f = ood.features(tapped, inputs_of(prepared.load_planes(train)))
    detectors = ood.Detectors(train_f, np.array([class_index(s.label) for s in train]), calibration["temperature"])
    held_f = ood.features(tapped, inputs_of(held_grey))
    in_scores = {m: detectors.score(m, held_f) for m in ood.METHODS}
    table = {m: {} for m in ood.METHODS}
    flags = {"held_out": float((model.run(held_grey)["ood_score"] > model.ood_threshold).mean())}
    for name, planes in proxies.proxy_sets([Path(s.source) for s in held], steps, seed=1):
        grey = torch.from_numpy(planes)[:, None]
        f = ood.features(tapped, inputs_of(grey))
        for m in ood.METHODS:
            out = detectors.score(m, f)
            truth = np.concatenate([np.zeros(len(in_scores[m])), np.ones(len(out))])
            table[m][name] = float(roc_auc_score(truth, np.concatenate([in_scores[m], out])))
        flags[name] = float((model.run(grey)["ood_score"] > model.ood_threshold).mean())
        print(f"  {name}: flagged {flags[name]:.3f}", file=sys.stderr)
    if test_prepared is not None:
        train_digests = {s.sha256 for s in listed}
        test, _ = prepared.unique(prepared.read(test_prepared)[0])
        fresh = [s for s in test if s.sha256 not in train_digests]
        flags["test_not_copied"] = float((model.run(prepared.load_planes(fresh))["ood_score"] > model.ood_threshold).mean())
        flags["test_not_copied_images"] = len(fresh)
    return {"auroc": table, "flag_rate": flags}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--test-prepared", type=Path, help="the unlabelled test images, prepared (mammo-eval prepare)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    summary = json.loads((args.run / "summary.json").read_text())
    calibration = json.loads((args.run / "calibration.json").read_text())
    steps = [s for s in summary["preprocess"].split(",") if s]
    samples, _ = prepared.unique(prepared.read(Path(summary["data"]))[0])
    family, folds = read_split(Path(summary["split"]))
    held_out = summary["folds"][0]["fold"]
    held = [s for s in samples if folds[s.name] == held_out]
    y = np.array([class_index(s.label) for s in held])
    fam = np.array([family[s.name] for s in held])
    grey = prepared.load_planes(held)
    model, baseline = Onnx(args.model), Onnx(args.baseline)
    logits = {"model": model.run(grey)["logits"], "baseline": baseline.run(grey)["logits"]}
    report = {
        "held_out": {"fold": held_out, "images": len(held), "families": int(len(np.unique(fam))), "split": summary["split"]},
        "model": model_metrics(model, logits["model"], y, fam),
        "baseline": model_metrics(baseline, logits["baseline"], y, fam),
        "paired_model_minus_baseline": paired((model, logits["model"]), (baseline, logits["baseline"]), y, fam),
        "stability": {"perturbations": list(PERTURBATIONS),
                      "model": stability(model, grey, logits["model"]),
                      "baseline": stability(baseline, grey, logits["baseline"])},
        "ood": ood_report(args.run, summary, held, grey, model, calibration, steps, args.test_prepared),
    }
    out = args.out or args.run / "heldout.json"
    out.write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps({k: v for k, v in report.items() if k != "ood"}, indent=2, default=float))


if __name__ == "__main__":
    main()
