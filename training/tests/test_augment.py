"""Training augmentations: what share of a batch keeps the archive's own acquisition."""

import torch

from mammo_train.augment import AUGMENTATIONS, CLEAN_SHARE


def flipped_only(out: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per image: is `out` one of the four flips of `g`, untouched otherwise?"""
    flips = [g, g.flip(3), g.flip(2), g.flip(2).flip(3)]
    return torch.tensor([any(torch.equal(out[i], f[i]) for f in flips) for i in range(len(g))])


def batch(n: int = 256) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def test_acquisition_changes_nearly_every_image_and_stays_in_range():
    g = batch()
    out = AUGMENTATIONS["acquisition"](g, torch.Generator().manual_seed(0))
    assert out.shape == g.shape and out.min() >= 0 and out.max() <= 1
    assert flipped_only(out, g).float().mean() < 0.05


def test_acquisition_half_leaves_about_half_the_batch_at_flips_alone():
    g = batch()
    out = AUGMENTATIONS["acquisition-half"](g, torch.Generator().manual_seed(0))
    share = flipped_only(out, g).float().mean().item()
    assert abs(share - CLEAN_SHARE) < 0.1, share
    again = AUGMENTATIONS["acquisition-half"](g, torch.Generator().manual_seed(0))
    assert torch.equal(out, again), "the generator alone decides"
