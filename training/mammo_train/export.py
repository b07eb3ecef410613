"""Export a trained network to ONNX with the mammo-serve model contract, and check it.

python -m mammo_train.export --init lite0 --weights runs/final/model.pt --threshold 0.35 \
       --version 1.0.0 --trained-on "..." --check-images DIR --out ../models/mammo.onnx

Input `input` float32 [N,3,224,224] (dynamic N), output `logits` float32 [N,8], opset 17, and
every `mammo.*` metadata property. ONNX Runtime's logits must equal torch's within 1e-4 on the
check images, else the export fails.
"""

import argparse
import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .labels import CLASSES
from .models import ARCH, INITS, MEAN, STD, build
from .preprocess import parse_steps, to_input

SIZE = 224
TOLERANCE = 1e-4


def export(model: torch.nn.Module, out: Path, props: dict[str, str]) -> None:
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, SIZE, SIZE),), str(out), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))


def contract(threshold: float, version: str, arch: str, trained_on: str, steps: list[str]) -> dict[str, str]:
    return {
        "mammo.preprocess": ",".join(steps),
        "mammo.labels": ",".join(CLASSES),
        "mammo.input_size": str(SIZE),
        "mammo.mean": ",".join(str(m) for m in MEAN),
        "mammo.std": ",".join(str(s) for s in STD),
        "mammo.resize": "bilinear",
        "mammo.malignancy_threshold": f"{threshold:.6g}",
        "mammo.version": version,
        "mammo.arch": arch,
        "mammo.trained_on": trained_on,
    }


def check(model: torch.nn.Module, onnx_path: Path, images: list[Path], steps: list[str]) -> float:
    """Largest |ORT logit - torch logit| over `images`, run as one batch; raises above 1e-4."""
    x = np.stack([to_input(p, SIZE, MEAN, STD, steps) for p in images])
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x})[0]
    worst = float(np.abs(got - expected).max())
    if worst > TOLERANCE:
        raise SystemExit(f"ONNX Runtime and torch disagree by {worst:.2e} (> {TOLERANCE}) on {len(images)} images")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description="export to ONNX with the model contract")
    parser.add_argument("--init", choices=INITS, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--trained-on", required=True)
    parser.add_argument("--check-images", type=Path, required=True, help="folder of real JPEG mammograms for the ONNX Runtime vs torch check")
    parser.add_argument("--preprocess", default="", type=parse_steps,
                        help="the full-field steps the model was trained with (train.py --preprocess)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = build(args.init, weights=args.weights)
    export(model, args.out, contract(args.threshold, args.version, ARCH[args.init], args.trained_on, args.preprocess))
    images = sorted(args.check_images.glob("*.jpg"))[:16]
    worst = check(model, args.out, images, args.preprocess)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    args.out.with_name(args.out.name + ".sha256").write_text(f"{digest}  {args.out.name}\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest}); "
          f"ONNX Runtime vs torch max |Δlogit| {worst:.1e} on {len(images)} images")


if __name__ == "__main__":
    main()
