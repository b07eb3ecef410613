"""Family detection: rotated, flipped and re-encoded copies join their source's family."""

import shutil

from conftest import FIXTURES
from PIL import Image

from mammo_train.data import read_dataset
from mammo_train.families import check_families, families, grouped_folds


def make_set(tmp_path):
    source = Image.open(FIXTURES / "d3b_Image_1.jpg").convert("L")
    source.save(tmp_path / "D3B_source.png")
    source.rotate(40, resample=Image.BILINEAR, fillcolor=18).save(tmp_path / "D3B_rotated.png")
    source.transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "D3B_flipped.png")
    source.rotate(130, resample=Image.BILINEAR, fillcolor=18).transpose(Image.FLIP_TOP_BOTTOM).save(tmp_path / "D3B_both.jpg", quality=90)
    shutil.copy(tmp_path / "D3B_source.png", tmp_path / "D3B_copy.png")
    for label, name in [("D1B", "d1b_Image_2.jpg"), ("D2M", "d2m_Image_9.jpg"), ("D4M", "d4m_Image_83.jpg")]:
        shutil.copy(FIXTURES / name, tmp_path / f"{label}_{name}")
    return read_dataset(tmp_path)


def test_rotations_flips_and_copies_join_the_source_family(tmp_path):
    samples = make_set(tmp_path)
    family = families(samples)
    source = family["D3B_source.png"]
    for name in ["D3B_rotated.png", "D3B_flipped.png", "D3B_both.jpg", "D3B_copy.png"]:
        assert family[name] == source, name
    others = {family[s.name] for s in samples if not s.name.startswith("D3B")}
    assert source not in others and len(others) == 3
    assert check_families(samples, family) == []


def test_folds_keep_families_whole(tmp_path):
    samples = make_set(tmp_path)
    family = families(samples)
    fold = grouped_folds(samples, family, k=2, seed=0)
    by_family = {}
    for s in samples:
        by_family.setdefault(family[s.name], set()).add(fold[s.name])
    assert all(len(f) == 1 for f in by_family.values())
    assert set(fold.values()) == {0, 1}
