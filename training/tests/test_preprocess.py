"""Full-field steps on synthetic images; tests/parity.rs holds them to the Rust server's."""

import numpy as np
import pytest

from mammo_train.preprocess import chest_wall_on_right, crop_breast, fit_size, model_grey, parse_steps, reduce, reduction


def test_steps_parse_in_pipeline_order_and_unknown_names_fail():
    assert parse_steps("pad_square, crop_breast,orient_left") == ["crop_breast", "orient_left", "pad_square"]
    assert parse_steps("") == []
    with pytest.raises(ValueError):
        parse_steps("crop_breast,rotate")


def test_crop_keeps_the_breast_and_drops_a_separate_marker():
    g = np.full((120, 100), 0.02, np.float32)
    g[20:90, 10:60] = 0.8  # breast
    g[5:10, 80:90] = 0.8  # marker, apart from it
    assert crop_breast(g).shape == (70, 50)
    empty = np.full((50, 50), 0.05, np.float32)
    assert crop_breast(empty).shape == (50, 50), "no tissue: kept whole"


def test_orientation_follows_laterality_then_tissue():
    g = np.zeros((20, 40), np.float32)
    g[:, 30:] = 0.9
    assert chest_wall_on_right(g)
    assert not chest_wall_on_right(g, "L")
    assert chest_wall_on_right(g, "R")


def test_a_tall_breast_is_cropped_flipped_and_padded_to_the_left():
    g = np.zeros((100, 200), np.float32)
    g[10:90, 150:190] = 1.0
    plane = model_grey(g, 8, ["crop_breast", "orient_left", "pad_square"])
    assert np.allclose(plane[:, :4], 1.0, atol=1e-5) and np.all(plane[:, 4:] == 0)
    wide = model_grey(np.ones((40, 80), np.float32), 8, ["pad_square"])
    assert wide[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert fit_size(4084, 3328, 224) == (224, 183)


def test_large_images_are_reduced_by_block_means():
    assert reduction(224, 224, 224) == 1 and reduction(896, 4000, 224) == 2 and reduction(2600, 4700, 224) == 5
    g = np.arange(35, dtype=np.float32).reshape(5, 7)
    small = reduce(g, 1)  # k = 5 // 2 = 2: blocks of 2 × 2, the last row and column dropped
    assert small.shape == (2, 3)
    assert small[1, 2] == (g[2, 4] + g[2, 5] + g[3, 4] + g[3, 5]) / 4
    assert reduce(g, 3) is g
