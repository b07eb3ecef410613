"""Labelled-set readers for the three layouts users have, and byte-level de-duplication.

Layouts (`read_dataset` picks one from what PATH is):
- a CSV file `filename,label` (images beside it, or in its `train/` folder);
- a folder with one sub-folder per class (`D1B/`, `Density1Benign/`, `Density1_Benign/` ...);
- a folder of files whose names start with the label (`D1B_001.jpg`, `Density3_Benign-7.png`).
"""

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from .labels import UnknownLabel, parse_label

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # one of labels.CLASSES

    @property
    def name(self) -> str:
        return self.path.name


def read_csv(csv_path: Path, image_dir: Path | None = None) -> list[Sample]:
    csv_path = Path(csv_path)
    rows = list(csv.DictReader(open(csv_path, newline="")))
    if not rows or not {"filename", "label"} <= set(rows[0]):
        raise ValueError(f"{csv_path}: expected a header `filename,label`")
    if image_dir is None:
        image_dir = csv_path.parent
        if not (image_dir / rows[0]["filename"]).exists() and (image_dir / "train" / rows[0]["filename"]).exists():
            image_dir = image_dir / "train"
    samples = []
    for line, row in enumerate(rows, start=2):
        try:
            label = parse_label(row["label"])
        except UnknownLabel as e:
            raise UnknownLabel(f"{csv_path}:{line}: {e}") from None
        samples.append(Sample(Path(image_dir) / row["filename"], label))
    return samples


def read_class_folders(root: Path) -> list[Sample]:
    samples = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        try:
            label = parse_label(folder.name)
        except UnknownLabel as e:
            raise UnknownLabel(f"class folder {folder}: {e}") from None
        samples += [Sample(f, label) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    return samples


def label_from_name(name: str) -> str:
    """The longest leading run of `_`/`-`-separated words that parses as a label."""
    stem = Path(name).stem
    words = stem.replace("-", "_").split("_")
    for n in range(len(words), 0, -1):
        try:
            return parse_label("_".join(words[:n]))
        except UnknownLabel:
            continue
    raise UnknownLabel(f"file name {name!r} does not start with a class label such as D1B_ or Density1Benign_")


def read_prefixed(root: Path) -> list[Sample]:
    files = sorted(f for f in Path(root).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return [Sample(f, label_from_name(f.name)) for f in files]


def read_dataset(path: Path) -> list[Sample]:
    """Reads a labelled set in whichever of the three layouts `path` is."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labelled set {path} does not exist")
    if path.is_file():
        return read_csv(path)
    csvs = sorted(path.glob("*.csv"))
    train_csv = [c for c in csvs if c.name.lower().startswith("train")]
    if train_csv:
        return read_csv(train_csv[0])
    if any(p.is_dir() for p in path.iterdir()):
        return read_class_folders(path)
    return read_prefixed(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dedupe(samples: list[Sample]) -> tuple[list[Sample], dict[str, str]]:
    """Keeps the first of each byte-identical group. Returns the kept samples and a map from
    every file name to the kept file name that stands for it. Identical bytes with different
    labels are an error."""
    first: dict[str, Sample] = {}
    stands_for: dict[str, str] = {}
    for s in samples:
        digest = sha256(s.path)
        kept = first.setdefault(digest, s)
        if kept.label != s.label:
            raise ValueError(f"{s.name} and {kept.name} are byte-identical but labelled {s.label} and {kept.label}")
        stands_for[s.name] = kept.name
    return list(first.values()), stands_for
