"""Training smoke run on fixture images, export, and the exported model's contract."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from conftest import FIXTURES, prepare

from mammo_train.calibrate import binary_ece, calibration_numbers, fit_temperature, malignancy, operating_threshold
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
    planes = prepare(data, tmp_path / "prepared", steps=[])
    run("mammo_train.train", "--data", str(planes), "--split", str(tmp_path / "split" / "split.csv"),
        "--init", "lite0", "--trainable", "head", "--fold", "all", "--epochs", "2", "--out", str(tmp_path / "cv"))
    oof = (tmp_path / "cv" / "oof.csv").read_text().splitlines()
    assert len(oof) == 1 + 2 * len(NAMES)
    assert (tmp_path / "cv" / "fold0" / "curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["folds"][0]["epochs_run"] >= 1

    final = ["mammo_train.train", "--data", str(planes), "--split", str(tmp_path / "split" / "split.csv"),
             "--init", "lite0", "--trainable", "head", "--fold", "none", "--out", str(tmp_path / "final")]
    run(*final, "--epochs", "1")
    # Resuming from the checkpoint continues at epoch 2 instead of starting over.
    run(*final, "--epochs", "2", "--resume")
    history = torch.load(tmp_path / "final" / "final" / "checkpoint.pt", weights_only=False)["state"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    out = tmp_path / "model.onnx"
    run("mammo_train.export", "--init", "lite0", "--weights", str(tmp_path / "final" / "model.pt"), "--threshold", "0.4",
        "--version", "smoke", "--trained-on", "six fixture images", "--check-images", str(data), "--out", str(out),
        "--preprocess", "")

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


def test_protocol_run_calibrates_and_exports_an_ood_score(tmp_path):
    """train (held-out fold 0, validation fold 1) -> calibrate -> export --run: the ONNX has both
    outputs, with the run's temperature, threshold and detector in its metadata."""
    data = tmp_path / "data"
    data.mkdir()
    for name in NAMES:  # three copies of each image (one family each), over three folds
        for turn in (0, 90, 180):
            Image.open(FIXTURES / name).rotate(turn).save(data / f"{name[:3].upper()}_r{turn}_{name}")
    run("mammo_train.families", "--data", str(data), "--out", str(tmp_path / "split"), "--folds", "3")
    out = tmp_path / "protocol"
    run("mammo_train.train", "--data", str(prepare(data, tmp_path / "prepared")), "--split", str(tmp_path / "split" / "split.csv"),
        "--trainable", "head", "--epochs", "1", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"][0]["fold"] == 0 and summary["folds"][0]["validation_fold"] == 1
    run("mammo_train.calibrate", str(out))
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["temperature"] > 0
    assert calibration["ood_method"].startswith("maha_")
    assert set(calibration["ood_comparison"]["msp"]) >= {"natural", "ct_mr", "inverted", "full_field"}
    model = tmp_path / "scored.onnx"
    run("mammo_train.export", "--run", str(out), "--version", "smoke", "--trained-on", "fixtures",
        "--check-images", str(data), "--out", str(model))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "ood_score"]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["mammo.ood_method"] == calibration["ood_method"]
    assert float(meta["mammo.ood_threshold"]) == pytest.approx(calibration["ood_threshold"], rel=1e-5)
    assert float(meta["mammo.temperature"]) == pytest.approx(calibration["temperature"], rel=1e-5)
    assert meta["mammo.preprocess"] == "crop_breast,orient_left,pad_square"
    logits, score = session.run(None, {"input": np.zeros((2, 3, 224, 224), np.float32)})
    assert logits.shape == (2, 8) and score.shape == (2,)
    refit = refit_run_takes_its_calibration_from_the_inner_run(data, tmp_path, out, summary, calibration)
    refit_run_pools_cross_fitted_runs(tmp_path, refit)


