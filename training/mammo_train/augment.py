"""Training augmentations that mimic how mammograms differ between sites and machines.

The DPhi set comes from one archive and one vendor; a model trained on it alone learns that
archive's grey curve, sharpness and noise as if they were anatomy. Each batch therefore goes
through random changes of acquisition and display, each applied to a sample with probability
`P` and ranges kept moderate: strong versions of the same changes are what the
out-of-distribution detector must flag (`mammo_train.proxies`), so training must not cover
them.

All functions take and return a batch of grey planes `(B, 1, H, W)` in [0, 1] on the model's
input grid (after the full-field steps), and draw from the given `torch.Generator`.
"""

import math

import torch
import torch.nn.functional as F

P = 0.5
CLEAN_SHARE = 0.5  # of images `acquisition_half` leaves at flips alone
# (low, high) of each parameter's uniform draw.
ZOOM = (0.85, 1.2)  # scale of the image about the centre (> 1 enlarges the breast)
SHIFT = 0.06  # translation, as a share of the side
RESOLUTION = (0.35, 0.9)  # down-sampling factor before up-sampling back (detector pitch, processing)
BLUR_SIGMA = (0.4, 1.5)  # pixels
WINDOW_LOW = (-0.03, 0.06)  # grey mapped to 0 (window centre and width jitter)
WINDOW_HIGH = (0.9, 1.05)  # grey mapped to 1
GAMMA = (0.75, 1.33)  # drawn log-uniformly
BACKGROUND = (0.0, 0.06)  # level the black of the detector is lifted to
NOISE_SIGMA = (0.005, 0.035)  # detector noise, grey levels


def _uniform(n: int, bounds: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _chosen(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < P


def flips(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips, each sample on its own."""
    h = torch.rand(len(g), generator=gen) < 0.5
    v = torch.rand(len(g), generator=gen) < 0.5
    g = torch.where(h[:, None, None, None], g.flip(3), g)
    return torch.where(v[:, None, None, None], g.flip(2), g)


def zoom(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scale about the centre and shift (black fills what comes in), as a different crop of the
    breast or a different magnification would."""
    n = len(g)
    scale = torch.where(_chosen(n, gen), _uniform(n, ZOOM, gen), torch.ones(n))
    shift = _uniform(2 * n, (-SHIFT, SHIFT), gen).view(n, 2) * (scale != 1)[:, None]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = 2 * shift
    grid = F.affine_grid(theta, list(g.shape), align_corners=False)
    return F.grid_sample(g, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def blur(plane: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of one `(1, 1, H, W)` plane, edges replicated."""
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    out = F.conv2d(F.pad(plane, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def resample(plane: torch.Tensor, factor: float) -> torch.Tensor:
    """Down-sample one plane by `factor` (area average) and back up (bilinear): lost detail."""
    h, w = plane.shape[-2:]
    small = F.interpolate(plane, size=(max(8, round(h * factor)), max(8, round(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def sharpness(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Either a Gaussian blur or a loss of resolution (never both), per sample."""
    out = g.clone()
    chosen = _chosen(len(g), gen)
    kind = torch.rand(len(g), generator=gen) < 0.5
    sigma = _uniform(len(g), BLUR_SIGMA, gen)
    factor = _uniform(len(g), RESOLUTION, gen)
    for i in torch.nonzero(chosen).flatten().tolist():
        plane = g[i:i + 1]
        out[i:i + 1] = blur(plane, float(sigma[i])) if kind[i] else resample(plane, float(factor[i]))
    return out


def grey_curve(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Window (centre and width), gamma and background level, each chosen on its own."""
    n = len(g)
    low = torch.where(_chosen(n, gen), _uniform(n, WINDOW_LOW, gen), torch.zeros(n))
    high = torch.where(_chosen(n, gen), _uniform(n, WINDOW_HIGH, gen), torch.ones(n))
    log_gamma = _uniform(n, (math.log(GAMMA[0]), math.log(GAMMA[1])), gen)
    gamma = torch.where(_chosen(n, gen), log_gamma.exp(), torch.ones(n))
    background = torch.where(_chosen(n, gen), _uniform(n, BACKGROUND, gen), torch.zeros(n))
    view = lambda t: t[:, None, None, None]  # noqa: E731
    g = ((g - view(low)) / view(high - low)).clamp(0, 1)
    g = g.pow(view(gamma))
    return view(background) + (1 - view(background)) * g


def noise(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Additive Gaussian detector noise."""
    n = len(g)
    sigma = torch.where(_chosen(n, gen), _uniform(n, NOISE_SIGMA, gen), torch.zeros(n))
    return (g + sigma[:, None, None, None] * torch.randn(g.shape, generator=gen)).clamp(0, 1)


def acquisition(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips, then zoom, sharpness, grey curve and noise, in the order a site's chain would
    apply them (geometry and optics before display and noise)."""
    return noise(grey_curve(sharpness(zoom(flips(g, gen), gen), gen), gen), gen)


def acquisition_half(g: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`acquisition` for a random half of the batch, flips alone for the other: the chain above
    leaves fewer than 1% of images unchanged, so the network seldom sees the archive's own
    acquisition, which is what the held-out images have."""
    changed = torch.rand(len(g), generator=gen) >= CLEAN_SHARE
    out = flips(g, gen)
    if changed.any():
        out[changed] = acquisition(g[changed], gen)
    return out


AUGMENTATIONS = {"none": lambda g, gen: g, "flips": flips, "acquisition": acquisition,
                 "acquisition-half": acquisition_half}
