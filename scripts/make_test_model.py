"""Writes an UNTRAINED ONNX classifier that follows the mammo-serve model contract.

It exists so the tests can run the real engine (ONNX Runtime through ort) end to end without the
trained model: a small CNN (8x8/8 conv, ReLU, global average pool, dense) with fixed pseudo-random
weights, input `input` float32 [N,3,H,W], output `logits` float32 [N,8], and every `mammo.*`
metadata property. Its answers mean nothing; its metadata says so. Never serve it to users.

With --ood it also has the `ood_score` output [N]: the mean of its normalised input, judged by
`mammo.ood_threshold` 0. Mammograms after the full-field steps are mostly black (means -1.4 to
-0.5 for the fixtures), an inverted mammogram or a bright photograph is not (1.5 and above): a
stand-in detector with which the tests exercise the assessment plumbing without a trained model.

The tests read the committed copies in tests/fixtures/models/ (`make test-model` rewrites them).

usage: python scripts/make_test_model.py OUT.onnx [--size 224] [--threshold 0.5] [--preprocess STEPS] [--ood]
"""

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = "D1B,D1M,D2B,D2M,D3B,D3M,D4B,D4M"


def build(size: int, threshold: float, steps: str, ood: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(20261127)
    conv_w = rng.normal(0.0, 0.4, (16, 3, 8, 8)).astype(np.float32)
    conv_b = rng.normal(0.0, 0.1, (16,)).astype(np.float32)
    dense_w = rng.normal(0.0, 0.3, (16, 8)).astype(np.float32)
    dense_b = np.zeros((8,), np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["features"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Relu", ["features"], ["activated"]),
        helper.make_node("GlobalAveragePool", ["activated"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])]
    if ood:
        nodes.append(helper.make_node("ReduceMean", ["input"], ["ood_score"], axes=[1, 2, 3], keepdims=0))
        outputs.append(helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N"]))
    graph = helper.make_graph(
        nodes,
        "untrained_test_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        outputs,
        [numpy_helper.from_array(a, n) for a, n in
         [(conv_w, "conv_w"), (conv_b, "conv_b"), (dense_w, "dense_w"), (dense_b, "dense_b")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mammo-serve tests")
    model.ir_version = 9
    props = {
        "mammo.labels": LABELS,
        "mammo.input_size": str(size),
        "mammo.mean": "0.485,0.456,0.406",
        "mammo.std": "0.229,0.224,0.225",
        "mammo.resize": "bilinear",
        "mammo.preprocess": steps,
        "mammo.malignancy_threshold": str(threshold),
        "mammo.version": "0.0.0-untrained-test",
        "mammo.arch": "tiny_cnn_untrained",
        "mammo.trained_on": "nothing: random weights for tests only, answers are meaningless",
    }
    if ood:
        props["mammo.ood_method"] = "input_mean (test stand-in)"
        props["mammo.ood_threshold"] = "0"
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--preprocess", default="crop_breast,orient_left,pad_square",
                        help="full-field steps the model claims (mammo.preprocess); all by default so tests cover them")
    parser.add_argument("--ood", action="store_true", help="add the ood_score output (mean of the input)")
    args = parser.parse_args()
    onnx.save(build(args.size, args.threshold, args.preprocess, args.ood), args.out)
    print(f"wrote {args.out} (untrained test model, input {args.size}x{args.size})")


if __name__ == "__main__":
    main()
