"""Test-time views: the image's logits averaged over rotations and flips of it, the variations
the set's own augmentation produced (each lesion crop appears rotated and mirrored), so the
network has trained on every view.

`of_views(x, V)` stacks the first V of: the image, its horizontal flip, its vertical flip, both
flips, then the same four of its transpose; V = 1, 2, 4 or 8 (8: every rotation by 90° and
mirror). The exported graph averages the logits of those V views (`ood.Tapped`); the
temperature, threshold and detector threshold are fitted on predictions made the same way.

python -m mammo_train.views runs/xfit-1 runs/xfit-2 runs/xfit-3 runs/xfit-4 [--out F]

compares V = 1, 2, 4, 8 on the cross-fitted runs' validation images (each scored by the
network that did not train on it): pooled 8-class accuracy and malignancy AUC with family
intervals, and the leave-one-fold-out binary ECE, as `mammo_train.crossfit` reports them.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from . import prepared
from .models import build
from .train import normalise

COUNTS = (1, 2, 4, 8)


def of_views(x: torch.Tensor, count: int) -> torch.Tensor:
    """(N, C, H, W) square images -> (count * N, C, H, W): view k of image i at k * N + i."""
    if count not in COUNTS:
        raise ValueError(f"views must be one of {COUNTS}, not {count}")
    if count == 1:
        return x
    flips = [x, x.flip(3), x.flip(2), x.flip((2, 3))]
    every = flips + [v.transpose(2, 3) for v in flips]
    return torch.cat(every[:count])


@torch.no_grad()
def view_logits(run: Path, names: np.ndarray, batch: int = 32) -> np.ndarray:
    """(8, N, 8): the logits of each of the 8 views of the images `names`, by `run`'s network."""
    summary = json.loads((run / "summary.json").read_text())
    by_name = {s.name: s for s in prepared.unique(prepared.read(Path(summary["data"]))[0])[0]}
    grey = prepared.load_planes([by_name[n] for n in names])
    net = build(summary["init"], weights=run / "model.pt").eval()
    out = []
    for i in range(0, len(grey), batch):
        x = normalise(grey[i:i + batch])
        out.append(net(of_views(x, 8)).reshape(8, len(x), -1).numpy())
    return np.concatenate(out, axis=1)


def compare(sources: list[Path]) -> dict:
    """For each V, the cross-fitted numbers of the sources' validation predictions averaged over V views."""
    # Imported here: `calibrate` imports `ood`, which imports this module for `of_views`.
    from .calibrate import kept
    from .crossfit import family_of, numbers

    arrays = [kept(s)["arrays"] for s in sources]
    per_view = [view_logits(s, a["names"]) for s, a in zip(sources, arrays)]
    family = family_of(sources[0])
    result = {}
    for count in COUNTS:
        averaged = [a | {"logits": v[:count].mean(axis=0)} for a, v in zip(arrays, per_view)]
        result[str(count)] = numbers(averaged, family)
    return {"sources": [str(s) for s in sources], "views": result}


def main() -> None:
    parser = argparse.ArgumentParser(description="compare test-time views on cross-fitted runs")
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = json.dumps(compare(args.sources), indent=2)
    if args.out:
        args.out.write_text(result)
    print(result)


if __name__ == "__main__":
    main()
