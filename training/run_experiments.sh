#!/usr/bin/env bash
# The experiments behind the shipped model, in the order they ran (2-core CPU; see README.md).
# Usage: training/run_experiments.sh [DATA_CSV]   (from the repository root; logs in training/runs/)
set -euo pipefail
cd "$(dirname "$0")"
data=${1:-../../shared/data/dphi-mammography/Training_set.csv}
py=../.venv-train/bin/python
mkdir -p runs
# Training reads the set as the server prepares it (the shipped model's full-field steps).
(cd .. && cargo build --quiet --release --bin mammo-eval)
[ -f runs/prepared/dphi/manifest.csv ] || ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/../.ort/lib/libonnxruntime.so} \
  ../target/release/mammo-eval prepare --data "$data" --model ../models/mammo.onnx --out runs/prepared/dphi
data=runs/prepared/dphi
train() { local name=$1; shift; $py -m mammo_train.train --data "$data" --split splits/split.csv --out "runs/$name" "$@" > "runs/$name.log" 2>&1; }

# 1. Lite0 (ImageNet), last stage + head fine-tuned: grouped 5-fold CV, then the same on a leaky
#    random 80/20 split, then the report.
train lite0-last --init lite0 --trainable last --fold all --epochs 12 --patience 3
train lite0-last-leaky --init lite0 --trainable last --leaky --epochs 12 --patience 3
$py -m mammo_train.report runs/lite0-last --leaky runs/lite0-last-leaky > runs/lite0-last-report.log

# 2. The shipped model: every family, epochs = the median best epoch of the CV folds.
epochs=$($py -c "import json,statistics;s=json.load(open('runs/lite0-last/summary.json'));print(max(1,round(statistics.median(f['best_epoch'] for f in s['folds']))))")
train lite0-last-final --init lite0 --trainable last --fold none --epochs "$epochs"

# 3. The other initialisations need full fine-tuning (their frozen layers would be random):
#    fold 0 only, 3 epochs each, at ~8 img/s on this CPU.
train b0-lite0-all-fold0 --init b0-lite0 --trainable all --fold 0 --epochs 3 --lr 3e-4
train b0-scratch-all-fold0 --init b0-scratch --trainable all --fold 0 --epochs 3 --lr 1e-3
echo "experiments done"
