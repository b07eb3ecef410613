"""Out-of-distribution scores from the network's own representation, computed in the exported
graph (`OodScore`), and the comparison that chooses among them.

A score is higher for images less like the training data. The candidates:
- `msp`: 1 - the largest softmax probability (temperature-scaled);
- `energy`: -T * logsumexp(logits / T);
- `maha_penultimate`: Mahalanobis distance of the pooled 1280-d penultimate features to the
  nearest class mean, with one covariance shared by the classes (Ledoit-Wolf shrinkage);
- `maha_<tap>`: squared Mahalanobis distance to one Gaussian (Ledoit-Wolf) of the per-channel
  mean and standard deviation of a layer's output over the image, divided by its dimension (so
  about 1 for an image like the training data): `input` (the grey image's mean, spread and
  cumulative histogram), `stage1`..`stage6` (the network's stages, early to late);
- `maha_early` and `maha_stages`: the sum of those over several taps.
The graph (`OodScore`) computes exactly these Mahalanobis scores; calibrate checks that it does.

Early layers see texture, noise, sharpness and grey curve: what changes between sites and
detectors, and what a classifier learns to ignore. The Gaussians are fitted on the training
images' features; thresholds are chosen on images the network never trained on.
"""

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

from .views import of_views

# Layer of `model.features` whose output each tap pools (None: the input image itself).
TAPS = {"input": None, "stage1": 1, "stage2": 2, "stage3": 3, "stage4": 4, "stage5": 5, "stage6": 6}
COMBINED = {"maha_early": ("input", "stage1", "stage2", "stage3"),
            "maha_stages": ("input", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6")}
METHODS = ("msp", "energy", "maha_penultimate") + tuple(f"maha_{t}" for t in TAPS) + tuple(COMBINED)
# Grey levels at which the input tap reads the image's cumulative histogram.
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def pooled(t: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation over the image: (N, C, H, W) -> (N, 2C)."""
    mean = t.mean(dim=(2, 3))
    spread = (t * t).mean(dim=(2, 3)) - mean * mean
    return torch.cat([mean, spread.clamp(min=0).sqrt()], dim=1)


class InputStats(nn.Module):
    """The grey image's mean, spread and share of pixels below each of `LEVELS`, from the
    normalised input (its channels are equal)."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("levels", torch.tensor([(v - mean) / std for v in LEVELS]).view(1, -1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x[:, :1]
        below = (g.flatten(2) < self.levels).float().mean(dim=2)
        return torch.cat([pooled(g), below], dim=1)


class Tapped(nn.Module):
    """The network, also returning the pooled features of the `wanted` taps (all by default)
    and the penultimate features. With `views` > 1 the logits are the mean over the image's
    first `views` views (`mammo_train.views`), run as one batch; the taps and penultimate
    features stay the image's own, so a detector means the same whatever the views."""

    def __init__(self, net: nn.Module, input_stats: InputStats, wanted: tuple[str, ...] = tuple(TAPS), views: int = 1):
        super().__init__()
        self.net = net
        self.input_stats = input_stats
        self.wanted = wanted
        self.views = views

    def forward(self, x: torch.Tensor):
        n = x.shape[0]
        taps = {"input": self.input_stats(x)} if "input" in self.wanted else {}
        index = {v: k for k, v in TAPS.items() if v is not None and k in self.wanted}
        h = of_views(x, self.views)
        for i, block in enumerate(self.net.features):
            h = block(h)
            if i in index:
                taps[index[i]] = pooled(h[:n])
        penultimate = torch.flatten(self.net.avgpool(h), 1)
        logits = self.net.classifier(penultimate)
        return logits.reshape(self.views, -1, logits.shape[1]).mean(dim=0), taps, penultimate[:n]


@torch.no_grad()
def features(tapped: Tapped, inputs, batch: int = 64) -> dict[str, np.ndarray]:
    """Logits, every tap and the penultimate features of normalised inputs given in batches by
    `inputs(start, end)`."""
    tapped.eval()
    out: dict[str, list] = {}
    start = 0
    while True:
        x = inputs(start, start + batch)
        if x is None or len(x) == 0:
            break
        logits, taps, penultimate = tapped(x)
        for k, v in {"logits": logits, "penultimate": penultimate, **taps}.items():
            out.setdefault(k, []).append(v.numpy())
        start += batch
    return {k: np.concatenate(v) for k, v in out.items()}


class Gaussian:
    """A Gaussian with a Ledoit-Wolf shrunk covariance; distance = squared Mahalanobis."""

    def __init__(self, x: np.ndarray):
        lw = LedoitWolf().fit(x.astype(np.float64))
        self.mean = lw.location_
        # precision = L L^T, so (x - mean)^T precision (x - mean) = |(x - mean) L|^2.
        self.factor = np.linalg.cholesky(lw.precision_)
        self.dim = x.shape[1]

    def distance(self, x: np.ndarray) -> np.ndarray:
        return (((x - self.mean) @ self.factor) ** 2).sum(axis=1)


class ClassGaussians:
    """Class means with one shared Ledoit-Wolf covariance; distance to the nearest mean."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.classes = np.unique(y)
        self.means = np.stack([x[y == c].mean(axis=0) for c in self.classes])
        residuals = x - self.means[np.searchsorted(self.classes, y)]
        lw = LedoitWolf(assume_centered=True).fit(residuals.astype(np.float64))
        self.factor = np.linalg.cholesky(lw.precision_)

    def distance(self, x: np.ndarray) -> np.ndarray:
        return np.min([(((x - m) @ self.factor) ** 2).sum(axis=1) for m in self.means], axis=0)


def logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


class Detectors:
    """Every candidate method, fitted on the training images' features."""

    def __init__(self, train: dict[str, np.ndarray], labels: np.ndarray, temperature: float):
        self.temperature = temperature
        self.taps = {t: Gaussian(train[t]) for t in TAPS}
        self.penultimate = ClassGaussians(train["penultimate"], labels)

    def score(self, method: str, f: dict[str, np.ndarray]) -> np.ndarray:
        z = f["logits"] / self.temperature
        if method == "msp":
            p = np.exp(z - logsumexp(z)[:, None])
            return 1 - p.max(axis=1)
        if method == "energy":
            return -self.temperature * logsumexp(z)
        if method == "maha_penultimate":
            return self.penultimate.distance(f["penultimate"])
        return sum(self.taps[t].distance(f[t]) / self.taps[t].dim for t in taps_of(method))


class OodScore(nn.Module):
    """A combined Mahalanobis score in the graph: the sum over taps of each tap's squared
    distance (`|(f - mean) factor|^2`) divided by its dimension."""

    def __init__(self, parameters: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.taps = tuple(parameters)
        for t, (mean, factor) in parameters.items():
            self.register_buffer(f"mean_{t}", mean.float())
            self.register_buffer(f"factor_{t}", factor.float())

    @classmethod
    def fitted(cls, detectors: Detectors, taps: tuple[str, ...]) -> "OodScore":
        return cls({t: (torch.tensor(detectors.taps[t].mean), torch.tensor(detectors.taps[t].factor)) for t in taps})

    def parameters_by_tap(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {t: (getattr(self, f"mean_{t}"), getattr(self, f"factor_{t}")) for t in self.taps}

    def forward(self, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for t, (mean, factor) in self.parameters_by_tap().items():
            d = ((taps[t] - mean) @ factor).pow(2).sum(dim=1) / mean.numel()
            total = d if total is None else total + d
        return total


def taps_of(method: str) -> tuple[str, ...]:
    """The taps a Mahalanobis method reads; the methods the graph can compute are these."""
    if method in COMBINED:
        return COMBINED[method]
    if method.removeprefix("maha_") in TAPS:
        return (method.removeprefix("maha_"),)
    raise ValueError(f"{method} is not exported in the graph; choose a maha_<tap> or combined method")


class Scored(nn.Module):
    """The exported model: `(logits, ood_score)` from one input."""

    def __init__(self, net: nn.Module, input_stats: InputStats, score: OodScore, views: int = 1):
        super().__init__()
        self.tapped = Tapped(net, input_stats, score.taps, views)
        self.score = score

    def forward(self, x: torch.Tensor):
        logits, taps, _ = self.tapped(x)
        return logits, self.score(taps)
