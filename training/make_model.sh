#!/usr/bin/env bash
# The shipped model, from the data to models/mammo.onnx, with the defaults of every step. Five
# trainings of one recipe, fold 0 held out by all: four cross-fitted runs, each validating on a
# whole fold K of folds 1-4 and training on the other three, are each scored on their fold; the
# refit run trains on all four folds and is calibrated (temperature, threshold, out-of-
# distribution detector and its threshold) on the four runs' pooled predictions, with the
# detector's Gaussian fitted on its own training images. Every calibration scores an image by the
# mean logits of VIEWS test-time views (2: the image and its mirror image; training/README.md,
# "Test-time views"), as the exported graph does. Then the export (logits and ood_score,
# every number from the runs' files) and the held-out report against the model it replaces.
# About 2 hours of training on the 2-core CPU (~20 min a cross-fitted run, ~30 min the refit);
# `--device cuda` is not needed.
# Usage (from the repository root): [VIEWS=2] training/make_model.sh VERSION [DATA_CSV] [BASELINE_ONNX]
set -euo pipefail
cd "$(dirname "$0")"
version=$1
data=${2:-../../shared/data/dphi-mammography/Training_set.csv}
baseline=${3:-}
views=${VIEWS:-2}
py=../.venv-train/bin/python
xfit=(runs/v$version-xfit-{1,2,3,4})
run=runs/v$version
# glibc hands large freed blocks back to the kernel and faults them in again every batch:
# keeping them cuts a quarter of CPU training time (training/README.md).
export MALLOC_TRIM_THRESHOLD_=10000000000 MALLOC_MMAP_THRESHOLD_=10000000000
(cd .. && cargo build --quiet --release --bin mammo-eval)
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/../.ort/lib/libonnxruntime.so}
# The images as the server feeds them to the model (the shipped model's preprocessing).
prepared=runs/prepared
[ -f "$prepared/dphi/manifest.csv" ] || ../target/release/mammo-eval prepare --data "$data" --out "$prepared/dphi" --model ../models/mammo.onnx
[ -f "$prepared/dphi-test/manifest.csv" ] || ../target/release/mammo-eval prepare --data "$(dirname "$data")/test" --out "$prepared/dphi-test" --model ../models/mammo.onnx
for k in 1 2 3 4; do
  $py -m mammo_train.train --data "$prepared/dphi" --out "${xfit[k-1]}" --inner "$k" --inner-share 1 --resume
  $py -W ignore -m mammo_train.calibrate "${xfit[k-1]}" --views "$views"
done
$py -m mammo_train.train --data "$prepared/dphi" --out "$run" --refit --resume
$py -W ignore -m mammo_train.calibrate "$run" --from "${xfit[@]}" --views "$views"
$py -m mammo_train.export --run "$run" --version "$version" --check-images ../tests/fixtures \
  --trained-on "DPhi mammography (INbreast-derived; Lin & Huang 2020, CC BY 4.0): training/splits/split.csv folds 1-4 ($($py -c "import json,sys; print(json.load(open(sys.argv[1]))['folds'][0]['train_images'])" "$run/summary.json") distinct files); temperature, threshold and OOD threshold from the same recipe's four cross-fitted runs over folds 1-4 (each fold scored by the run that did not train on it); fold 0 held out" \
  --out ../models/mammo.onnx
if [ -n "$baseline" ]; then
  $py -W ignore -m mammo_train.heldout "$run" --model ../models/mammo.onnx --baseline "$baseline" \
    --test-prepared "$prepared/dphi-test"
fi
