"""The site workflow end to end on a synthetic site (full-field DICOMs made from the fixture
mammograms): prepare -> fine-tune -> export -> evaluate base and fine-tuned on held-out
patients. It proves the plumbing, not skill."""

import csv
import hashlib
import json
import subprocess
import sys

import onnx
import pytest
from conftest import FIXTURES

from mammo_train import synthetic_site
from mammo_train.prepared import read, run_prepare


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    manifest = synthetic_site.make(FIXTURES, root, patients=8)
    description = run_prepare(["--manifest", str(manifest)], root / "prepared")
    return root, manifest, description


def finetune(root, manifest, out, *extra):
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "mammo_train.finetune", "--prepared", str(root / "prepared"),
                           "--manifest", str(manifest), "--out", str(out), "--epochs", "1", *extra],
                          capture_output=True, text=True)


def test_a_synthetic_site_is_prepared_with_its_keys_and_without_patient_attributes(site):
    root, _, description = site
    assert description["images_written"] == 32 and not description["unreadable"]
    samples, _ = read(root / "prepared")
    assert {s.view for s in samples} == {"CC", "MLO"} and {s.laterality for s in samples} == {"L", "R"}
    assert len({s.manufacturer for s in samples}) == 3
    assert any(s.density is None for s in samples) and any(s.malignant is None for s in samples)
    text = (root / "prepared" / "manifest.csv").read_text()
    assert synthetic_site.PATIENT_NAME not in text and "SYN-PID" not in text


def test_fine_tuning_splits_by_patient_exports_and_evaluates_paired(site):
    root, manifest, _ = site
    out = root / "ft"
    done = finetune(root, manifest, out)
    assert done.returncode == 0, done.stderr[-2000:]
    with (out / "split.csv").open() as f:
        rows = list(csv.DictReader(f))
    roles_of = {}
    for r in rows:
        roles_of.setdefault(r["patient"], set()).add(r["role"])
    assert all(len(roles) == 1 for roles in roles_of.values()), "no patient on two sides"
    assert {r for roles in roles_of.values() for r in roles} == {"train", "inner", "held_out"}
    held = {p for p, roles in roles_of.items() if roles == {"held_out"}}

    model = onnx.load(str(out / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert f"site.csv (sha256 {digest})" in meta["mammo.trained_on"]
    assert meta["mammo.ood_method"] == "maha_stage4" and float(meta["mammo.temperature"]) > 0
    assert [o.name for o in model.graph.output] == ["logits", "ood_score"]
    base = {p.key: p.value for p in onnx.load(str(FIXTURES.parents[1] / "models" / "mammo.onnx")).metadata_props}
    assert meta["mammo.views"] == base.get("mammo.views", "1"), "the base model's test-time views are kept"

    # Both models were read by mammo-eval (the server's loader) on the held-out patients only.
    for run in ("eval-base", "eval-fine-tuned"):
        metrics = json.loads((out / run / "metrics.json").read_text())
        assert metrics["metrics"]["resampling"]["unit"] == "patients"
        with (out / run / "predictions.csv").open() as f:
            assert {r["patient"] for r in csv.DictReader(f)} == held
    paired = json.loads((out / "paired.json").read_text())
    assert paired["patients"] == len(held)
    assert set(paired["metrics"]) == {"malignancy_auc", "density_accuracy", "not_assessable_share"}
    assert "fine-tuned minus base" in (out / "paired.md").read_text()


def test_a_requested_split_with_a_patient_on_both_sides_stops_naming_the_row(site):
    root, manifest, _ = site
    samples, _ = read(root / "prepared")
    split = root / "bad-split.csv"
    lines = ["name,role"] + [f"{s.name},{'train' if i != 1 else 'held_out'}" for i, s in enumerate(samples)]
    split.write_text("\n".join(lines) + "\n")
    done = finetune(root, manifest, root / "bad", "--split", str(split))
    assert done.returncode != 0
    assert f"bad-split.csv:3: patient {samples[1].patient} is held_out here and train on line 2" in done.stderr
