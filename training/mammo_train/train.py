"""Training with grouped folds, early stopping and resumable checkpoints.

mammo-eval prepare --data DATASET --out runs/prepared/dphi      # the server's preprocessing
python -m mammo_train.train --data runs/prepared/dphi --out runs/v2.3.0-inner          # the shipped model's recipe: an inner run,
python -m mammo_train.train --data runs/prepared/dphi --out runs/v2.3.0 --refit  # then its refit

--data is a prepared set (`mammo-eval prepare`): training reads the images exactly as the server
feeds them to the model, with the full-field steps prepare applied (recorded in the run).

The defaults are the shipped model's protocol: fold 0 of splits/split.csv is the reported fold
and is not even loaded; half of fold 1's families (drawn per class, --inner-share) are the inner
validation set (reported each epoch; temperature, threshold and out-of-distribution fit in
`mammo_train.calibrate`); the other half and folds 2-4 train for --epochs 10, and the last
epoch's weights are kept (--select last; --select best keeps the epoch of lowest validation loss
and stops after --patience epochs without a better one). --refit then trains the same recipe on
the validation families too, validating on nothing; it is calibrated from the first run
(`mammo_train.calibrate REFIT --from RUN`) and exported (`mammo_train.export --run REFIT`).

--fold K --inner none trains on every fold but K and validates on fold K; --fold all does that
for every fold and writes out-of-fold predictions (oof.csv) for the report; --fold none trains on
every family for --epochs; --leaky replaces the family folds by a random 80/20 file split (to
show how much a leaky split flatters the model).

Layers below --trainable are frozen; their outputs are computed once per image and cached
(runs/cache/), so `head` and `last` fine-tuning fit a 2-core CPU. The data set already holds
~27 rotations/flips of every source image, so cached features lose no augmentation there;
`all` (full fine-tuning) augments on the fly (--augment, mammo_train.augment).
"""

import argparse
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import prepared
from .augment import AUGMENTATIONS
from .families import read_split, validation_families
from .labels import CLASSES
from .models import INITS, MEAN, STD, build, split_at

SIZE = 224


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def normalise(g: torch.Tensor) -> torch.Tensor:
    """Grey planes (B, 1, H, W) -> the model's normalised 3-channel input (equal channels)."""
    mean = torch.tensor(MEAN, device=g.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=g.device).view(1, 3, 1, 1)
    return (g.expand(-1, 3, -1, -1) - mean) / std


