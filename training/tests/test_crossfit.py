"""`crossfit --against`: two recipes' cross-fitted predictions on the same images, compared
image by image with the same families resampled for both."""

import numpy as np
import pytest

from mammo_train.crossfit import versus


def source(names, logits, labels):
    """A kept-measurements dict as `calibrate` writes it: every row with both labels."""
    allowed = np.eye(8, dtype=bool)[labels]
    return {"names": np.array(names), "logits": np.asarray(logits, dtype=np.float32),
            "allowed": allowed, "malignant": (np.asarray(labels) % 2).astype(float)}


def test_paired_difference_matches_images_by_name_and_resamples_families():
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(8), 10)  # 80 images, 4 families of 20 with both classes
    names = [f"img{i}" for i in range(80)]
    family = {n: i // 20 for i, n in enumerate(names)}
    right = np.eye(8)[labels] * 4 + rng.normal(0, 0.1, (80, 8))
    wrong = right.copy()
    wrong[:20] = np.roll(right[:20], 1, axis=1)  # the first family answered wrong
    ours = [source(names[:40], right[:40], labels[:40]), source(names[40:], right[40:], labels[40:])]
    order = rng.permutation(80)  # the other recipe's runs list the images in another order
    theirs = [source([names[i] for i in order], wrong[order], labels[order])]
    result = versus(ours, theirs, family)
    assert result["accuracy"]["difference"] == pytest.approx(20 / 80)
    lo, hi = result["accuracy"]["ci95"]
    assert lo == 0 and 20 / 80 < hi <= 1, "a resample holds the wrong family never (0) or up to 4 times"
    assert result["malignancy_auc"]["difference"] > 0
    assert versus(ours, ours, family)["accuracy"] == {"difference": 0.0, "ci95": [0.0, 0.0]}
    with pytest.raises(SystemExit, match="same images"):
        versus(ours, ours[:1], family)
