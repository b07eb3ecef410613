#!/usr/bin/env bash
# Soak (issue #16, point 5): DURATION (default 10m) of mixed load from tests/load/soak.js on the
# release server with its default limits: JPEG, PNG, a full-field RLE DICOM, multipart and JSON
# batches, bad inputs and a burst a minute past the concurrency limit. Samples the server's RSS
# every 5 s (bench/NAME_rss.csv) and prints it in minute 2, in the last minute and at its peak,
# the drift from minute 2 to the last minute (goal < 5%), and the answers by status.
# Usage: [BINARY=path] [NAME=soak] [PORT=18092] scripts/soak.sh [DURATION=10m] [server flags...]
#   BINARY: a server binary to soak instead of building target/release/mammo-serve (e.g. one
#   built with --features jemalloc); NAME: prefix of its files in bench/, so that two soaks can
#   run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10m}
shift || true
port=${PORT:-18092}
scripts/setup.sh >/dev/null
k6=$(scripts/install_k6.sh)
binary=${BINARY:-target/release/mammo-serve}
name=${NAME:-soak}
[ -n "${BINARY:-}" ] || cargo build --release --quiet --bin mammo-serve
mkdir -p bench
full_field=bench/full_field_rle.dcm
[ -f "$full_field" ] || .ort/venv/bin/python tests/fixtures/make_dicom_fixtures.py --full-field "$full_field"
"$binary" --port "$port" --log warn "$@" > "bench/${name}_server.log" 2>&1 &
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
) > "bench/${name}_rss.csv" &
sampler=$!
set +e
BASE_URL=http://127.0.0.1:$port DURATION=$duration FULL_FIELD=$full_field \
  "$k6" run --quiet --summary-export "bench/${name}_k6.json" tests/load/soak.js > "bench/${name}_k6.txt" 2>&1
k6_status=$?
set -e
peak=$(rss VmHWM)
kill $sampler 2>/dev/null || true
python3 - "$peak" "$k6_status" "$name" <<'PY'
import csv, json, statistics, sys
peak, k6_status, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = [(int(r["seconds"]), int(r["rss_mb"])) for r in csv.DictReader(open(f"bench/{name}_rss.csv")) if r["rss_mb"]]
# Minute 2 and the last minute, each the median of its samples: one sample may land in a burst.
end = rows[-1][0]
at2 = statistics.median([r for s, r in rows if 120 <= s < 180] or [r for _, r in rows[: len(rows) // 2]])
last = statistics.median(r for s, r in rows if s >= end - 60)
print(f"RSS MB: ready {rows[0][1]}, minute 2 {at2:.0f}, last minute {last:.0f}, peak {peak}")
print(f"drift minute 2 to the last minute: {100 * (last - at2) / at2:+.1f}%")
print("RSS MB at each minute:", " ".join(str(next(r for s, r in rows if s >= 60 * m)) for m in range(end // 60 + 1)))
metrics = json.load(open(f"bench/{name}_k6.json"))["metrics"]
checks = metrics["checks"]
print(f"requests {metrics['http_reqs']['count']}, checks passed {checks['passes']} failed {checks['fails']}, k6 exit {k6_status}")
by_status = {k.split(":")[1].rstrip("}"): int(v["count"]) for k, v in metrics.items() if k.startswith("answers{")}
print("answers by status:", ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items()) if n))
PY
