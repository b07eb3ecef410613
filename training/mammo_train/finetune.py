"""Fine-tune the shipped model on a site's prepared studies, with the protocol of the shipped
model (issue #13): patients split three ways, the held-out patients touched by nothing.

mammo-eval prepare --manifest site.csv --out runs/site/prepared
python -m mammo_train.finetune --prepared runs/site/prepared --manifest site.csv --out runs/site/ft

1. Split by patient (`--held-out-share` of the patients held out, `--inner-share` for the inner
   split, the rest train; or `--split FILE` with `name,role` rows, role train/inner/held_out,
   where a patient on two sides stops the run naming the row). Written to OUT/split.csv.
2. Start from the base model's own weights, rebuilt from its ONNX (`models.from_onnx`), and
   train every layer with the recipe's augmentation (`--augment acquisition-half`), batch norms
   held at their statistics, early stopping on the inner patients' loss; an image with one label
   trains through its marginal (`train.allowed_loss`).
3. On the inner patients: the temperature, the operating threshold (sensitivity 0.90) and the
   out-of-distribution threshold (5% flagged); the detector keeps the base model's method with
   its Gaussian refitted on the site's training images; the base model's test-time views
   (`mammo.views`) are kept.
4. Export ONNX with the full contract (`mammo.trained_on` names the manifest and its SHA-256).
5. `mammo-eval evaluate` of the base and the fine-tuned model on the held-out patients, and
   their paired differences with 95% intervals from resampling patients (OUT/paired.json,
   OUT/paired.md).
"""

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from . import calibrate, export, ood, prepared
from .augment import AUGMENTATIONS
from .models import MEAN, STD, from_onnx
from .report import family_bootstrap
from .train import fit, seed_everything, targets

ROLES = ("train", "inner", "held_out")
ROUNDS = 1000


def patient_split(samples: list[prepared.Prepared], held_out_share: float, inner_share: float,
                  seed: int) -> dict[str, str]:
    """Role by image name, drawn by patient: every image of a patient has one role."""
    for s in samples:
        if not s.patient:
            raise SystemExit(f"{s.name}: the row has no patient key; the split groups by patient")
    patients = sorted({s.patient for s in samples})
    if len(patients) < 3:
        raise SystemExit(f"{len(patients)} patients: at least 3 are needed (train, inner, held out)")
    order = np.random.default_rng(seed).permutation(patients)
    n_held = max(1, round(held_out_share * len(patients)))
    n_inner = max(1, round(inner_share * len(patients)))
    role = {p: "held_out" for p in order[:n_held]}
    role |= {p: "inner" for p in order[n_held:n_held + n_inner]}
    role |= {p: "train" for p in order[n_held + n_inner:]}
    if "train" not in role.values():
        raise SystemExit(f"{len(patients)} patients leave none to train on")
    return {s.name: role[s.patient] for s in samples}


def read_split(path: Path, samples: list[prepared.Prepared]) -> dict[str, str]:
    """A requested split (`name,role`); a patient on two sides stops with the row."""
    patient = {s.name: s.patient for s in samples}
    roles, side = {}, {}
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            name, role = row["name"], row["role"]
            if role not in ROLES:
                raise SystemExit(f"{path}:{line}: unknown role {role!r} (expected {', '.join(ROLES)})")
            if name not in patient:
                raise SystemExit(f"{path}:{line}: {name} is not in the prepared set")
            first = side.setdefault(patient[name], (role, line))
            if first[0] != role:
                raise SystemExit(f"{path}:{line}: patient {patient[name]} is {role} here and {first[0]} on line {first[1]}")
            roles[name] = role
    missing = [n for n in patient if n not in roles]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} images have no role, e.g. {missing[0]}")
    return roles


def features(net: torch.nn.Module, planes: torch.Tensor, views: int = 1) -> dict[str, np.ndarray]:
    tapped = ood.Tapped(net, ood.InputStats(MEAN[0], STD[0]), views=views)
    return ood.features(tapped, calibrate.inputs_of(planes))


