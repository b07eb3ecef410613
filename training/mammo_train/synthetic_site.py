"""A small synthetic site, made from labelled DPhi images, to run the site workflow end to end
(README, "Validate and fine-tune on your own studies") where no site's studies are at hand.

python -m mammo_train.synthetic_site --out DIR [--source ../tests/fixtures] [--patients 8]

Every pseudo-patient has both breasts, each a CC and an MLO view: one labelled 224-px image per
breast, enlarged onto a noisy 12-bit full-field detector as a DICOM MG image (its chest wall on
the side a left or right breast is stored, a lead marker apart from the breast; the MLO view a
little rotated and zoomed). Some patients' images are MONOCHROME1, some carry a VOI window and
some none, the Manufacturer (0008,0070) varies, and some rows give only one label. The patient
attributes hold placeholders the outputs must never show. Writes DIR/site.csv (the manifest) and
DIR/studies/PATIENT/*.dcm. It proves the plumbing, not skill: the images are the training
archive's own.
"""

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .data import Sample, label_from_name, read_dataset
from .labels import UnknownLabel, density, malignant

MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"
ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's example root: made-up UIDs
MANUFACTURERS = ("Synthetic Vendor A", "Synthetic Vendor B", "Synthetic Vendor C")
DETECTOR = (1300, 1000)  # rows, columns: large enough to be reduced and cropped like a real one
PATIENT_NAME = "Synthetic^Patient"  # what no output may show
BIRADS = "ABCD"


def sources(source: Path) -> list[Sample]:
    """Labelled images: a labelled set in any layout, or the label-prefixed JPEGs of a folder
    (the test fixtures, which hold other files too)."""
    try:
        return read_dataset(source)
    except UnknownLabel:
        found = []
        for f in sorted(Path(source).glob("*.jpg")):
            try:
                found.append(Sample(f, label_from_name(f.name)))
            except UnknownLabel:
                continue
        return found


def detector_image(path: Path, right: bool, mlo: bool, rng: np.random.Generator) -> np.ndarray:
    """12-bit stored values: the breast enlarged to 900 px (MLO: rotated 8° and zoomed 10%), on
    a noisy background, chest wall on the left (a left breast) or right, a marker apart."""
    g = Image.open(path).convert("L")
    if mlo:
        g = g.rotate(8, resample=Image.BILINEAR).resize((246, 246), Image.BILINEAR).crop((11, 11, 235, 235))
    a = np.asarray(g.resize((900, 900), Image.BILINEAR), np.float64) / 255
    if a[:, :450].sum() < a[:, 450:].sum():
        a = a[:, ::-1]  # chest wall (more tissue) on the left
    rows, cols = DETECTOR
    image = rng.normal(120, 12, (rows, cols))
    image[200:1100, :900] += a * 3600
    image[30:60, 930:980] = 4000  # a lead marker in the corner, apart from the breast
    if right:
        image = image[:, ::-1]
    return np.clip(np.round(image), 0, 4095).astype(np.uint16)


def dataset(pixels: np.ndarray, patient: int, study: str, laterality: str, view: str,
            manufacturer: str, mono1: bool, window: bool, serial) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MG_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MG_STORAGE
    ds.SOPInstanceUID = generate_uid(prefix=ROOT, entropy_srcs=[f"synthetic site {next(serial)}"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid(prefix=ROOT, entropy_srcs=[f"synthetic site series {study}"])
    ds.PatientName = f"{PATIENT_NAME}{patient}"
    ds.PatientID = f"SYN-PID-{patient:04d}"
    ds.PatientBirthDate = "19600101"
    ds.Modality = "MG"
    ds.Manufacturer = manufacturer
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    stored = 4095 - pixels if mono1 else pixels
    if window:  # the window mirrored for MONOCHROME1, so that the grey is the same
        ds.WindowCenter, ds.WindowWidth = (4096 - 1900 if mono1 else 1900), 3800
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds


def make(source: Path, out: Path, patients: int, seed: int = 0) -> Path:
    """Writes the site into `out`; returns its manifest."""
    images = sources(source)
    if len(images) < 2:
        raise SystemExit(f"{source}: {len(images)} labelled images; at least 2 are needed")
    rng = np.random.default_rng(seed)
    serial = itertools.count()
    rows = []
    for p in range(patients):
        patient = f"SITE-{p:03d}"
        study = generate_uid(prefix=ROOT, entropy_srcs=[f"synthetic site study {p}"])
        folder = out / "studies" / patient
        folder.mkdir(parents=True, exist_ok=True)
        for b, laterality in enumerate("LR"):
            image = images[(2 * p + b) % len(images)]
            for view in ("CC", "MLO"):
                pixels = detector_image(image.path, laterality == "R", view == "MLO", rng)
                ds = dataset(pixels, p, study, laterality, view, MANUFACTURERS[p % len(MANUFACTURERS)],
                             mono1=p % 4 == 1, window=p % 3 != 2, serial=serial)
                name = f"{laterality}{view}.dcm"
                ds.save_as(folder / name, enforce_file_format=True)
                # Some rows give one label only: density alone, or malignancy alone.
                rows.append({
                    "path": f"studies/{patient}/{name}", "patient": patient, "study": f"ST{p:03d}",
                    "laterality": laterality, "view": view,
                    "density": "" if p % 4 == 3 else BIRADS[density(image.label) - 1],
                    "malignant": "" if p % 4 == 2 else ("yes" if malignant(image.label) else "no"),
                })
    manifest = out / "site.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, ["path", "patient", "study", "laterality", "view", "density", "malignant"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "fixtures",
                        help="labelled images (any layout), or a folder of label-prefixed JPEGs")
    parser.add_argument("--patients", type=int, default=8)
    args = parser.parse_args()
    manifest = make(args.source, args.out, args.patients)
    print(f"{manifest}: {args.patients} patients, {4 * args.patients} full-field DICOM images")


if __name__ == "__main__":
    main()
