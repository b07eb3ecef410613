"""Export a trained network to ONNX with the mammo-serve model contract, and check it.

python -m mammo_train.export --run runs/v2.3.0 --version 2.3.0 --trained-on "..." --out ../models/mammo.onnx

With --run, everything the run decided comes from its files: the network and full-field steps
(summary.json, model.pt), the temperature, operating threshold and test-time views
(calibration.json) and the out-of-distribution detector (ood.pt), so nothing is copied by hand. Without it, --init,
--weights and --threshold name a network without a detector (temperature 1).

Input `input` float32 [N,3,224,224] (dynamic N); outputs `logits` float32 [N,8] and, with a
detector, `ood_score` float32 [N]; opset 17; every `mammo.*` metadata property. ONNX Runtime's
outputs must equal torch's within 1e-4 (relative, for the score) on the check images, else the
export fails.
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from . import ood, prepared
from .labels import CLASSES
from .models import ARCH, INITS, MEAN, STD, build
from .train import normalise

SIZE = 224
TOLERANCE = 1e-4


class LogitsOnly(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return (self.net(x),)


def export(model: torch.nn.Module, outputs: list[str], out: Path, props: dict[str, str]) -> None:
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, SIZE, SIZE),), str(out), dynamo=False, opset_version=17,
        input_names=["input"], output_names=outputs,
        dynamic_axes={"input": {0: "N"}, **{name: {0: "N"} for name in outputs}})
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))


def contract(threshold: float, version: str, arch: str, trained_on: str, steps: list[str],
             temperature: float = 1.0, ood_method: str | None = None, ood_threshold: float | None = None,
             views: int = 1) -> dict[str, str]:
    props = {
        "mammo.preprocess": ",".join(steps),
        "mammo.labels": ",".join(CLASSES),
        "mammo.input_size": str(SIZE),
        "mammo.mean": ",".join(str(m) for m in MEAN),
        "mammo.std": ",".join(str(s) for s in STD),
        "mammo.resize": "bilinear",
        "mammo.malignancy_threshold": f"{threshold:.6g}",
        "mammo.temperature": f"{temperature:.6g}",
        "mammo.version": version,
        "mammo.arch": arch,
        "mammo.trained_on": trained_on,
        "mammo.precision": "fp32",
        "mammo.views": str(views),
    }
    if ood_method is not None:
        props["mammo.ood_method"] = ood_method
        props["mammo.ood_threshold"] = f"{ood_threshold:.6g}"
    return props


def parse_steps(text: str) -> list[str]:
    """`crop_breast,orient_left` -> the step names (mammo-eval prepare refuses unknown ones)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def check(model: torch.nn.Module, outputs: list[str], onnx_path: Path, images: list[Path], steps: list[str]) -> float:
    """Largest difference between ONNX Runtime's and torch's outputs over `images`, run as one
    batch (absolute for logits, relative to max(1, |score|) for the score); raises above 1e-4."""
    x = normalise(torch.from_numpy(prepared.planes_of_files(images, steps))[:, None]).numpy()
    with torch.no_grad():
        expected = [t.numpy() for t in model.eval()(torch.from_numpy(x))]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {"input": x})
    worst = max(float((np.abs(g - e) / np.maximum(1.0, np.abs(e))).max()) for g, e in zip(got, expected))
    if worst > TOLERANCE:
        raise SystemExit(f"ONNX Runtime and torch disagree by {worst:.2e} (> {TOLERANCE}) on {len(images)} images")
    return worst


def from_run(run: Path, version: str, trained_on: str):
    """The scored network and the contract of a calibrated run."""
    summary = json.loads((run / "summary.json").read_text())
    calibration = json.loads((run / "calibration.json").read_text())
    detector = torch.load(run / "ood.pt", weights_only=False)
    steps = parse_steps(summary["preprocess"])
    net = build(summary["init"], weights=run / "model.pt")
    score = ood.OodScore(detector["parameters"])
    views = calibration.get("views", 1)
    model = ood.Scored(net, ood.InputStats(MEAN[0], STD[0]), score, views)
    props = contract(calibration["malignancy_threshold"], version, ARCH[summary["init"]], trained_on, steps,
                     calibration["temperature"], detector["method"], calibration["ood_threshold"], views)
    return model, ["logits", "ood_score"], steps, props


def main() -> None:
    parser = argparse.ArgumentParser(description="export to ONNX with the model contract")
    parser.add_argument("--run", type=Path, help="a calibrated run (train, then calibrate): everything else comes from it")
    parser.add_argument("--init", choices=INITS)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--preprocess", default="", type=parse_steps,
                        help="the full-field steps the model was trained with (without --run)")
    parser.add_argument("--version", required=True)
    parser.add_argument("--trained-on", required=True)
    parser.add_argument("--check-images", type=Path, required=True, help="folder of real JPEG mammograms for the ONNX Runtime vs torch check")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.run is not None:
        model, outputs, steps, props = from_run(args.run, args.version, args.trained_on)
    elif None in (args.init, args.weights, args.threshold):
        raise SystemExit("give --run, or all of --init, --weights and --threshold")
    else:
        steps = args.preprocess
        model = LogitsOnly(build(args.init, weights=args.weights))
        outputs = ["logits"]
        props = contract(args.threshold, args.version, ARCH[args.init], args.trained_on, steps)
    export(model, outputs, args.out, props)
    images = sorted(args.check_images.glob("*.jpg"))[:16]
    worst = check(model, outputs, args.out, images, steps)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    args.out.with_name(args.out.name + ".sha256").write_text(f"{digest}  {args.out.name}\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest}); "
          f"ONNX Runtime vs torch max |Δ| {worst:.1e} on {len(images)} images")


if __name__ == "__main__":
    main()
