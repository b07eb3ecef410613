"""Training smoke run on fixture images, export, and the exported model's contract."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from conftest import FIXTURES

from mammo_train.labels import CLASSES

NAMES = ["d1b_Image_2.jpg", "d1m_Image_3.jpg", "d2m_Image_9.jpg", "d3b_Image_1.jpg", "d3m_Image_31.jpg", "d4m_Image_83.jpg"]


def run(*args):
    subprocess.run([sys.executable, "-m", *args], check=True, cwd=FIXTURES.parents[1] / "training")


def test_smoke_train_export_and_load(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in NAMES:  # each image and a rotated copy (same family)
        shutil.copy(FIXTURES / name, data / f"{name[:3].upper()}_{name}")
        Image.open(FIXTURES / name).rotate(90).save(data / f"{name[:3].upper()}_rot_{name}")
    run("mammo_train.families", "--data", str(data), "--out", str(tmp_path / "split"), "--folds", "2")
    run("mammo_train.train", "--data", str(data), "--split", str(tmp_path / "split" / "split.csv"),
        "--init", "lite0", "--trainable", "head", "--fold", "all", "--epochs", "2", "--out", str(tmp_path / "cv"))
    oof = (tmp_path / "cv" / "oof.csv").read_text().splitlines()
    assert len(oof) == 1 + 2 * len(NAMES)
    assert (tmp_path / "cv" / "fold0" / "curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["folds"][0]["epochs_run"] >= 1

    final = ["mammo_train.train", "--data", str(data), "--split", str(tmp_path / "split" / "split.csv"),
             "--init", "lite0", "--trainable", "head", "--fold", "none", "--out", str(tmp_path / "final")]
    run(*final, "--epochs", "1")
    # Resuming from the checkpoint continues at epoch 2 instead of starting over.
    run(*final, "--epochs", "2", "--resume")
    history = torch.load(tmp_path / "final" / "final" / "checkpoint.pt", weights_only=False)["state"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    out = tmp_path / "model.onnx"
    run("mammo_train.export", "--init", "lite0", "--weights", str(tmp_path / "final" / "model.pt"), "--threshold", "0.4",
        "--version", "smoke", "--trained-on", "six fixture images", "--check-images", str(data), "--out", str(out))

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["mammo.labels"] == ",".join(CLASSES)
    assert meta["mammo.malignancy_threshold"] == "0.4"
    assert meta["mammo.arch"] == "efficientnet_lite0"
    assert meta["mammo.input_size"] == "224"
    assert [i.name for i in session.get_inputs()] == ["input"]
    logits = session.run(["logits"], {"input": np.zeros((3, 3, 224, 224), np.float32)})[0]
    assert logits.shape == (3, 8), "dynamic batch"
    assert len((tmp_path / "model.onnx.sha256").read_text().split()[0]) == 64
