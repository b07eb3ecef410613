"""The INT8 quantization of the shipped model and the gate's held-out arithmetic."""

import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import FIXTURES, prepare

from mammo_train import int8

SHIPPED = FIXTURES.parents[1] / "models" / "mammo.onnx"
IMAGES = ["d1b_Image_2.jpg", "d1m_Image_3.jpg", "d2m_Image_9.jpg", "d3b_Image_1.jpg", "d3m_Image_31.jpg", "d4m_Image_83.jpg"]


def prepared(tmp_path):
    """Six fixture images through `mammo-eval prepare`, and a split that holds the first two out."""
    images = tmp_path / "images"
    images.mkdir()
    for name in IMAGES:
        shutil.copy(FIXTURES / name, images / name)
    out = prepare(images, tmp_path / "prepared")
    split = tmp_path / "split.csv"
    split.write_text("filename,family,fold\n" + "".join(f"{n},{i},{0 if i < 2 else 1}\n" for i, n in enumerate(IMAGES)))
    return out, split


def test_quantizes_all_but_the_detector_and_keeps_the_contract(tmp_path):
    folder, split = prepared(tmp_path)
    out = tmp_path / "mammo-int8.onnx"
    subprocess.run([sys.executable, "-m", "mammo_train.int8", "quantize", "--model", str(SHIPPED), "--prepared",
                    str(folder), "--split", str(split), "--held-out", "0", "--count", "4", "--out", str(out)],
                   check=True, cwd=FIXTURES.parents[1] / "training")
    source, quantized = onnx.load(str(SHIPPED)), onnx.load(str(out))
    before, after = int8.metadata(source), int8.metadata(quantized)
    assert (before.pop("mammo.precision"), after.pop("mammo.precision")) == ("fp32", "int8")
    assert "4 prepared images drawn from 4 outside fold 0" in after.pop("mammo.quantization")
    assert after == before, "every FP32 property is kept"
    ops = [n.op_type for n in quantized.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    under_detector = int8.ancestors(quantized.graph, "ood_score")
    assert not [n for n in quantized.graph.node if n.name in under_detector and n.op_type == "QuantizeLinear"]

    x = np.random.default_rng(0).normal(0, 1, (2, 3, 224, 224)).astype(np.float32)
    run = {m: ort.InferenceSession(str(m), providers=["CPUExecutionProvider"]).run(None, {"input": x}) for m in (SHIPPED, out)}
    np.testing.assert_allclose(run[out][1], run[SHIPPED][1], rtol=1e-4, err_msg="ood_score is computed in float")
    assert not np.array_equal(run[out][0], run[SHIPPED][0]), "the head is quantized"


def test_calibration_never_reads_the_held_out_fold(tmp_path):
    folder, split = prepared(tmp_path)
    planes, pool = int8.calibration_planes(folder, split, held_out=0, count=4)
    assert (pool, planes.shape) == (4, (4, 224, 224))
    with pytest.raises(SystemExit, match="4 images outside fold 0, 5 needed"):
        int8.calibration_planes(folder, split, held_out=0, count=5)


def predictions(rows):
    return {r[0]: {"label": r[1], "malignancy_probability": str(r[2]), "density": r[3], "assessment": r[4]} for r in rows}


def test_the_gate_pairs_files_and_applies_its_bars():
    fp32 = [(f"f{i}", lab, p, lab[:2], "assessed") for i, (lab, p) in
            enumerate([("D1B", 0.1), ("D1M", 0.9), ("D2B", 0.2), ("D2M", 0.7), ("D3B", 0.3), ("D3M", 0.8)] * 20)]
    family = {name: i % 12 for i, (name, *_) in enumerate(fp32)}
    same = int8.held_out_checks(predictions(fp32), predictions(fp32), family)
    assert same["malignancy_auc"]["difference"] == 0 and same["malignancy_auc"]["pass"]
    assert same["same_status"]["share"] == 1 and same["density_accuracy"]["pass"]

    worse = list(fp32)
    worse[0] = ("f0", "D1B", 0.95, "D2", "not_assessable")  # a benign image scored malignant, density and status changed
    worse[2] = ("f2", "D2B", 0.2, "D3", "assessed")
    checks = int8.held_out_checks(predictions(fp32), predictions(worse), family)
    assert checks["density_accuracy"]["difference"] == pytest.approx(-2 / 120)
    assert not checks["density_accuracy"]["pass"]
    assert checks["same_status"]["share"] == pytest.approx(119 / 120) and checks["same_status"]["pass"]
    assert checks["malignancy_auc"]["difference"] < 0
    with pytest.raises(SystemExit, match="different files"):
        int8.held_out_checks(predictions(fp32), predictions(fp32[:-1]), family)
