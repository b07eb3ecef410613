#!/usr/bin/env bash
# /predict at saturation, several server binaries in one sitting: wrk POSTs one image to each
# binary given, one after another, for ROUNDS rounds, and prints answers/s and latency per
# binary and round (alternating binaries keeps the machine's drift out of the comparison).
# IMAGE is the 2600×4700 16-bit RLE full-field DICOM (bench/full_field_rle.dcm, made as
# scripts/bench_dicom.sh makes it) unless given; a .png or .jpg is sent as such.
# Used to decide how the RLE decoder works under load and to compare commits
# (docs/benchmarks.md).
# Usage: [IMAGE=path] [MODEL=path] scripts/bench_saturation.sh "NAME=BINARY NAME=BINARY ..."
#        [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
binaries=$1 rounds=${2:-3} seconds=${3:-20} connections=${4:-8}
image=${IMAGE:-bench/full_field_rle.dcm}
model=${MODEL:-models/mammo.onnx}
scripts/setup.sh >/dev/null
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
mkdir -p bench
[ -f "$image" ] || .ort/venv/bin/python tests/fixtures/make_dicom_fixtures.py --full-field "$image"
case "$image" in
  *.png) content_type=image/png ;;
  *.jpg | *.jpeg) content_type=image/jpeg ;;
  *) content_type=application/dicom ;;
esac
scripts/wrk_post.sh "$image" "$content_type" > bench/post_image.lua
port=18090
for round in $(seq "$rounds"); do
  for pair in $binaries; do
    name=${pair%%=*} binary=${pair#*=}
    "$binary" --model "$model" --port $port --device cpu --log warn >/dev/null 2>&1 &
    server=$!
    until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do
      kill -0 $server 2>/dev/null || { echo "$name did not start" >&2; exit 1; }
      sleep 0.2
    done
    wrk -t2 -c"$connections" -d"${seconds}s" --timeout 30s -s bench/post_image.lua \
      "http://127.0.0.1:$port/predict" | grep RESULT | sed "s/^/round $round $name /"
    kill $server; wait $server 2>/dev/null || true
  done
done
