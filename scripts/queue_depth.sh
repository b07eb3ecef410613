#!/usr/bin/env bash
# What the autoscaler sees (issue #18): mammo_queue_depth sampled every 100 ms while k6 drives
# /predict at constant rates below, at and above what one server answers, with its latency.
# The HorizontalPodAutoscaler's target (deploy/k8s/base/hpa.yaml) is read off this table.
#   scripts/queue_depth.sh "60 120 180 240 300"   (DURATION=15s PORT=18097; SERVER_ARGS for the
#   server, e.g. the CPU image's "--precision int8 --max-batch-size 2")
set -euo pipefail
cd "$(dirname "$0")/.."
rates=${1:-60 120 180 240 300} duration=${DURATION:-15s} port=${PORT:-18097}
scripts/setup.sh >/dev/null
cargo build --release --quiet --bin mammo-serve
mkdir -p bench
target/release/mammo-serve --port "$port" ${SERVER_ARGS:-} > bench/queue_depth_server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.1; done
echo "| offered (req/s) | answered (200/s) | 429 | p50 / p99 (ms) | queue depth: mean / p90 / max |"
echo "|---|---|---|---|---|"
for rate in $rates; do
  python3 - "http://127.0.0.1:$port/metrics" bench/queue_depth_samples.txt <<'PY' &
import sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    while True:
        for line in urllib.request.urlopen(url).read().decode().splitlines():
            if line.startswith("mammo_queue_depth "):
                print(line.split()[1], file=f, flush=True)
        time.sleep(0.1)
PY
  sampler=$!
  BASE_URL=http://127.0.0.1:$port SCENARIO=constant RATE=$rate DURATION=$duration ERROR_RATE=1 \
    DISCARD_BODIES=1 K6_ARGS="--summary-export bench/queue_depth_k6.json" \
    scripts/load_test.sh predict > bench/queue_depth_k6.txt 2>&1 || true
  kill $sampler
  python3 - "$rate" "$duration" <<'PY'
import json, statistics, sys
rate, seconds = sys.argv[1], float(sys.argv[2].rstrip("s"))
depth = sorted(float(x) for x in open("bench/queue_depth_samples.txt"))
k6 = json.load(open("bench/queue_depth_k6.json"))["metrics"]
rejected = int(k6.get("rejected_429", {}).get("count", 0))
ok = int(k6["http_reqs"]["count"]) - rejected - int(k6["http_req_failed"].get("passes", 0))
d = k6["http_req_duration"]
p90 = depth[int(0.9 * (len(depth) - 1))]
print(f"| {rate} | {ok / seconds:.0f} | {rejected} | {d['med']:.0f} / {d['p(99)']:.0f} | "
      f"{statistics.mean(depth):.1f} / {p90:.0f} / {depth[-1]:.0f} |")
PY
done
