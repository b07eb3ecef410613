#!/usr/bin/env bash
# Decode + preprocess time of a full-field DICOM mammogram (issue #6's speed check):
# makes a 2600×4700 16-bit RLE Lossless MG image from a fixture mammogram (pydicom, into
# bench/), times each stage and prepare's CPU (examples/bench_dicom.rs) and redraws the
# before/after picture in docs/. Usage: scripts/bench_dicom.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
scripts/setup.sh >/dev/null
mkdir -p bench
image=bench/full_field_rle.dcm
[ -f "$image" ] || .ort/venv/bin/python tests/fixtures/make_dicom_fixtures.py --full-field "$image"
cargo build --release --quiet --example bench_dicom
target/release/examples/bench_dicom "$image" "$runs" docs/full_field_preprocessing.png
