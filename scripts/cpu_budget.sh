#!/usr/bin/env bash
# Where the CPU goes per /predict request on this machine, to see what the server can reach
# against the raw engine when the load generator shares the cores (issue #5's 90% goal):
#   1. the raw engine's best images/s (examples/bench_engine.rs) → engine core-ms per image;
#   2. the server saturated by k6 (closed loop, VUS users, real JPEGs, bodies discarded), while
#      /proc gives the CPU time of the server and of k6 from 2 s in (past k6's start-up) to
#      k6's end, and perf samples the server to split its time into ONNX Runtime, the kernel
#      (TCP, scheduling) and the rest (HTTP, JSON, decoding, queueing: the binary and libc).
# Prints core-ms per answered request for each, the throughput ceiling they imply
# (engine / (engine + everything else), with 2 cores fully used) and the ratio measured.
# Usage: scripts/cpu_budget.sh [IMAGE_DIR]   VUS (16), SECONDS_EACH (30), PORT (18081).
# Needs perf (linux-perf); run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-../shared/data/dphi-mammography/test}
[ -d "$images" ] || images=tests/fixtures
vus=${VUS:-16}
seconds=${SECONDS_EACH:-30}
port=${PORT:-18081}
model=models/mammo.onnx
mkdir -p bench
scripts/setup.sh >/dev/null
k6=$(scripts/install_k6.sh)
cargo build --release --quiet --bin mammo-serve --example bench_engine
first=$(find "$images" -maxdepth 1 -iname '*.jpg' | sort | sed -n 1p)
target/release/examples/bench_engine "$model" "$first" 5 > bench/budget_engine.txt
engine=$(sed -n 's/^best_images_per_s=\([0-9.]*\).*/\1/p' bench/budget_engine.txt)
decode=$(sed -n 's/.*decode + preprocess p50 \([0-9.]*\) ms.*/\1/p' bench/budget_engine.txt)

list=$(mktemp)
trap 'rm -f "$list"; kill "$server" 2>/dev/null || true' EXIT
find "$(realpath "$images")" -maxdepth 1 -type f -iname '*.jpg' | sort | sed -n 1,500p > "$list"
target/release/mammo-serve --port "$port" --model "$model" > /dev/null 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null; do sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
SCENARIO=saturate VUS=$vus DURATION=${seconds}s DISCARD_BODIES=1 \
  "$k6" run --quiet -e BASE_URL="http://127.0.0.1:$port" -e IMAGE_LIST="$list" -e PWD="$PWD" \
  --summary-export bench/budget_k6.json tests/load/predict.js > bench/budget_k6.txt 2>&1 &
k6_pid=$!
# k6's own CPU time from 2 s in (past its start-up: reading the images, compiling the script)
# to just before it exits, and how long that window was.
sleep 2
k6_start=$(ticks "$k6_pid") before=$(ticks "$server") t_start=$(date +%s.%N)
perf record -q -F 499 -p "$server" -o bench/budget.perf -- sleep $((seconds - 4)) 2> /dev/null &
perf_pid=$!
k6_ticks=$k6_start after=$before t_end=$t_start
while kill -0 "$k6_pid" 2> /dev/null; do
  k6_ticks=$(ticks "$k6_pid" 2> /dev/null || echo "$k6_ticks") after=$(ticks "$server")
  t_end=$(date +%s.%N)
  sleep 0.2
done
window=$(python3 -c "print($t_end - $t_start)")
wait "$k6_pid" || echo "k6: thresholds crossed or k6 failed (see bench/budget_k6.txt)"
wait "$perf_pid" || true
perf report -i bench/budget.perf --sort dso --stdio 2> /dev/null | grep '%' > bench/budget_dso.txt

python3 - "$engine" "$hz" "$((after - before))" "$((k6_ticks - k6_start))" "$window" "$seconds" "$decode" <<'PY'
import json, re, sys
engine_ips, hz, server_ticks, k6_ticks = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
window, seconds, decode = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
m = json.load(open("bench/budget_k6.json"))["metrics"]
rate = (m["http_reqs"]["count"] - m["http_req_failed"]["passes"] - m.get("rejected_429", {}).get("count", 0)) / seconds
answered = rate * window  # a closed loop at saturation runs at a steady rate
share = {}
for line in open("bench/budget_dso.txt"):
    if (hit := re.match(r"\s*([\d.]+)%\s+(\S+)", line)):
        name = hit.group(2)
        kind = "onnxruntime" if "onnxruntime" in name else "kernel" if "kernel" in name else "rest"
        share[kind] = share.get(kind, 0) + float(hit.group(1)) / 100
per = lambda ticks: ticks / hz * 1000 / answered
server_ms, k6_ms = per(server_ticks), per(k6_ticks)
engine_ms = 2 * 1000 / engine_ips  # two cores busy for one image at the engine's best
other = k6_ms + server_ms * (share.get("kernel", 0) + share.get("rest", 0))
print(f"raw engine {engine_ips:.1f} images/s; saturation {rate:.1f} answers/s "
      f"({100 * rate / engine_ips:.0f}% of the engine); {window:.1f} s window, ~{answered:.0f} answers")
print("| core-ms per answered request | value |")
print("|---|---|")
print(f"| raw engine at its best (2 cores / images/s) | {engine_ms:.2f} |")
print(f"| k6 (load generator) | {k6_ms:.2f} |")
print(f"| server, all | {server_ms:.2f} |")
for kind in ("onnxruntime", "kernel", "rest"):
    print(f"| server: {kind} ({100 * share.get(kind, 0):.0f}% of its samples) | {server_ms * share.get(kind, 0):.2f} |")
print(f"| of which one JPEG's decode + preprocess alone (p50, bench_engine) | {decode:.2f} |")
print(f"| everything but the engine (k6 + server kernel + server rest) | {other:.2f} |")
print(f"| implied saturation ceiling: engine / (engine + the rest) | {100 * engine_ms / (engine_ms + other):.0f}% |")
PY
