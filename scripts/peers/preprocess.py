"""The peers' own preprocessing (a Python service wrapping the model has to write one): grey in
[0, 1], reduction of large images by block means, the model's full-field steps
(`mammo.preprocess`), bilinear resize, 3 channels, normalisation, as the model contract
(docs/model_contract.md) describes them. It exists so that the Python peers of
`scripts/bench_peers.sh` do the same work per image as mammo-serve; nothing scores its output,
and training reads images prepared by the server's own code (`mammo-eval prepare`).
"""

from pathlib import Path

import numpy as np
from PIL import Image

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
STEPS = ("crop_breast", "orient_left", "pad_square")
TISSUE = np.float32(0.1)
MIN_RUN_SHARE = 50  # a row/column is breast when tissue count * 50 > its length
MAX_REDUCTION = 128


def grey01(path: Path) -> np.ndarray:
    """H×W float32 in [0, 1]."""
    image = Image.open(path)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image, np.float32) / 65535.0
    a = np.asarray(image, np.float32) / 255.0
    if a.ndim == 2:
        return a
    if a.shape[2] in (1, 2):  # L or LA
        return a[:, :, 0]
    return a[:, :, :3] @ LUMA


def parse_steps(text: str) -> list[str]:
    """`crop_breast,orient_left` → the steps in pipeline order; unknown names are an error."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown preprocessing step(s) {unknown}; known: {', '.join(STEPS)}")
    return [s for s in STEPS if s in names]


def reduction(h: int, w: int, size: int) -> int:
    """The block size k a h×w image is reduced by for a size×size model input (1: not at all)."""
    return min(max(min(h, w) // (2 * size), 1), MAX_REDUCTION)


def reduce(g: np.ndarray, size: int) -> np.ndarray:
    k = reduction(*g.shape, size)
    if k == 1:
        return g
    h, w = g.shape[0] // k, g.shape[1] // k
    blocks = g[:h * k, :w * k].astype(np.float64).reshape(h, k, w, k)
    return (blocks.sum(axis=(1, 3)) / (k * k)).astype(np.float32)


def longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    """[start, end) of the longest run of True (the first one on ties), None when there is none."""
    best, start = None, None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def crop_breast(g: np.ndarray) -> np.ndarray:
    tissue = g > TISSUE
    h, w = g.shape
    rows = longest_run(tissue.sum(1) * MIN_RUN_SHARE > w)
    cols = longest_run(tissue.sum(0) * MIN_RUN_SHARE > h)
    if rows is None or cols is None:
        return g
    return g[rows[0]:rows[1], cols[0]:cols[1]]


def chest_wall_on_right(g: np.ndarray, laterality: str | None = None) -> bool:
    if laterality in ("R", "L"):
        return laterality == "R"
    half = g.shape[1] // 2
    tissue = g > TISSUE
    return bool(tissue[:, g.shape[1] - half:].sum() > tissue[:, :half].sum())


def fit_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) of an h×w image scaled so that its longer side is `size` (rounded half up)."""
    side = max(h, w)
    return max(1, (h * size + side // 2) // side), max(1, (w * size + side // 2) // side)


def resize(g: np.ndarray, height: int, width: int) -> np.ndarray:
    if g.shape == (height, width):
        return g
    return np.asarray(Image.fromarray(np.ascontiguousarray(g), "F").resize((width, height), Image.BILINEAR), np.float32)


def model_grey(g: np.ndarray, size: int, steps: list[str], laterality: str | None = None) -> np.ndarray:
    """The size×size grey plane the model sees from an image already reduced: crop, scale, flip
    and place on the square.
    Scaling the (cropped) image to fit and then padding is pad-then-resize without resizing the
    padding; flipping after the resize equals flipping before it (the filter is symmetric)."""
    if "crop_breast" in steps:
        g = crop_breast(g)
    flip = "orient_left" in steps and chest_wall_on_right(g, laterality)
    h, w = fit_size(*g.shape, size) if "pad_square" in steps else (size, size)
    small = resize(g, h, w)
    if flip:
        small = small[:, ::-1]
    if (h, w) == (size, size):
        return np.ascontiguousarray(small, np.float32)
    canvas = np.zeros((size, size), np.float32)
    top = (size - h) // 2
    canvas[top:top + h, :w] = small
    return canvas


def read_grey(path: Path, size: int) -> np.ndarray:
    """The image's grey plane in [0, 1], reduced for a size×size model input."""
    return reduce(grey01(path), size)


def to_input(path: Path, size: int, mean: list[float], std: list[float], steps: list[str] = (),
             laterality: str | None = None) -> np.ndarray:
    """3×size×size float32 tensor."""
    g = model_grey(read_grey(path, size), size, list(steps), laterality)
    return np.stack([(g - m) / s for m, s in zip(mean, std)]).astype(np.float32)
