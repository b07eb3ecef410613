#!/usr/bin/env bash
# Soak (issue #16, point 5): DURATION (default 10m) of mixed load from tests/load/soak.js on the
# release server with its default limits: JPEG, PNG, a full-field RLE DICOM, multipart and JSON
# batches, bad inputs and a burst a minute past the concurrency limit. Samples the server's RSS
# every 5 s (bench/soak_rss.csv) and prints it at minute 2, at the end and at its peak, the
# drift from minute 2 to the end (goal < 5%), and the answers by status.
# Usage: scripts/soak.sh [DURATION=10m] [server flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10m}
shift || true
port=${PORT:-18092}
scripts/setup.sh >/dev/null
k6=$(scripts/install_k6.sh)
cargo build --release --quiet --bin mammo-serve
mkdir -p bench
full_field=bench/full_field_rle.dcm
[ -f "$full_field" ] || .ort/venv/bin/python tests/fixtures/make_dicom_fixtures.py --full-field "$full_field"
target/release/mammo-serve --port "$port" --log warn "$@" > bench/soak_server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do
  kill -0 $server 2>/dev/null || { echo "the server did not start" >&2; exit 1; }
  sleep 0.2
done
rss() { awk -v key="$1:" '$1 == key {print int($2 / 1024)}' "/proc/$server/status"; }
(
  echo "seconds,rss_mb"
  start=$(date +%s)
  while kill -0 $server 2>/dev/null; do
    echo "$(($(date +%s) - start)),$(rss VmRSS)"
    sleep 5
  done
) > bench/soak_rss.csv &
sampler=$!
set +e
BASE_URL=http://127.0.0.1:$port DURATION=$duration FULL_FIELD=$full_field \
  "$k6" run --quiet --summary-export bench/soak_k6.json tests/load/soak.js > bench/soak_k6.txt 2>&1
k6_status=$?
set -e
peak=$(rss VmHWM)
kill $sampler 2>/dev/null || true
python3 - "$peak" "$k6_status" <<'PY'
import csv, json, sys
peak, k6_status = int(sys.argv[1]), int(sys.argv[2])
rows = [(int(r["seconds"]), int(r["rss_mb"])) for r in csv.DictReader(open("bench/soak_rss.csv")) if r["rss_mb"]]
at2 = next((rss for s, rss in rows if s >= 120), rows[len(rows) // 2][1])
end = rows[-1][1]
print(f"RSS MB: ready {rows[0][1]}, minute 2 {at2}, end ({rows[-1][0]} s) {end}, peak {peak}")
print(f"drift minute 2 to end: {100 * (end - at2) / at2:+.1f}%")
metrics = json.load(open("bench/soak_k6.json"))["metrics"]
checks = metrics["checks"]
print(f"requests {metrics['http_reqs']['count']}, checks passed {checks['passes']} failed {checks['fails']}, k6 exit {k6_status}")
by_status = {k.split(":")[1].rstrip("}"): int(v["count"]) for k, v in metrics.items() if k.startswith("answers{")}
print("answers by status:", ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items()) if n))
PY
