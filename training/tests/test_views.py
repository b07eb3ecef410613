"""Test-time views: which views, how the graph averages them, and that the detector ignores them."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import FIXTURES

from mammo_train import export, ood
from mammo_train.crossfit import calibrated_ece
from mammo_train.models import MEAN, STD, build, from_onnx
from mammo_train.views import of_views


def test_eight_views_are_every_rotation_and_mirror_and_the_first_ones_are_flips():
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    stacked = of_views(x, 8).reshape(8, 2, 1, 3, 3)
    dihedral = [torch.rot90(m, k, (2, 3)) for m in (x, x.flip(3)) for k in range(4)]
    assert sorted(map(str, stacked.unbind(0))) == sorted(map(str, dihedral)), "the 8 symmetries of the square, once each"
    assert torch.equal(stacked[0], x) and torch.equal(stacked[1], x.flip(3))
    assert all(torch.equal(of_views(x, n), of_views(x, 8)[:2 * n]) for n in (1, 2, 4)), "V views are the first V"
    with pytest.raises(ValueError):
        of_views(x, 3)


def scored(views: int) -> ood.Scored:
    torch.manual_seed(0)
    net = build("lite0").eval()
    score = ood.OodScore({"stage4": (torch.randn(160), torch.randn(160, 160) * 0.01)})
    return ood.Scored(net, ood.InputStats(MEAN[0], STD[0]), score, views).eval()


@torch.no_grad()
def test_the_graph_averages_the_logits_of_the_views_and_scores_the_image_alone(tmp_path):
    model, plain = scored(4), scored(1)
    x = torch.randn(3, 3, 224, 224)
    logits, score = model(x)
    by_view = torch.stack([plain(v)[0] for v in (x, x.flip(3), x.flip(2), x.flip((2, 3)))])
    assert torch.allclose(logits, by_view.mean(0), atol=1e-5)
    assert not torch.allclose(logits, plain(x)[0], atol=1e-3), "the views change the logits"
    assert torch.allclose(score, plain(x)[1], rtol=1e-5), "the detector reads the image alone"

    out = tmp_path / "views.onnx"
    export.export(model, ["logits", "ood_score"], out, export.contract(0.5, "t", "efficientnet_lite0", "t", [], views=4))
    images = sorted(FIXTURES.glob("*.jpg"))[:3]
    assert export.check(model, ["logits", "ood_score"], out, images, []) <= export.TOLERANCE
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["mammo.views"] == "4"
    got, _ = session.run(None, {"input": x[:1].numpy()})
    assert np.allclose(got, logits[:1].numpy(), atol=1e-4), "batch of one"
    rebuilt = from_onnx(out)
    assert torch.allclose(rebuilt(x), plain(x)[0], atol=1e-4), "fine-tuning rebuilds the one network inside"


def test_a_calibrated_model_shows_the_ece_of_its_families_draws():
    # One family at p = 0.5: its images are all malignant or all benign, so the ECE is 0.5
    # whatever the draw; ten families of certain answers (at any temperature the other fits): 0.
    half = [{"names": np.array([f"a{i}" for i in range(40)]), "malignant": np.zeros(40),
             "logits": np.zeros((40, 8)), "allowed": np.ones((40, 8), bool)}]
    family = {f"a{i}": 0 for i in range(40)}
    sure = np.tile(np.array([[300.0, -300] * 4, [-300, 300.0] * 4]), (20, 1))
    certain = [{"names": np.array([f"b{i}" for i in range(40)]), "malignant": np.zeros(40), "logits": sure,
                "allowed": np.ones((40, 8), bool)}]
    family |= {f"b{i}": i // 4 for i in range(40)}
    [first, second] = calibrated_ece(half + certain, family)
    assert first["mean"] == pytest.approx(0.5) and first["families"] == 1
    assert second["mean"] == pytest.approx(0.0, abs=1e-6) and second["families"] == 10
