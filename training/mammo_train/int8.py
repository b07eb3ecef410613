"""The INT8 model and the gate it must pass before it ships beside the FP32 one.

python -m mammo_train.int8 quantize --model ../models/mammo.onnx --prepared PREPARED \
       --split splits/split.csv --held-out 0 --out ../models/mammo-int8.onnx
python -m mammo_train.int8 gate --fp32 ../models/mammo.onnx --int8 ../models/mammo-int8.onnx \
       --fp32-eval EVAL_FP32 --int8-eval EVAL_INT8 --data TRAIN_CSV --split splits/split.csv \
       --fold 0 --out GATE_DIR

`quantize`: ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8
activations, min-max ranges) calibrated on images `mammo-eval prepare` wrote (the server's own
preprocessing) from the training folds, never the held-out one. Every node that feeds
`ood_score` stays in float: the out-of-distribution detector measures distances of stage-4
feature statistics from the training distribution, and quantizing the layers under it moves
those statistics enough to flag nearly every image (see models/MODEL_CARD.md, "INT8"). The
metadata is the FP32 model's with `mammo.precision = int8` and where it came from.

`gate`: the release's check, paired against FP32 on the same files. From the two
`mammo-eval evaluate` runs on the held-out fold: malignancy AUC within `AUC_MARGIN`, density
accuracy within `DENSITY_MARGIN`, the same assessment status on at least `SAME_STATUS` of the
images (family-bootstrap 95% intervals reported beside each difference). On every proxy
out-of-distribution set (`mammo_train.proxies`, made from the held-out fold): the same
not-assessable flag on at least `SAME_FLAGS` of the images. Writes gate.json and gate.md (the
model card's table) and exits 1 when any check fails.
"""

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from sklearn.metrics import roc_auc_score

AUC_MARGIN = 0.01
DENSITY_MARGIN = 0.01
SAME_STATUS = 0.99
SAME_FLAGS = 0.98
CALIBRATION_IMAGES = 200


def ancestors(graph: onnx.GraphProto, output: str) -> set[str]:
    """Names of the nodes whose results reach `output`."""
    producer = {o: n for n in graph.node for o in n.output}
    found, pending = set(), [output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in found:
            continue
        if not node.name:
            raise SystemExit(f"an unnamed {node.op_type} node feeds {output}; it cannot be excluded")
        found.add(node.name)
        pending.extend(node.input)
    return found


def unquantized_inputs(graph: onnx.GraphProto, nodes: set[str]) -> int:
    """Points the inputs of `nodes` that read a quantize-dequantize pair back at the float tensor
    the pair was made from. The quantizer puts one pair on a tensor for all its consumers, so the
    float layers under the detector would otherwise read the stage-4 output rounded to 8 bits.
    Returns how many inputs were rewired."""
    producer = {o: n for n in graph.node for o in n.output}
    rewired = 0
    for node in graph.node:
        if node.name not in nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    return rewired


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def triple(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(",")], np.float32).reshape(1, 3, 1, 1)


