#!/usr/bin/env bash
# Where the CPU goes per /predict request at saturation on this machine:
#   1. the raw engine's best images/s for MODEL (examples/bench_engine.rs) → engine core-ms per
#      image when it has both cores to itself;
#   2. the server (BINARY) saturated by wrk (closed loop, CONNECTIONS connections, one real
#      224-px JPEG per request), while /proc gives the CPU time of the server over a window (from
#      3 s in to 1 s before the end; wrk's over its whole run) and perf samples the server to split its
#      time into ONNX Runtime, the kernel (TCP, scheduling, page faults) and the rest (HTTP,
#      JSON, decoding, preprocessing, queueing: the binary and libc).
# Prints core-ms per answered request for each; "outside the engine" is the server's kernel and
# rest. Compare binaries by running it for each, one after another, on an idle machine.
# Usage: [BINARY=…] [MODEL=…] [SERVER_ARGS=…] [IMAGE=…] [SECONDS_EACH=20] [CONNECTIONS=16] [ENGINE_IPS=…]
#        scripts/cpu_budget.sh      (ENGINE_IPS: the raw engine's images/s, measured if not given)
# Needs perf (linux-perf) and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${BINARY:-target/release/mammo-serve}
model=${MODEL:-models/mammo.onnx}
image=${IMAGE:-../shared/data/dphi-mammography/test/Image_1.jpg}
[ -f "$image" ] || image=tests/fixtures/d3b_Image_1.jpg
seconds=${SECONDS_EACH:-20}
connections=${CONNECTIONS:-16}
port=${PORT:-18081}
mkdir -p bench
scripts/setup.sh >/dev/null
cargo build --release --quiet --bin mammo-serve --example bench_engine
if [ -z "${ENGINE_IPS:-}" ]; then
  target/release/examples/bench_engine "$model" "$image" 4 > bench/budget_engine.txt
  ENGINE_IPS=$(sed -n 's/^best_images_per_s=\([0-9.]*\).*/\1/p' bench/budget_engine.txt)
fi
engine=$ENGINE_IPS
scripts/wrk_post.sh "$image" image/jpeg /predict > bench/budget.lua

"$binary" --port "$port" --device cpu --model "$model" ${SERVER_ARGS:-} > bench/budget_server.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null; do sleep 0.1; done
wrk -t2 -c"$connections" -d2s -s bench/budget.lua "http://127.0.0.1:$port" > /dev/null # warm-up

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
/usr/bin/time -f "%U %S" -o bench/budget_wrk_time.txt \
  wrk -t2 -c"$connections" -d"${seconds}s" -s bench/budget.lua "http://127.0.0.1:$port" > bench/budget_wrk.txt &
load=$!
sleep 3
server_start=$(ticks "$server") t_start=$(date +%s.%N)
perf record -q -F 499 -p "$server" -o bench/budget.perf -- sleep $((seconds - 4)) 2> /dev/null
server_end=$(ticks "$server") t_end=$(date +%s.%N)
wait "$load"
perf report -i bench/budget.perf --sort dso --stdio 2> /dev/null | grep '%' > bench/budget_dso.txt

python3 - "$engine" "$hz" "$((server_end - server_start))" "$t_start" "$t_end" "$seconds" <<'PY'
import re, sys
engine_ips, hz, server_ticks = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
window, seconds = float(sys.argv[5]) - float(sys.argv[4]), float(sys.argv[6])
result = dict(kv.split("=") for kv in open("bench/budget_wrk.txt").read().split("RESULT ")[1].split())
rate, errors = float(result["per_s"]), result["errors"]
answered = rate * window  # a closed loop at saturation runs at a steady rate
share = {}
for line in open("bench/budget_dso.txt"):
    if (hit := re.match(r"\s*([\d.]+)%\s+(\S+)", line)):
        name = hit.group(2)
        kind = "onnxruntime" if "onnxruntime" in name else "kernel" if "kernel" in name else "rest"
        share[kind] = share.get(kind, 0) + float(hit.group(1)) / 100
per = lambda ticks: ticks / hz * 1000 / answered
server_ms = per(server_ticks)
load_ms = sum(map(float, open("bench/budget_wrk_time.txt").read().split()[-2:])) * 1000 / (rate * seconds)
outside = server_ms * (share.get("kernel", 0) + share.get("rest", 0))
print(f"raw engine {engine_ips:.1f} images/s; saturation {rate:.1f} answers/s ({rate / engine_ips:.2f} of the "
      f"engine), {errors} errors; {window:.1f} s window, ~{answered:.0f} answers")
print("| core-ms per answered request | value |")
print("|---|---|")
print(f"| raw engine at its best (2 cores ÷ images/s) | {2000 / engine_ips:.2f} |")
print(f"| server, all | {server_ms:.2f} |")
for kind in ("onnxruntime", "kernel", "rest"):
    print(f"| server: {kind} ({100 * share.get(kind, 0):.1f}% of its samples) | {server_ms * share.get(kind, 0):.2f} |")
print(f"| **server outside the engine** (kernel + rest) | **{outside:.2f}** |")
print(f"| wrk (load generator) | {load_ms:.2f} |")
PY
