#!/usr/bin/env bash
# Decode + preprocess time of a full-field DICOM mammogram (issue #6's speed check):
# makes a 2600×4700 16-bit RLE Lossless MG image from a fixture mammogram (pydicom, into
# bench/), times each stage and prepare's CPU (examples/bench_dicom.rs) and redraws the
# before/after picture in docs/. Usage: scripts/bench_dicom.sh [RUNS] [BITS_STORED]
# (BITS_STORED 16 by default; 12 makes the same image with its values ÷ 16, and draws no picture).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
scripts/setup.sh >/dev/null
mkdir -p bench
bits=${2:-16}
if [ "$bits" = 16 ]; then
  image=bench/full_field_rle.dcm picture=docs/full_field_preprocessing.png
else
  image=bench/full_field_rle_${bits}bit.dcm picture=
fi
[ -f "$image" ] || .ort/venv/bin/python tests/fixtures/make_dicom_fixtures.py --full-field "$image" \
  --bits-stored "$bits"
cargo build --release --quiet --example bench_dicom
# shellcheck disable=SC2086
target/release/examples/bench_dicom "$image" "$runs" $picture
