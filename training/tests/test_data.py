"""Readers on each layout, label aliases, bad labels, de-duplication."""

import shutil

import pytest
from conftest import FIXTURES

from mammo_train.data import dedupe, label_from_name, read_dataset
from mammo_train.labels import UnknownLabel, parse_label

JPEGS = {"D1B": "d1b_Image_2.jpg", "D3M": "d3m_Image_31.jpg", "D4M": "d4m_Image_83.jpg"}


def test_label_spellings_map_to_one_class():
    for text in ["D3B", "d3b", "Density3Benign", "Density3_Benign", "density-3-benign"]:
        assert parse_label(text) == "D3B"
    for bad in ["D5B", "Density3", "Benign", "D3X", ""]:
        with pytest.raises(UnknownLabel):
            parse_label(bad)


def test_csv_layout(tmp_path):
    (tmp_path / "train").mkdir()
    lines = ["filename,label"]
    for label, name in JPEGS.items():
        shutil.copy(FIXTURES / name, tmp_path / "train" / name)
        lines.append(f"{name},Density{label[1]}{'Benign' if label[2] == 'B' else 'Malignant'}")
    (tmp_path / "Training_set.csv").write_text("\n".join(lines) + "\n")
    samples = read_dataset(tmp_path)
    assert {(s.name, s.label) for s in samples} == {(n, l) for l, n in JPEGS.items()}
    assert all(s.path.exists() for s in samples)


def test_class_folder_layout(tmp_path):
    for label, name in JPEGS.items():
        folder = tmp_path / {"D1B": "D1B", "D3M": "Density3Malignant", "D4M": "Density4_Malignant"}[label]
        folder.mkdir()
        shutil.copy(FIXTURES / name, folder / name)
    assert {(s.name, s.label) for s in read_dataset(tmp_path)} == {(n, l) for l, n in JPEGS.items()}


def test_prefixed_name_layout(tmp_path):
    for i, (label, name) in enumerate(JPEGS.items()):
        prefix = {"D1B": "D1B", "D3M": "Density3_Malignant", "D4M": "Density4Malignant"}[label]
        shutil.copy(FIXTURES / name, tmp_path / f"{prefix}_{i:03d}.jpg")
    assert sorted(s.label for s in read_dataset(tmp_path)) == sorted(JPEGS)
    assert label_from_name("Density3_Benign-7.png") == "D3B"


def test_unknown_labels_are_clear_errors(tmp_path):
    (tmp_path / "set.csv").write_text("filename,label\nd1b_Image_2.jpg,Density9Benign\n")
    with pytest.raises(UnknownLabel, match=r"set.csv:2: unknown class label 'Density9Benign'"):
        read_dataset(tmp_path / "set.csv")
    folder = tmp_path / "folders" / "Calcification"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "d1b_Image_2.jpg", folder)
    with pytest.raises(UnknownLabel, match="Calcification"):
        read_dataset(tmp_path / "folders")
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(FIXTURES / "d1b_Image_2.jpg", flat / "scan_001.jpg")
    with pytest.raises(UnknownLabel, match="scan_001.jpg"):
        read_dataset(flat)
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "missing")


def test_dedupe_keeps_one_of_identical_files(tmp_path):
    for name in ["D1B_a.jpg", "D1B_b.jpg"]:
        shutil.copy(FIXTURES / "d1b_Image_2.jpg", tmp_path / name)
    shutil.copy(FIXTURES / "d3m_Image_31.jpg", tmp_path / "D3M_c.jpg")
    kept, stands_for = dedupe(read_dataset(tmp_path))
    assert [s.name for s in kept] == ["D1B_a.jpg", "D3M_c.jpg"]
    assert stands_for == {"D1B_a.jpg": "D1B_a.jpg", "D1B_b.jpg": "D1B_a.jpg", "D3M_c.jpg": "D3M_c.jpg"}
