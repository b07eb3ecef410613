"""Prepared images: what training reads. `mammo-eval prepare` (the server's own preprocessing:
decoding, grey mapping, reduction, the full-field steps and the resize, before normalisation)
writes each image as a 16-bit grey PNG with a `manifest.csv` and a `prepare.json`; this module
reads them, and runs `mammo-eval prepare` for images made here (proxy sets, perturbations), so
that Python never re-implements the server's preprocessing. The only preprocessing Python does
is augmentation (`mammo_train.augment`).

`manifest.csv` columns (src/eval/prepared.rs): path, name, source, sha256, label, density
(BI-RADS A-D), malignant (yes/no), patient, study, laterality, view, manufacturer.
"""

import csv
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .labels import CLASSES

REPO = Path(__file__).resolve().parents[2]
BIRADS = "ABCD"


def mammo_eval() -> Path:
    """The `mammo-eval` binary: $MAMMO_EVAL, else the newer of the release and debug builds
    (an older one may predate the prepared-set format)."""
    if "MAMMO_EVAL" in os.environ:
        return Path(os.environ["MAMMO_EVAL"])
    built = [b for b in (REPO / "target" / p / "mammo-eval" for p in ("release", "debug")) if b.is_file()]
    if not built:
        raise SystemExit("mammo-eval is not built: run `cargo build --release --bin mammo-eval` in the repository root")
    return max(built, key=lambda b: b.stat().st_mtime)


def run_prepare(source: list[str], out: Path, steps: list[str] | None = None, model: Path | None = None) -> dict:
    """`mammo-eval prepare SOURCE --out OUT` (SOURCE: `--data X` or `--manifest X`), with the
    model's full-field steps unless `steps` is given. Returns prepare.json; a run with unreadable
    images (exit 2) still returns, their names listed there."""
    env = dict(os.environ)
    env.setdefault("ORT_DYLIB_PATH", str(REPO / ".ort" / "lib" / "libonnxruntime.so"))
    command = [str(mammo_eval()), "prepare", *source, "--out", str(out),
               "--model", str(model or REPO / "models" / "mammo.onnx")]
    if steps is not None:
        command += ["--steps", ",".join(steps) or "none"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 2):
        raise SystemExit(f"mammo-eval prepare failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads((out / "prepare.json").read_text())


@dataclass(frozen=True)
class Prepared:
    """One prepared image and what its set says of it."""
    plane: Path
    name: str
    source: str
    sha256: str
    density: int | None  # 0 (A) .. 3 (D)
    malignant: bool | None
    patient: str = ""
    study: str = ""
    laterality: str = ""
    view: str = ""
    manufacturer: str = ""

    @property
    def label(self) -> str | None:
        """The class, when both labels are known."""
        if self.density is None or self.malignant is None:
            return None
        return CLASSES[2 * self.density + int(self.malignant)]

    def allowed(self) -> np.ndarray:
        """The classes the labels allow (a row with one label trains through its marginal)."""
        mask = np.ones(len(CLASSES), bool)
        if self.density is not None:
            mask &= np.repeat(np.arange(4) == self.density, 2)
        if self.malignant is not None:
            mask &= np.tile([not self.malignant, self.malignant], 4)
        return mask


def read(folder: Path) -> tuple[list[Prepared], dict]:
    """The prepared images of `folder` in manifest order, and its prepare.json."""
    folder = Path(folder)
    if not (folder / "manifest.csv").is_file():
        raise SystemExit(f"{folder} is not a prepared set (no manifest.csv): run `mammo-eval prepare --out {folder}` first")
    description = json.loads((folder / "prepare.json").read_text())
    samples = []
    with (folder / "manifest.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            samples.append(Prepared(
                plane=folder / row["path"], name=row["name"], source=row["source"], sha256=row["sha256"],
                density=BIRADS.index(row["density"]) if row["density"] else None,
                malignant={"yes": True, "no": False}.get(row["malignant"]),
                patient=row["patient"], study=row["study"], laterality=row["laterality"], view=row["view"],
                manufacturer=row["manufacturer"]))
    return samples, description


def steps_of(description: dict) -> list[str]:
    return [s for s in description["steps"].split(",") if s]


def unique(samples: list[Prepared]) -> tuple[list[Prepared], dict[str, str]]:
    """Keeps the first image of each byte-identical source. Returns the kept images and a map
    from every name to the kept name that stands for it. Identical sources with different
    labels are an error."""
    first: dict[str, Prepared] = {}
    stands_for: dict[str, str] = {}
    for s in samples:
        kept = first.setdefault(s.sha256, s)
        if (kept.density, kept.malignant) != (s.density, s.malignant):
            raise ValueError(f"{s.name} and {kept.name} are byte-identical but labelled differently")
        stands_for[s.name] = kept.name
    return list(first.values()), stands_for


def plane(path: Path) -> np.ndarray:
    """A prepared PNG as float32 in [0, 1]."""
    return np.asarray(Image.open(path), np.float32) / 65535


def load_planes(samples: list[Prepared]) -> torch.Tensor:
    """(N, 1, H, W) grey planes in [0, 1] as the model sees them before normalisation."""
    return torch.from_numpy(np.stack([plane(s.plane) for s in samples]))[:, None]


def planes_of_files(paths: list[Path], steps: list[str] | None = None) -> np.ndarray:
    """Image files through the server's preprocessing: (N, H, W), in order."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i, p in enumerate(paths):  # names keep the order and stay apart
            (folder / f"{i:06d}{Path(p).suffix.lower()}").symlink_to(Path(p).resolve())
        return _prepared_planes(folder, Path(tmp) / "out", len(paths), steps)


def planes_of_arrays(arrays: list[np.ndarray], steps: list[str] | None = None) -> np.ndarray:
    """Grey images in [0, 1] (any size) through the server's preprocessing, as 16-bit PNGs (the
    values within half a 16-bit step): (N, H, W), in order."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i, a in enumerate(arrays):
            values = np.round(np.clip(a, 0, 1) * 65535).astype(np.uint16)
            Image.fromarray(values).save(folder / f"{i:06d}.png", compress_level=1)
        return _prepared_planes(folder, Path(tmp) / "out", len(arrays), steps)


def _prepared_planes(folder: Path, out: Path, count: int, steps: list[str] | None) -> np.ndarray:
    description = run_prepare(["--data", str(folder)], out, steps)
    if description["unreadable"]:
        raise SystemExit(f"mammo-eval could not read {description['unreadable']}")
    samples, _ = read(out)
    if len(samples) != count:
        raise SystemExit(f"mammo-eval prepared {len(samples)} of {count} images")
    return np.stack([plane(s.plane) for s in sorted(samples, key=lambda s: s.name)])