@torch.no_grad()
def prefix_outputs(prefix: nn.Module, grey: torch.Tensor, names: list[str], cache: Path | None, batch: int = 64) -> torch.Tensor:
    """Frozen-prefix outputs for every image (cached on disk by prefix and file list)."""
    if cache is not None and cache.exists():
        stored = torch.load(cache)
        if stored["names"] == names:
            return stored["x"]
    prefix.eval()
    outs, started = [], time.time()
    for i in range(0, len(grey), batch):
        outs.append(prefix(normalise(grey[i:i + batch])))
        done = min(i + batch, len(grey))
        rate = done / (time.time() - started)
        print(f"\r  features {done}/{len(grey)} ({rate:.0f} img/s, ETA {(len(grey) - done) / rate:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    x = torch.cat(outs)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"names": names, "x": x}, cache)
    return x


def targets(samples: list[prepared.Prepared]) -> torch.Tensor:
    """(N, 8) the classes each image's labels allow: one for a fully labelled image, the two of
    its density or the four of its pathology for an image with one label."""
    return torch.from_numpy(np.stack([s.allowed() for s in samples]))


def class_weights(allowed: torch.Tensor) -> torch.Tensor:
    """Balanced weights n / (k * n_c) over the classes present, an image with one label counted
    as an equal share of each class it allows; absent classes weigh 0."""
    a = allowed.float()
    counts = (a / a.sum(1, keepdim=True)).sum(0)
    present = counts > 0
    w = torch.zeros(len(CLASSES))
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def allowed_loss(logits: torch.Tensor, allowed: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """-log P(the classes the labels allow): cross-entropy for a fully labelled image, the
    density or malignancy marginal's for one with a single label. Weighted as
    `nn.CrossEntropyLoss(weight=...)` weighs (an image's weight: the mean over its classes)."""
    log_p = logits.float().log_softmax(1)
    nll = -torch.logsumexp(log_p.masked_fill(~allowed, float("-inf")), dim=1)
    if weights is None:
        return nll.mean()
    w = (allowed.float() * weights).sum(1) / allowed.float().sum(1)
    return (w * nll).sum() / w.sum()


def accuracy(probs: torch.Tensor, allowed: torch.Tensor) -> float:
    """Share of images whose most probable class is one their labels allow."""
    return allowed[torch.arange(len(probs)), probs.argmax(1)].float().mean().item()


def run_epoch(model, x, y, weights, optimizer=None, batch=32, augment=None, gen=None, freeze_norm=False):
    """One pass; trains when an optimizer is given. `x` holds grey planes (full fine-tuning,
    augmented by `augment` when training, then normalised) or cached prefix outputs; `y` the
    classes each image's labels allow (`targets`); `x`, `y` and `weights` live on the model's
    device. `freeze_norm` keeps batch norms at their running statistics (fine-tuning on a few
    images). Images go in channels-last, as `fit` lays out the model (faster on CPU and GPU
    alike: docs/benchmarks.md, "Training step on the CPU"); on a GPU the pass also runs in
    bfloat16 autocast (the CPU path stays fp32, where bfloat16 gained nothing). Returns (mean
    loss, probabilities on the CPU)."""
    training = optimizer is not None
    gpu = x.device.type == "cuda"
    planes = x.shape[1] == 1
    model.train(training)
    if training and freeze_norm:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    order = (torch.randperm(len(x)) if training else torch.arange(len(x))).to(x.device)
    total, probs = 0.0, torch.zeros(len(x), len(CLASSES))
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        xb = x[idx]
        if planes:
            if training and augment is not None:
                xb = augment(xb.cpu(), gen).to(x.device)
            xb = normalise(xb)
        if xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(training), torch.autocast(x.device.type, torch.bfloat16, enabled=gpu):
            logits = model(xb)
            loss = allowed_loss(logits, y[idx], weights)
        if training:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        total += loss.item() * len(idx)
        probs[idx.cpu()] = logits.detach().softmax(1).float().cpu()
        print(f"\r  {'train' if training else 'val'} {min(i + batch, len(x))}/{len(x)}", end="", file=sys.stderr)
    print("\r", end="", file=sys.stderr)
    return total / len(x), probs


def fit(model, xs, ys, val, args, out: Path):
    """Trains `model` (the trainable suffix) with AdamW + cosine schedule on class-weighted
    cross-entropy; resumable from out/checkpoint.pt (the augmentation generator's state
    included). `args.select` says which epoch's weights it ends with: `best`, the lowest
    (unweighted) grouped-validation loss, stopping after `args.patience` epochs without a new
    best; or `last`, the end of the schedule, the validation only reported. Returns the final
    training state."""
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    weights = class_weights(ys.cpu()).to(ys.device)
    freeze_norm = args.freeze_norm
    augment = AUGMENTATIONS[args.augment] if args.trainable == "all" else None
    gen = torch.Generator().manual_seed(args.seed)
    ckpt = out / "checkpoint.pt"
    state = {"epoch": 0, "history": [], "best_loss": math.inf, "best_state": None, "since_best": 0}
    if args.resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        if "generator" in saved:
            gen.set_state(saved["generator"])
        print(f"  resumed at epoch {state['epoch']}", file=sys.stderr)
    patience = args.patience if args.select == "best" else math.inf
    while state["epoch"] < args.epochs and state["since_best"] < patience:
        started = time.time()
        train_loss, _ = run_epoch(model, xs, ys, weights, optimizer, augment=augment, gen=gen,
                                  freeze_norm=freeze_norm)
        scheduler.step()
        row = {"epoch": state["epoch"] + 1, "train_loss": train_loss, "seconds": 0.0}
        if val is not None:
            val_loss, probs = run_epoch(model, val[0], val[1], None)
            row["val_loss"] = val_loss
            row["val_accuracy"] = accuracy(probs, val[1].cpu())
            improved = val_loss < state["best_loss"] or args.select == "last"
        else:
            improved = True
            val_loss = train_loss
        if improved:
            state["best_loss"] = val_loss
            state["best_state"] = {k: v.clone() for k, v in model.state_dict().items()}
            state["best_epoch"] = row["epoch"]
            state["since_best"] = 0
        else:
            state["since_best"] += 1
        row["seconds"] = time.time() - started
        state["history"].append(row)
        state["epoch"] += 1
        print("  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), file=sys.stderr)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "state": state, "generator": gen.get_state()}, ckpt)
    model.load_state_dict(state["best_state"])
    plot_curves(state["history"], out / "curves.png")
    return state


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(epochs, [h["train_loss"] for h in history], label="train")
    if "val_loss" in history[0]:
        ax[0].plot(epochs, [h["val_loss"] for h in history], label="grouped validation")
        ax[1].plot(epochs, [h["val_accuracy"] for h in history])
    ax[0].set(xlabel="epoch", ylabel="weighted cross-entropy")
    ax[0].legend()
    ax[1].set(xlabel="epoch", ylabel="8-class accuracy (validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_fold(text: str) -> int | str | None:
    return None if text == "none" else text if text == "all" else int(text)


def plan(fold: dict[str, int], args) -> list[tuple[int | None, int | None]]:
    """(held-out fold, validation fold) for each model to train. With an inner fold the held-out
    fold is neither trained nor validated on; without one the held-out fold validates."""
    if args.refit and (args.leaky or args.fold in ("all", None) or args.inner is None):
        raise SystemExit("--refit trains on an inner split's families: it needs one --fold K and --inner")
    if args.leaky:
        return [(1, 1)]
    if args.fold == "all":
        return [(k, k) for k in sorted(set(fold.values()))]
    if args.fold is None:
        return [(None, None)]
    if args.inner is not None and args.inner == args.fold:
        raise SystemExit(f"--inner {args.inner} is the held-out fold itself")
    return [(args.fold, args.fold if args.inner is None else args.inner)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a prepared set (mammo-eval prepare --out)")
    parser.add_argument("--split", type=Path, default=Path(__file__).parents[1] / "splits" / "split.csv",
                        help="split.csv from mammo_train.families")
    parser.add_argument("--init", choices=INITS, default="lite0")
    parser.add_argument("--weights", type=Path, help="start from this local checkpoint (state dict)")
    parser.add_argument("--trainable", choices=["head", "last", "all"], default="all")
    parser.add_argument("--fold", default=0, type=parse_fold,
                        help="held-out fold K (never trained on), all (cross-validation), or none (train on everything)")
    parser.add_argument("--inner", default=1, type=parse_fold,
                        help="the validation fold for --fold K (none: validate on K itself)")
    parser.add_argument("--inner-share", type=float, default=0.5,
                        help="share of the --inner fold's families that validate (per class); the rest train")
    parser.add_argument("--refit", action="store_true",
                        help="train on the inner validation families too, validating on nothing (with --select last; "
                             "calibrate --from a run of the same recipe that kept them out)")
    parser.add_argument("--leaky", action="store_true", help="random 80/20 file split instead of family folds")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--select", choices=["best", "last"], default="last",
                        help="keep the epoch of lowest validation loss (stopping after --patience epochs without one) "
                             "or the schedule's last")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="acquisition-half",
                        help="on-the-fly augmentation of full fine-tuning (mammo_train.augment)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 autocast and channels-last there; the CPU runs fp32)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--freeze-norm", action="store_true",
                        help="keep batch norms at their running statistics while training (small batches)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    samples, description = prepared.read(args.data)
    samples, _ = prepared.unique(samples)
    steps = prepared.steps_of(description)
    family, fold = read_split(args.split)
    if args.leaky:
        rng = np.random.default_rng(args.seed)
        fold = {s.name: int(rng.random() < 0.2) for s in samples}
    runs = plan(fold, args)
    # Images of a held-out fold that nothing validates on are not even read.
    untouched = {k for k, v in runs if k is not None and k != v} if len(runs) == 1 else set()
    samples = [s for s in samples if fold[s.name] not in untouched]
    y = targets(samples)
    names = [s.name for s in samples]
    args.out.mkdir(parents=True, exist_ok=True)
    cache_root = args.out.parent / "cache"
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    grey = prepared.load_planes(samples)
    if args.trainable == "all":
        x = grey
    else:
        prefix, _ = split_at(build(args.init, weights=args.weights), args.trainable)
        tag = f"{args.init}-{args.trainable}" + ("" if args.weights is None else f"-{args.weights.stem}")
        tag += "".join(f"-{s}" for s in steps)
        x = prefix_outputs(prefix, grey, names, cache_root / f"{tag}.pt")
    x, y = x.to(device), y.to(device)

    oof, summary, started = {}, [], time.time()
    for held_out, validation in runs:
        seed_everything(args.seed)
        model = build(args.init, weights=args.weights).to(device)
        _, suffix = split_at(model, args.trainable)
        if validation is not None and validation != held_out:  # an inner split of the training folds
            validating = (set() if args.refit else
                          validation_families(samples, family, fold, validation, args.inner_share, args.seed))
            val_idx = [i for i, s in enumerate(samples) if family[s.name] in validating]
            train_idx = [i for i, s in enumerate(samples)
                         if fold[s.name] != held_out and family[s.name] not in validating]
        else:  # the held-out fold validates (cross-validation, --leaky), or nothing does
            val_idx = [i for i, s in enumerate(samples) if validation is not None and fold[s.name] == validation]
            train_idx = [i for i, s in enumerate(samples) if held_out is None or fold[s.name] != held_out]
            validating = {family[samples[i].name] for i in val_idx}
        print(f"held-out fold {held_out}, validation fold {validation}: "
              f"{len(train_idx)} train / {len(val_idx)} validation images", file=sys.stderr)
        out = args.out / (f"fold{held_out}" if held_out is not None else "final")
        out.mkdir(parents=True, exist_ok=True)
        val = (x[val_idx], y[val_idx]) if val_idx else None
        state = fit(suffix, x[train_idx], y[train_idx], val, args, out)
        summary.append({"fold": held_out, "validation_fold": validation, "validation_families": sorted(validating),
                        "best_epoch": state.get("best_epoch"),
                        "best_val_loss": state["best_loss"], "epochs_run": state["epoch"],
                        "train_images": len(train_idx), "validation_images": len(val_idx),
                        "seconds": sum(h["seconds"] for h in state["history"])})
        if val is not None and validation == held_out:
            _, probs = run_epoch(suffix, val[0], val[1], None)
            for i, p in zip(val_idx, probs.tolist()):
                oof[samples[i].name] = (held_out, p)
        # The whole network at its best epoch (the frozen prefix shares modules with `model`).
        on_cpu = {name: v.cpu() for name, v in model.state_dict().items()}
        torch.save(on_cpu, out / "model.pt")
        if len(runs) == 1:
            torch.save(on_cpu, args.out / "model.pt")
    (args.out / "summary.json").write_text(json.dumps(
        {"init": args.init, "trainable": args.trainable, "leaky": args.leaky, "augment": args.augment,
         "preprocess": ",".join(steps), "data": str(args.data.resolve()), "split": str(args.split.resolve()),
         "lr": args.lr, "inner_share": args.inner_share, "refit": args.refit, "epochs": args.epochs, "select": args.select, "patience": args.patience, "seed": args.seed, "device": args.device,
         "folds": summary, "total_seconds": time.time() - started}, indent=2))
    if oof:
        with open(args.out / "oof.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "family", "fold", "label"] + CLASSES)
            for s in samples:
                if s.name in oof:
                    k, p = oof[s.name]
                    w.writerow([s.name, family[s.name], k, s.label] + [f"{v:.6f}" for v in p])
    print(f"done in {time.time() - started:.0f} s; see {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
