"""Proxy out-of-distribution sets, built from what is installed here (nothing is downloaded).

No mammogram from another vendor, another hospital or scanned film is available here, so the
out-of-distribution detector is chosen and judged on stand-ins:

- `natural`: the sample photographs and micrographs scikit-image ships in its wheel;
- `ct_mr`: the CT, MR and dose images pydicom ships with its wheel (single-frame greyscale),
  mapped to grey by their own value range, as the server maps a DICOM without a VOI;
- acquisition changes of real mammograms, stronger than anything training's augmentation
  (`mammo_train.augment`) shows the model: `wrong_window` (12-bit data shown as /65535),
  `inverted` polarity, `heavy_blur`, `low_resolution` (down then up sampling), `strong_noise`,
  `grey_curve` (a logarithmic display curve);
- `full_field`: the mammogram upscaled onto a synthetic 2600×4700 16-bit detector with noise
  and windowed, as `tests/fixtures/make_dicom_fixtures.py --full-field` writes it, then
  reduced and cropped like any full-field image.

Every set is made as images a site could send (the mammogram-based ones from the decoded
224-pixel images, changed), then goes through the server's own preprocessing
(`mammo_train.prepared`, `mammo-eval prepare`); each function returns grey planes `(N, H, W)` in
[0, 1] as the model sees them before normalisation.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .prepared import planes_of_arrays, planes_of_files

NON_MAMMOGRAMS = ("natural", "ct_mr")
ACQUISITION = ("wrong_window", "inverted", "heavy_blur", "low_resolution", "strong_noise", "grey_curve")
SETS = NON_MAMMOGRAMS + ACQUISITION + ("full_field",)


def _float_image(g: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(g, np.float32), "F")


def _blur(g: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(g, sigma, mode="nearest").astype(np.float32)


def _low_resolution(g: np.ndarray, factor: int) -> np.ndarray:
    h, w = g.shape
    small = _float_image(g).resize((max(1, w // factor), max(1, h // factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BILINEAR), np.float32)


def wrong_window(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8-bit image stored in 12 bits and shown by a reader that divides by 65535."""
    return np.round(g * 255) * 16 / 65535


def inverted(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 1 - g


def heavy_blur(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _blur(g, 4.0)


def low_resolution(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _low_resolution(g, 6)


def strong_noise(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(g + rng.normal(0, 0.12, g.shape), 0, 1).astype(np.float32)


def grey_curve(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (np.log1p(40 * g) / np.log1p(40)).astype(np.float32)


PERTURBATIONS = {f.__name__: f for f in (wrong_window, inverted, heavy_blur, low_resolution, strong_noise, grey_curve)}


def full_field_grey(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mammogram upscaled to 2300 px on a noisy 2600×4700 detector (values of 16 bits),
    windowed (centre 26000, width 52000) to grey, chest wall on the right."""
    big = np.asarray(_float_image(g).resize((2300, 2300), Image.BILINEAR), np.float32)
    detector = rng.normal(900, 40, (4700, 2600)).astype(np.float32)
    detector[1100:3400, 300:2600] += big[:, ::-1] * 50000
    stored = np.clip(np.round(detector), 0, 65535)
    low = 26000 - 52000 / 2  # the window's lower edge: 0
    return np.clip((stored - low) / 52000, 0, 1).astype(np.float32)


def perturbed(paths: list[Path], name: str, steps: list[str], seed: int = 0) -> np.ndarray:
    """The images of `paths` under the acquisition change `name` (or on a synthetic detector,
    `full_field`), preprocessed."""
    rng = np.random.default_rng(seed)
    change = full_field_grey if name == "full_field" else PERTURBATIONS[name]
    return planes_of_arrays([change(g, rng) for g in planes_of_files(paths, steps=[])], steps)


def _package_dir(module: str) -> Path:
    import importlib
    return Path(importlib.import_module(module).__file__).parent


def natural(steps: list[str]) -> np.ndarray:
    """scikit-image's bundled sample images (photographs, micrographs, text), as grey."""
    folder = _package_dir("skimage.data")
    files = [f for f in sorted(folder.iterdir())
             if f.suffix.lower() in (".png", ".jpg") and min(Image.open(f).size) >= 64]
    return planes_of_files(files, steps)


def ct_mr(steps: list[str]) -> np.ndarray:
    """pydicom's bundled single-frame greyscale images (CT, MR, dose), each mapped by its own
    value range; identical pixel arrays are kept once."""
    import pydicom
    folder = _package_dir("pydicom.data") / "test_files"
    greys, seen = [], set()
    for f in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(f)
            if ds.get("SamplesPerPixel", 1) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
                continue
            a = ds.pixel_array.astype(np.float32)
        except Exception:  # noqa: BLE001 - compressed or broken test files are skipped
            continue
        if a.ndim != 2 or min(a.shape) < 32 or a.max() == a.min():
            continue
        key = (a.shape, float(a.sum()))
        if key in seen:
            continue
        seen.add(key)
        g = (a - a.min()) / (a.max() - a.min())
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            g = 1 - g
        greys.append(g)
    return planes_of_arrays(greys, steps)


PROXY_IMAGES = 200  # mammograms each acquisition set is made from
FULL_FIELD_IMAGES = 60  # of those, for the synthetic detector (slow to make at full size)


def proxy_sets(paths: list[Path], steps: list[str], seed: int):
    """Every set of `SETS` as (name, grey planes), the mammogram-based ones made from
    `PROXY_IMAGES` of `paths` (the source images) drawn with `seed` (`FULL_FIELD_IMAGES` of
    them for full_field)."""
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in rng.choice(len(paths), min(PROXY_IMAGES, len(paths)), replace=False)]
    for name in SETS:
        yield name, proxy_set(name, chosen[:FULL_FIELD_IMAGES] if name == "full_field" else chosen, steps)


def proxy_set(name: str, paths: list[Path], steps: list[str]) -> np.ndarray:
    """Grey planes of the proxy set `name`; `paths` are the mammograms the acquisition sets
    and `full_field` are made from."""
    if name == "natural":
        return natural(steps)
    if name == "ct_mr":
        return ct_mr(steps)
    return perturbed(paths, name, steps)
