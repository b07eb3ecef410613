"""Training with grouped cross-validation, early stopping and resumable checkpoints.

python -m mammo_train.train --data DATASET --split split.csv --init lite0 --trainable last \
       --fold all --out runs/lite0-last

--fold K trains on the other folds and validates on fold K; --fold all does every fold and
writes out-of-fold predictions (oof.csv) for the report; --fold none trains on every family
(the shipped model) for --epochs; --leaky replaces the family folds by a random 80/20 file split
(to show how much a leaky split flatters the model).

Layers below --trainable are frozen; their outputs are computed once per image and cached
(runs/cache/), so `head` and `last` fine-tuning fit a 2-core CPU. The data set already holds
~27 rotations/flips of every source image, so cached features lose no augmentation there;
`all` (full fine-tuning) adds random flips on the fly.
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

from .data import dedupe, read_dataset
from .families import read_split
from .labels import CLASSES, class_index
from .models import INITS, MEAN, STD, build, split_at
from .preprocess import parse_steps, to_input

SIZE = 224


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_inputs(paths: list[Path], steps: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.stack([to_input(p, SIZE, MEAN, STD, steps) for p in paths]))


@torch.no_grad()
def prefix_outputs(prefix: nn.Module, paths: list[Path], steps: list[str], cache: Path | None, batch: int = 64) -> torch.Tensor:
    """Frozen-prefix outputs for every image (cached on disk by prefix and file list)."""
    if cache is not None and cache.exists():
        stored = torch.load(cache)
        if stored["names"] == [p.name for p in paths]:
            return stored["x"]
    prefix.eval()
    outs, started = [], time.time()
    for i in range(0, len(paths), batch):
        outs.append(prefix(load_inputs(paths[i:i + batch], steps)))
        done = min(i + batch, len(paths))
        rate = done / (time.time() - started)
        print(f"\r  features {done}/{len(paths)} ({rate:.0f} img/s, ETA {(len(paths) - done) / rate:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    x = torch.cat(outs)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"names": [p.name for p in paths], "x": x}, cache)
    return x


def class_weights(y: torch.Tensor) -> torch.Tensor:
    """Balanced weights n / (k * n_c) over the classes present; absent classes weigh 0."""
    counts = torch.bincount(y, minlength=len(CLASSES)).float()
    present = counts > 0
    w = torch.zeros(len(CLASSES))
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def flip(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal / vertical flips of a batch of images (full fine-tuning only)."""
    if random.random() < 0.5:
        x = x.flip(3)
    if random.random() < 0.5:
        x = x.flip(2)
    return x


