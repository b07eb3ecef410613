#!/usr/bin/env bash
# The site workflow end to end on a synthetic site (README, "Validate and fine-tune on your own
# studies"), timing each step: make the site (full-field DICOMs from labelled DPhi images),
# validate the shipped model on it, prepare it, fine-tune, export and evaluate the two models
# paired on the held-out patients. It proves the plumbing, not skill: the images are the
# training archive's own.
# Usage: scripts/site_demo.sh [OUT] [PATIENTS] [EPOCHS] [SOURCE]   (defaults bench/site, 8, 2, tests/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/site}
patients=${2:-8}
epochs=${3:-2}
source=${4:-tests/fixtures}
py=.venv-train/bin/python
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/lib/libonnxruntime.so}
cargo build --quiet --release --bin mammo-eval
export MAMMO_EVAL=$PWD/target/release/mammo-eval
rm -rf "$out"
step() {
  local name=$1; shift
  local started=$SECONDS
  "$@" > "$out.$name.log" 2>&1 || { cat "$out.$name.log"; exit 1; }
  echo "RESULT step=$name seconds=$((SECONDS - started))"
}
mkdir -p "$(dirname "$out")"
step site bash -c "cd training && ../$py -m mammo_train.synthetic_site --out ../$out --patients $patients --source ../$source"
step validate "$MAMMO_EVAL" evaluate --manifest "$out/site.csv" --out "$out/validation"
step prepare "$MAMMO_EVAL" prepare --manifest "$out/site.csv" --out "$out/prepared"
step finetune bash -c "cd training && ../$py -W ignore -m mammo_train.finetune --prepared ../$out/prepared --manifest ../$out/site.csv --out ../$out/ft --epochs $epochs"
grep -E "^  .*epoch" "$out.finetune.log" | sed 's/^  /  /' || true
cat "$out/ft/paired.md"