def refit_run_takes_its_calibration_from_the_inner_run(data, tmp_path, inner, inner_summary, inner_calibration):
    """train --refit trains on the inner families too and validates on nothing; calibrate
    --from fits the temperature, threshold and detector threshold on the inner run's validation
    images (with one source, the inner run's own numbers) and the detector's Gaussian on the
    refit network's own training images."""
    refit = tmp_path / "refit"
    with pytest.raises(subprocess.CalledProcessError):  # no inner split to take in
        run("mammo_train.train", "--data", str(tmp_path / "prepared"), "--split", str(tmp_path / "split" / "split.csv"),
            "--trainable", "head", "--epochs", "1", "--refit", "--inner", "none", "--out", str(tmp_path / "no-inner"))
    run("mammo_train.train", "--data", str(tmp_path / "prepared"), "--split", str(tmp_path / "split" / "split.csv"),
        "--trainable", "head", "--epochs", "2", "--refit", "--out", str(refit))
    [fold] = json.loads((refit / "summary.json").read_text())["folds"]
    [inner_fold] = inner_summary["folds"]
    assert fold["validation_images"] == 0 and fold["validation_families"] == []
    assert fold["train_images"] == inner_fold["train_images"] + inner_fold["validation_images"]
    assert fold["best_epoch"] == 2, "the schedule's last epoch is kept"
    with pytest.raises(subprocess.CalledProcessError):  # nothing of its own to calibrate on
        run("mammo_train.calibrate", str(refit))
    with pytest.raises(subprocess.CalledProcessError):  # the same validation images twice
        run("mammo_train.calibrate", str(refit), "--from", str(inner), str(inner))
    run("mammo_train.calibrate", str(refit), "--from", str(inner))
    calibration = json.loads((refit / "calibration.json").read_text())
    for key in ("temperature", "malignancy_threshold", "ood_method", "ood_threshold"):
        assert calibration[key] == inner_calibration[key], key
    assert calibration["calibration_sources"] == [str(inner)]
    assert calibration["sources_training_flagged"] == [inner_calibration["ood_training_flagged"]]
    assert calibration["binary_ece_left_out"] is None, "one source: nothing to leave out"
    assert 0 <= calibration["ood_training_flagged"] <= 1
    own, theirs = (torch.load(r / "ood.pt", weights_only=False)["parameters"] for r in (refit, inner))
    assert not all(torch.equal(own[t][0], theirs[t][0]) for t in own), "the Gaussian is the refit network's"
    model = tmp_path / "refit.onnx"
    run("mammo_train.export", "--run", str(refit), "--version", "smoke", "--trained-on", "fixtures",
        "--check-images", str(data), "--out", str(model))
    meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert float(meta["mammo.temperature"]) == pytest.approx(inner_calibration["temperature"], rel=1e-5)
    return refit