def heldout_manifest(samples: list[prepared.Prepared], path: Path) -> Path:
    """The held-out images as a site manifest for `mammo-eval evaluate` (sources by absolute path)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "patient", "study", "laterality", "view", "density", "malignant"])
        for s in samples:
            w.writerow([s.source, s.patient, s.study, s.laterality, s.view,
                        "" if s.density is None else prepared.BIRADS[s.density],
                        "" if s.malignant is None else ("yes" if s.malignant else "no")])
    return path


def evaluate(manifest: Path, model: Path, out: Path) -> dict[str, dict]:
    """`mammo-eval evaluate --manifest`; its predictions by file."""
    env = dict(os.environ)
    env.setdefault("ORT_DYLIB_PATH", str(prepared.REPO / ".ort" / "lib" / "libonnxruntime.so"))
    done = subprocess.run([str(prepared.mammo_eval()), "evaluate", "--manifest", str(manifest), "--model", str(model),
                           "--out", str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mammo-eval evaluate {model.name} failed ({done.returncode}): {done.stdout}{done.stderr}")
    with (out / "predictions.csv").open(newline="") as f:
        return {r["filename"]: r for r in csv.DictReader(f)}


def paired(base: dict, tuned: dict, seed: int = 0) -> dict:
    """Fine-tuned minus base on the same held-out images: malignancy AUC, density accuracy and
    the share not assessable, with 95% intervals from resampling patients."""
    from sklearn.metrics import roc_auc_score

    names = sorted(base)
    patient = np.array([base[n]["patient"] for n in names])
    truth_m = np.array([{"yes": 1.0, "no": 0.0}.get(base[n]["true_malignant"], np.nan) for n in names])
    truth_d = np.array([base[n]["true_density"] for n in names])
    runs = {"base": base, "fine_tuned": tuned}
    score = {k: np.array([float(r[n]["malignancy_probability"]) for n in names]) for k, r in runs.items()}
    density = {k: np.array([r[n]["birads"] for n in names]) for k, r in runs.items()}
    declined = {k: np.array([r[n]["assessment"] == "not_assessable" for n in names]) for k, r in runs.items()}

    def statistics(idx):
        out = {}
        m = idx[~np.isnan(truth_m[idx])]
        both = len(np.unique(truth_m[m])) == 2
        d = idx[truth_d[idx] != ""]
        for k in runs:
            out[("malignancy_auc", k)] = roc_auc_score(truth_m[m], score[k][m]) if both else np.nan
            out[("density_accuracy", k)] = (density[k][d] == truth_d[d]).mean() if len(d) else np.nan
            out[("not_assessable_share", k)] = declined[k][idx].mean()
        return out

    point = statistics(np.arange(len(names)))
    draws = family_bootstrap(statistics, None, patient, ROUNDS, seed)
    table = {}
    for metric in ("malignancy_auc", "density_accuracy", "not_assessable_share"):
        diffs = np.array([d[(metric, "fine_tuned")] - d[(metric, "base")] for d in draws])
        diffs = diffs[~np.isnan(diffs)]
        table[metric] = {
            "base": point[(metric, "base")], "fine_tuned": point[(metric, "fine_tuned")],
            "difference": point[(metric, "fine_tuned")] - point[(metric, "base")],
            "ci95": [float(v) for v in np.percentile(diffs, [2.5, 97.5])] if len(diffs) else None,
        }
    return {"images": len(names), "patients": len(np.unique(patient)), "rounds": ROUNDS, "metrics": table}


def markdown(report: dict) -> str:
    lines = [f"Held-out patients: {report['patients']} ({report['images']} images); fine-tuned minus base, "
             f"95% intervals from {report['rounds']} patient resamples.", "",
             "| metric | base | fine-tuned | difference [95% CI] |", "|---|---|---|---|"]
    for metric, row in report["metrics"].items():
        ci = "n/a" if row["ci95"] is None else f"[{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}]"
        cell = lambda v: "n/a" if np.isnan(v) else f"{v:.3f}"  # noqa: E731
        diff = "n/a" if np.isnan(row["difference"]) else f"{row['difference']:+.3f}"
        lines.append(f"| {metric.replace('_', ' ')} | {cell(row['base'])} | {cell(row['fine_tuned'])} | {diff} {ci} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="mammo-eval prepare --manifest ... --out")
    parser.add_argument("--manifest", type=Path, required=True, help="the site manifest it was prepared from (named, with its SHA-256, in the model)")
    parser.add_argument("--base", type=Path, default=prepared.REPO / "models" / "mammo.onnx")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", type=Path, help="name,role rows (train, inner, held_out) instead of a drawn split")
    parser.add_argument("--held-out-share", type=float, default=0.3)
    parser.add_argument("--inner-share", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="acquisition-half",
                        help="the shipped recipe's: half of each batch keeps the site's own acquisition")
    parser.add_argument("--version", help="default: the base's version + '-site'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    base_props = {p.key: p.value for p in onnx.load(str(args.base)).metadata_props}
    if "mammo.ood_method" not in base_props:
        raise SystemExit(f"{args.base} has no out-of-distribution detector (mammo.ood_method); "
                         "fine-tuning refits the base's detector, so the base needs one")
    samples, description = prepared.read(args.prepared)
    samples, _ = prepared.unique(samples)
    steps = prepared.steps_of(description)
    if ",".join(steps) != base_props.get("mammo.preprocess", ""):
        raise SystemExit(f"{args.prepared} was prepared with steps {steps}, the base model reads "
                         f"{base_props.get('mammo.preprocess')!r}: prepare it with --model {args.base}")
    role = read_split(args.split, samples) if args.split else patient_split(samples, args.held_out_share, args.inner_share, args.seed)
    with (args.out / "split.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "patient", "role"])
        w.writerows([s.name, s.patient, role[s.name]] for s in samples)
    part = {r: [s for s in samples if role[s.name] == r] for r in ROLES}
    print("patients: " + ", ".join(f"{r} {len({s.patient for s in part[r]})} ({len(part[r])} images)" for r in ROLES),
          file=sys.stderr)

    net = from_onnx(args.base)
    train_x, inner_x = prepared.load_planes(part["train"]), prepared.load_planes(part["inner"])
    settings = argparse.Namespace(lr=args.lr, weight_decay=args.weight_decay, epochs=args.epochs, select="best", patience=args.patience,
                                  augment=args.augment, trainable="all", seed=args.seed, resume=False,
                                  freeze_norm=True)
    state = fit(net, train_x, targets(part["train"]), (inner_x, targets(part["inner"])), settings, args.out)
    net.eval()

    views = int(base_props.get("mammo.views", "1"))
    inner_f, train_f = features(net, inner_x, views), features(net, train_x)
    allowed, malignant = calibrate.label_arrays(part["inner"])
    t = calibrate.fit_temperature(inner_f["logits"], allowed)
    known = malignant[~np.isnan(malignant)]
    if len(np.unique(known)) == 2:
        threshold = calibrate.operating_threshold(inner_f["logits"], malignant, t)
    else:  # the inner patients cannot place it: keep the base's
        threshold = float(base_props["mammo.malignancy_threshold"])
    method = base_props["mammo.ood_method"]
    score = ood.OodScore({tap: (torch.tensor(g.mean), torch.tensor(g.factor))
                          for tap in ood.taps_of(method) for g in [ood.Gaussian(train_f[tap])]})
    inner_scores = score({k: torch.from_numpy(inner_f[k]).float() for k in score.taps}).numpy()
    ood_threshold = float(np.quantile(inner_scores, 1 - calibrate.FLAG_RATE))
    calibration = {"temperature": t, "malignancy_threshold": threshold, "ood_method": method, "ood_threshold": ood_threshold,
                   "best_epoch": state.get("best_epoch"), "epochs_run": state["epoch"],
                   "inner_before_temperature": calibrate.calibration_numbers(inner_f["logits"], allowed, malignant, 1.0),
                   "inner_after_temperature": calibrate.calibration_numbers(inner_f["logits"], allowed, malignant, t)}
    (args.out / "calibration.json").write_text(json.dumps(calibration, indent=2, default=float))

    digest = hashlib.sha256(args.manifest.read_bytes()).hexdigest()
    base_digest = hashlib.sha256(args.base.read_bytes()).hexdigest()
    trained_on = (f"fine-tuned from {args.base.name} {base_props.get('mammo.version')} (sha256 {base_digest}) on site manifest "
                  f"{args.manifest.name} (sha256 {digest}): {len(part['train'])} images of "
                  f"{len({s.patient for s in part['train']})} patients; {len({s.patient for s in part['inner']})} inner patients "
                  f"chose the epoch, temperature, threshold and OOD threshold; "
                  f"{len({s.patient for s in part['held_out']})} patients held out")
    version = args.version or f"{base_props.get('mammo.version', 'unknown')}-site"
    model = ood.Scored(net, ood.InputStats(MEAN[0], STD[0]), score, views)
    props = export.contract(threshold, version, base_props["mammo.arch"], trained_on, steps, t, method, ood_threshold, views)
    out_model = args.out / "model.onnx"
    export.export(model, ["logits", "ood_score"], out_model, props)
    worst = export.check(model, ["logits", "ood_score"], out_model, [Path(s.source) for s in part["inner"][:8]], steps)
    out_model.with_name("model.onnx.sha256").write_text(f"{hashlib.sha256(out_model.read_bytes()).hexdigest()}  model.onnx\n")

    held = heldout_manifest(part["held_out"], args.out / "held_out.csv")
    base_eval = evaluate(held, args.base, args.out / "eval-base")
    tuned_eval = evaluate(held, out_model, args.out / "eval-fine-tuned")
    report = paired(base_eval, tuned_eval, args.seed)
    (args.out / "paired.json").write_text(json.dumps(report, indent=2, default=float))
    table = markdown(report)
    (args.out / "paired.md").write_text(table)
    print(f"{out_model}: ONNX Runtime vs torch max |Δ| {worst:.1e}; calibration {args.out / 'calibration.json'}")
    print(table)


if __name__ == "__main__":
    main()