def run_epoch(model, x, y, weights, optimizer=None, batch=32, augment=False):
    """One pass; trains when an optimizer is given. `x`, `y` and `weights` live on the model's
    device; on a GPU the pass runs in bfloat16 autocast with channels-last tensors (~2x faster;
    the CPU path stays fp32). Returns (mean loss, probabilities on the CPU)."""
    training = optimizer is not None
    gpu = x.device.type == "cuda"
    model.train(training)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    order = (torch.randperm(len(x)) if training else torch.arange(len(x))).to(x.device)
    total, probs = 0.0, torch.zeros(len(x), len(CLASSES))
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        xb = x[idx]
        if augment and training:
            xb = flip(xb)
        if gpu:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(training), torch.autocast(x.device.type, torch.bfloat16, enabled=gpu):
            logits = model(xb)
            loss = loss_fn(logits.float(), y[idx])
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
    cross-entropy, with early stopping on the (unweighted) grouped-validation loss; resumable
    from out/checkpoint.pt. Returns the final training state."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    weights = class_weights(ys.cpu()).to(ys.device)
    ckpt = out / "checkpoint.pt"
    state = {"epoch": 0, "history": [], "best_loss": math.inf, "best_state": None, "since_best": 0}
    if args.resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        print(f"  resumed at epoch {state['epoch']}", file=sys.stderr)
    while state["epoch"] < args.epochs and state["since_best"] < args.patience:
        started = time.time()
        train_loss, _ = run_epoch(model, xs, ys, weights, optimizer, augment=args.trainable == "all")
        scheduler.step()
        row = {"epoch": state["epoch"] + 1, "train_loss": train_loss, "seconds": 0.0}
        if val is not None:
            val_loss, probs = run_epoch(model, val[0], val[1], None)
            row["val_loss"] = val_loss
            row["val_accuracy"] = (probs.argmax(1) == val[1].cpu()).float().mean().item()
            improved = val_loss < state["best_loss"]
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
                    "scheduler": scheduler.state_dict(), "state": state}, ckpt)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", required=True, type=Path, help="split.csv from mammo_train.families")
    parser.add_argument("--init", choices=INITS, default="b0-lite0")
    parser.add_argument("--weights", type=Path, help="start from this local checkpoint (state dict)")
    parser.add_argument("--trainable", choices=["head", "last", "all"], default="last")
    parser.add_argument("--fold", default="all", help="K, all, or none (train on everything)")
    parser.add_argument("--leaky", action="store_true", help="random 80/20 file split instead of family folds")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 autocast and channels-last there; the CPU runs fp32)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--preprocess", default="", type=parse_steps,
                        help="full-field steps applied before the resize, comma-separated "
                             "(crop_breast,orient_left,pad_square); export must be given the same")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    samples, _ = dedupe(read_dataset(args.data))
    family, fold = read_split(args.split)
    if args.leaky:
        rng = np.random.default_rng(args.seed)
        fold = {s.name: int(rng.random() < 0.2) for s in samples}
        folds = [1]
    elif args.fold == "all":
        folds = sorted(set(fold.values()))
    elif args.fold == "none":
        folds = [None]
    else:
        folds = [int(args.fold)]
    y = torch.tensor([class_index(s.label) for s in samples])
    paths = [s.path for s in samples]
    args.out.mkdir(parents=True, exist_ok=True)
    cache_root = args.out.parent / "cache"
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    prefix, _ = split_at(build(args.init, weights=args.weights), args.trainable)
    if args.trainable == "all":
        x = load_inputs(paths, args.preprocess)
    else:
        tag = f"{args.init}-{args.trainable}" + ("" if args.weights is None else f"-{args.weights.stem}")
        tag += "".join(f"-{s}" for s in args.preprocess)
        x = prefix_outputs(prefix, paths, args.preprocess, cache_root / f"{tag}.pt")
    x, y = x.to(device), y.to(device)

    oof, summary, started = {}, [], time.time()
    for k in folds:
        seed_everything(args.seed)
        model = build(args.init, weights=args.weights).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        _, suffix = split_at(model, args.trainable)
        train_idx = [i for i, s in enumerate(samples) if k is None or fold[s.name] != k]
        val_idx = [i for i, s in enumerate(samples) if k is not None and fold[s.name] == k]
        print(f"fold {k}: {len(train_idx)} train / {len(val_idx)} validation images", file=sys.stderr)
        out = args.out / (f"fold{k}" if k is not None else "final")
        out.mkdir(parents=True, exist_ok=True)
        val = (x[val_idx], y[val_idx]) if val_idx else None
        state = fit(suffix, x[train_idx], y[train_idx], val, args, out)
        summary.append({"fold": k, "best_epoch": state.get("best_epoch"), "best_val_loss": state["best_loss"],
                        "epochs_run": state["epoch"], "seconds": sum(h["seconds"] for h in state["history"])})
        if val is not None:
            _, probs = run_epoch(suffix, val[0], val[1], None)
            for i, p in zip(val_idx, probs.tolist()):
                oof[samples[i].name] = (k, p)
        # The whole network at its best epoch (the frozen prefix shares modules with `model`).
        on_cpu = {name: v.cpu() for name, v in model.state_dict().items()}
        torch.save(on_cpu, out / "model.pt")
        if k is None:
            torch.save(on_cpu, args.out / "model.pt")
    (args.out / "summary.json").write_text(json.dumps(
        {"init": args.init, "trainable": args.trainable, "leaky": args.leaky,
         "preprocess": ",".join(args.preprocess), "folds": summary,
         "total_seconds": time.time() - started}, indent=2))
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