def calibration_planes(prepared: Path, split: Path, held_out: int, count: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """`count` prepared planes (N, H, W) in [0, 1] drawn from the folds other than `held_out`,
    and how many images those folds hold."""
    with split.open() as f:
        fold = {r["filename"]: int(r["fold"]) for r in csv.DictReader(f)}
    with (prepared / "manifest.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["name"] in fold and fold[r["name"]] != held_out]
    if len(rows) < count:
        raise SystemExit(f"{prepared / 'manifest.csv'}: {len(rows)} images outside fold {held_out}, {count} needed")
    chosen = np.random.default_rng(seed).choice(len(rows), count, replace=False)
    from .prepared import plane

    planes = [plane(prepared / rows[i]["path"]) for i in sorted(chosen)]
    return np.stack(planes), len(rows)


class Batches(CalibrationDataReader):
    """The calibration planes as normalised input batches."""

    def __init__(self, planes: np.ndarray, mean: np.ndarray, std: np.ndarray, batch: int = 16):
        x = (np.repeat(planes[:, None], 3, axis=1) - mean) / std
        self.batches = iter([{"input": x[i:i + batch].astype(np.float32)} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize(args) -> None:
    source = onnx.load(str(args.model))
    props = metadata(source)
    if props.get("mammo.precision", "fp32") != "fp32":
        raise SystemExit(f"{args.model} is already {props['mammo.precision']}")
    keep_float = sorted(ancestors(source.graph, "ood_score"))
    planes, pool = calibration_planes(args.prepared, args.split, args.held_out, args.count)
    reader = Batches(planes, triple(props["mammo.mean"]), triple(props["mammo.std"]))
    ort.set_default_logger_severity(3)  # the calibration session lists every initializer it drops
    quantize_static(str(args.model), str(args.out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=keep_float, calibrate_method=CalibrationMethod.MinMax)
    digest = hashlib.sha256(args.model.read_bytes()).hexdigest()
    quantized = onnx.load(str(args.out))
    rewired = unquantized_inputs(quantized.graph, set(keep_float))
    del quantized.metadata_props[:]
    props |= {
        "mammo.precision": "int8",
        "mammo.quantization": (
            f"ONNX Runtime static QDQ, per-channel int8 weights, uint8 activations, min-max ranges of "
            f"{args.count} prepared images drawn from {pool} outside fold {args.held_out} of {args.split.name}; "
            f"the {len(keep_float)} nodes feeding ood_score kept in float ({rewired} inputs read unrounded); from {args.model.name} sha256 {digest}"),
    }
    for key, value in props.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(args.out))
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB, {len(keep_float)} nodes kept in float, "
          f"calibrated on {args.count} of {pool} images", file=sys.stderr)


def read_predictions(path: Path) -> dict[str, dict]:
    with path.open() as f:
        return {r["filename"]: r for r in csv.DictReader(f)}


def held_out_checks(fp32: dict, int8: dict, family: dict[str, int]) -> dict:
    """Paired INT8 − FP32 on the files both runs answered, with family-bootstrap intervals."""
    from .report import family_bootstrap

    names = sorted(set(fp32) & set(int8))
    if len(names) != len(fp32) or len(names) != len(int8):
        raise SystemExit(f"the two runs answered different files ({len(fp32)} and {len(int8)}, {len(names)} shared)")
    label = [fp32[n]["label"] for n in names]
    positive = np.array([lab.endswith("M") for lab in label])
    fam = np.array([family[n] for n in names])
    score = {k: np.array([float(run[n]["malignancy_probability"]) for n in names]) for k, run in (("fp32", fp32), ("int8", int8))}
    right = {k: np.array([run[n]["density"] == lab[:2] for n, lab in zip(names, label)]) for k, run in (("fp32", fp32), ("int8", int8))}
    status = {k: np.array([run[n]["assessment"] for n in names]) for k, run in (("fp32", fp32), ("int8", int8))}

    def statistics(idx):
        auc = {k: roc_auc_score(positive[idx], s[idx]) for k, s in score.items()}
        density = {k: r[idx].mean() for k, r in right.items()}
        return (auc["fp32"], auc["int8"], auc["int8"] - auc["fp32"],
                density["fp32"], density["int8"], density["int8"] - density["fp32"])

    point = statistics(np.arange(len(names)))
    lo, hi = np.percentile(np.array(family_bootstrap(statistics, positive, fam)), [2.5, 97.5], axis=0)
    ci = [[float(a), float(b)] for a, b in zip(lo, hi)]
    same = float((status["fp32"] == status["int8"]).mean())
    return {
        "images": len(names), "families": int(len(np.unique(fam))),
        "malignancy_auc": {"fp32": point[0], "int8": point[1], "difference": point[2], "ci95": ci[:3],
                           "pass": abs(point[2]) <= AUC_MARGIN},
        "density_accuracy": {"fp32": point[3], "int8": point[4], "difference": point[5], "ci95": ci[3:],
                             "pass": abs(point[5]) <= DENSITY_MARGIN},
        "same_status": {"share": same, "not_assessable_fp32": int((status["fp32"] == "not_assessable").sum()),
                        "not_assessable_int8": int((status["int8"] == "not_assessable").sum()),
                        "pass": same >= SAME_STATUS},
    }


def proxy_checks(fp32_path: Path, int8_path: Path, data: Path, split: Path, fold: int) -> dict:
    """The not-assessable flag of both models on every proxy set made from the held-out fold
    of the prepared set `data`."""
    import torch

    from . import prepared, proxies
    from .families import read_split
    from .heldout import Onnx

    samples, _ = prepared.unique(prepared.read(data)[0])
    _, folds = read_split(split)
    held = [Path(s.source) for s in samples if folds[s.name] == fold]
    models = {"fp32": Onnx(fp32_path), "int8": Onnx(int8_path)}
    steps = [s for s in metadata(onnx.load(str(fp32_path))).get("mammo.preprocess", "").split(",") if s]
    table = {}
    for name, planes in proxies.proxy_sets(held, steps, seed=1):  # the sets heldout.py reports
        grey = torch.from_numpy(planes)[:, None]
        flags = {k: m.run(grey)["ood_score"] > m.ood_threshold for k, m in models.items()}
        same = float((flags["fp32"] == flags["int8"]).mean())
        table[name] = {"images": len(grey), "flagged_fp32": float(flags["fp32"].mean()),
                       "flagged_int8": float(flags["int8"].mean()), "same_flags": same, "pass": same >= SAME_FLAGS}
        print(f"  {name}: same flags {same:.3f}", file=sys.stderr)
    return table


def markdown(report: dict) -> str:
    h = report["held_out"]
    auc, dens, status = h["malignancy_auc"], h["density_accuracy"], h["same_status"]
    mark = {True: "pass", False: "**fail**"}
    lines = [
        f"Held-out fold {report['fold']} ({h['images']} files, {h['families']} families), paired INT8 − FP32, "
        "95% intervals from 1,000 family resamples:",
        "",
        "| check | FP32 | INT8 | INT8 − FP32 [95% CI] | bar | result |",
        "|---|---|---|---|---|---|",
        f"| malignancy AUC | {auc['fp32']:.3f} | {auc['int8']:.3f} | {auc['difference']:+.4f} "
        f"[{auc['ci95'][2][0]:+.4f}, {auc['ci95'][2][1]:+.4f}] | within {AUC_MARGIN} | {mark[auc['pass']]} |",
        f"| density accuracy | {dens['fp32']:.3f} | {dens['int8']:.3f} | {dens['difference']:+.4f} "
        f"[{dens['ci95'][2][0]:+.4f}, {dens['ci95'][2][1]:+.4f}] | within {DENSITY_MARGIN} | {mark[dens['pass']]} |",
        f"| same assessment status | {status['not_assessable_fp32']} declined | {status['not_assessable_int8']} declined "
        f"| {status['share']:.4f} of files | ≥ {SAME_STATUS} | {mark[status['pass']]} |",
        "",
        "Proxy out-of-distribution sets (made from the held-out fold; `mammo_train.proxies`):",
        "",
        "| set | images | flagged FP32 | flagged INT8 | same flag | result |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["proxies"].items():
        lines.append(f"| {name} | {row['images']} | {row['flagged_fp32']:.3f} | {row['flagged_int8']:.3f} "
                     f"| {row['same_flags']:.3f} | {mark[row['pass']]} |")
    lines += ["", f"Gate: {'passed' if report['pass'] else 'failed'}."]
    return "\n".join(lines) + "\n"


def gate(args) -> None:
    from .families import read_split

    family, _ = read_split(args.split)
    report = {
        "fp32": {"model": args.fp32.name, "sha256": hashlib.sha256(args.fp32.read_bytes()).hexdigest()},
        "int8": {"model": args.int8.name, "sha256": hashlib.sha256(args.int8.read_bytes()).hexdigest()},
        "fold": args.fold,
        "held_out": held_out_checks(read_predictions(args.fp32_eval / "predictions.csv"),
                                    read_predictions(args.int8_eval / "predictions.csv"), family),
        "proxies": proxy_checks(args.fp32, args.int8, args.prepared, args.split, args.fold),
    }
    h = report["held_out"]
    report["pass"] = all(h[k]["pass"] for k in ("malignancy_auc", "density_accuracy", "same_status")) and all(
        row["pass"] for row in report["proxies"].values())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate.json").write_text(json.dumps(report, indent=2, default=float))
    table = markdown(report)
    (args.out / "gate.md").write_text(table)
    print(table)
    sys.exit(0 if report["pass"] else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("quantize", help="write the INT8 model")
    q.add_argument("--model", type=Path, required=True)
    q.add_argument("--prepared", type=Path, required=True, help="a `mammo-eval prepare` folder of the training set")
    q.add_argument("--split", type=Path, required=True)
    q.add_argument("--held-out", type=int, default=0)
    q.add_argument("--count", type=int, default=CALIBRATION_IMAGES)
    q.add_argument("--out", type=Path, required=True)
    g = commands.add_parser("gate", help="compare the INT8 model with FP32; exit 1 if it may not ship")
    g.add_argument("--fp32", type=Path, required=True)
    g.add_argument("--int8", type=Path, required=True)
    g.add_argument("--fp32-eval", type=Path, required=True, help="`mammo-eval evaluate --out` folder of the FP32 model")
    g.add_argument("--int8-eval", type=Path, required=True)
    g.add_argument("--prepared", type=Path, required=True, help="the prepared training set the proxy sets are made from")
    g.add_argument("--split", type=Path, required=True)
    g.add_argument("--fold", type=int, default=0)
    g.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    quantize(args) if args.command == "quantize" else gate(args)


if __name__ == "__main__":
    main()
