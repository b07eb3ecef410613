#!/usr/bin/env bash
# models/mammo-int8.onnx from models/mammo.onnx, shipped only through its gate:
#   1. the training set as the model sees it, through the server's preprocessing (mammo-eval prepare);
#   2. static INT8 quantization calibrated on 200 of those images outside the held-out fold;
#   3. mammo-eval on the held-out fold for the FP32 model and the candidate;
#   4. the gate (mammo_train.int8): paired AUC / density accuracy / assessment status, and the
#      flags on the proxy out-of-distribution sets.
# The candidate is copied into models/ only when the gate passes; its table is left in
# runs/int8/gate/gate.md for the model card. About 10 min on the 2-core CPU.
# Usage (from the repository root): training/make_int8.sh [DATA_CSV]
set -euo pipefail
cd "$(dirname "$0")"
data=${1:-../../shared/data/dphi-mammography/Training_set.csv}
py=../.venv-train/bin/python
run=runs/int8
split=splits/split.csv
(cd .. && cargo build --quiet --release --bin mammo-eval)
eval=../target/release/mammo-eval
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/../.ort/lib/libonnxruntime.so}
mkdir -p "$run"
[ -f "$run/prepared/manifest.csv" ] || $eval prepare --data "$data" --model ../models/mammo.onnx --out "$run/prepared"
$py -m mammo_train.int8 quantize --model ../models/mammo.onnx --prepared "$run/prepared" --split "$split" \
  --held-out 0 --out "$run/mammo-int8.onnx"
for precision in fp32 int8; do
  model=../models/mammo.onnx
  [ "$precision" = int8 ] && model=$run/mammo-int8.onnx
  $eval evaluate --data "$data" --split "$split" --fold 0 --model "$model" --out "$run/eval-$precision" >/dev/null
done
$py -W ignore -m mammo_train.int8 gate --fp32 ../models/mammo.onnx --int8 "$run/mammo-int8.onnx" \
  --fp32-eval "$run/eval-fp32" --int8-eval "$run/eval-int8" --prepared "$run/prepared" --split "$split" --fold 0 \
  --out "$run/gate"
cp "$run/mammo-int8.onnx" ../models/mammo-int8.onnx
(cd ../models && sha256sum mammo-int8.onnx > mammo-int8.onnx.sha256)
echo "models/mammo-int8.onnx passed its gate: training/$run/gate/gate.md" >&2