def refit_run_pools_cross_fitted_runs(tmp_path, refit):
    """Cross-fitting: with fold 0 held out, one run validates on all of fold 1 and one on all
    of fold 2; the refit run's temperature, threshold and detector threshold are fitted on
    their validation images together, every family outside fold 0 scored once; `crossfit`
    reports the same left-out ECE, and that of a fixed temperature, from the kept measurements."""
    split = tmp_path / "split" / "split.csv"
    sources = [tmp_path / f"xfit-{k}" for k in (1, 2)]
    for k, source in zip((1, 2), sources):
        run("mammo_train.train", "--data", str(tmp_path / "prepared"), "--split", str(split), "--trainable", "head",
            "--epochs", "1", "--inner", str(k), "--inner-share", "1", "--out", str(source))
        run("mammo_train.calibrate", str(source))
    with pytest.raises(subprocess.CalledProcessError):  # the sources' logits are of one view
        run("mammo_train.calibrate", str(refit), "--from", *map(str, sources), "--views", "2")
    run("mammo_train.calibrate", str(refit), "--from", *map(str, sources))
    calibration = json.loads((refit / "calibration.json").read_text())
    assert calibration["views"] == 1
    measured = [np.load(s / "validation.npz") for s in sources]
    names = np.concatenate([m["names"] for m in measured])
    folds = {row.split(",")[0]: row.split(",")[-1] for row in split.read_text().splitlines()[1:]}
    assert sorted(folds[n] for n in names) == sorted(f for f in folds.values() if f != "0"), "folds 1 and 2, once each"
    logits, allowed = (np.concatenate([m[k] for m in measured]) for k in ("logits", "allowed"))
    assert calibration["temperature"] == pytest.approx(fit_temperature(logits, allowed), rel=1e-6)
    assert calibration["temperature"] != pytest.approx(
        json.loads((sources[0] / "calibration.json").read_text())["temperature"], rel=1e-3), "not one source's"
    scores = np.concatenate([m[f"score_{calibration['ood_method']}"] for m in measured])
    assert calibration["ood_threshold"] == pytest.approx(float(np.quantile(scores, 0.95)), rel=1e-6)
    assert calibration["calibration_sources"] == [str(s) for s in sources]
    left_out = calibration["binary_ece_left_out"]
    t_from_second = fit_temperature(measured[1]["logits"], measured[1]["allowed"])
    first = calibration_numbers(measured[0]["logits"], measured[0]["allowed"], measured[0]["malignant"], t_from_second)
    assert left_out["per_source"][0] == pytest.approx(first["binary_ece"], abs=1e-9), "fold 1 scored with fold 2's T"
    assert min(left_out["per_source"]) <= left_out["mean"] <= max(left_out["per_source"])
    run("mammo_train.crossfit", *map(str, sources), "--temperature", "1.5", "--against", *map(str, sources[::-1]),
        "--out", str(tmp_path / "crossfit.json"))
    crossfit = json.loads((tmp_path / "crossfit.json").read_text())
    assert crossfit["against"]["accuracy"] == {"difference": 0.0, "ci95": [0.0, 0.0]}, "the same runs, in another order"
    rows = [row.split(",") for row in split.read_text().splitlines()[1:]]
    assert crossfit["images"] == len(names) and crossfit["families"] == len({r[1] for r in rows if r[0] in set(names)})
    assert crossfit["binary_ece_left_out"]["8-class NLL"]["per_source"] == pytest.approx(left_out["per_source"]), \
        "calibrate's own left-out ECE"
    assert [c["families"] for c in crossfit["binary_ece_if_calibrated"]] == [
        len({r[1] for r in rows if r[0] in set(m["names"])}) for m in measured]
    fixed = calibration_numbers(measured[0]["logits"], measured[0]["allowed"], measured[0]["malignant"], 1.5)
    assert crossfit["binary_ece_left_out"]["T = 1.5"]["per_source"][0] == pytest.approx(fixed["binary_ece"], abs=1e-9)
    each_at_the_others_t = [(malignancy(m["logits"], fit_temperature(o["logits"], o["allowed"])), m["malignant"])
                            for m, o in zip(measured, measured[::-1])]
    pooled = crossfit["binary_ece_pooled_left_out"]
    assert pooled["images"] == len(names)
    assert pooled["binary_ece"] == pytest.approx(binary_ece(*map(np.concatenate, zip(*each_at_the_others_t))), abs=1e-9), \
        "both folds' images, each at the temperature of the other"
    assert pooled["if_calibrated"]["families"] == crossfit["families"]
    point = crossfit["operating_point_left_out"][0]
    assert point["threshold"] == pytest.approx(operating_threshold(measured[1]["logits"], measured[1]["malignant"], t_from_second))
    malignant_first = measured[0]["malignant"] == 1
    called = malignancy(measured[0]["logits"], t_from_second) >= point["threshold"]
    assert point["sensitivity"] == pytest.approx(called[malignant_first].mean()), "fold 1 at fold 2's threshold"
    assert point["specificity"] == pytest.approx((~called[~malignant_first]).mean())
    assert crossfit["accuracy_by_source"][0] == pytest.approx(float(np.mean(
        measured[0]["logits"].argmax(1) == measured[0]["allowed"].argmax(1))), abs=1e-9), "fixture rows carry both labels"
