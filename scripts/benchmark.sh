#!/usr/bin/env bash
# One benchmark run on this machine, printed as a table:
#   1. the raw engine's best images/s (preprocessed tensors straight into ONNX Runtime, best
#      batch size; examples/bench_engine.rs);
#   2. single-request latency (one k6 user, requests one after another);
#   3. the server's saturation throughput under k6 (closed loop, SAT_VUS users, real JPEGs);
#   4. p50/p99 latency at half of that rate (constant arrival rate).
# Usage: scripts/benchmark.sh [IMAGE_DIR]   (default ../shared/data/dphi-mammography/test when
# present, else tests/fixtures).  MODEL, SERVER_ARGS, SAT_VUS (16), SECONDS_EACH (30).
# Raw k6 summaries land in bench/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-../shared/data/dphi-mammography/test}
[ -d "$images" ] || images=tests/fixtures
model=${MODEL:-models/mammo.onnx}
seconds=${SECONDS_EACH:-30}
mkdir -p bench
scripts/setup.sh >/dev/null
cargo build --release --quiet --bin mammo-serve --example bench_engine
first=$(find "$images" -maxdepth 1 -iname '*.jpg' | sort | sed -n 1p)

echo "== raw engine (no queue, no HTTP)"
target/release/examples/bench_engine "$model" "$first" 5 | tee bench/engine.txt
engine=$(sed -n 's/^best_images_per_s=\([0-9.]*\).*/\1/p' bench/engine.txt)

run() { # NAME VAR=VALUE... : one k6 phase; summary to bench/NAME.json, output to bench/NAME.txt
  local name=$1; shift
  env "$@" DISCARD_BODIES=1 DURATION="${seconds}s" IMAGE_DIR="$images" MODEL="$model" \
    K6_ARGS="--summary-export bench/$name.json" scripts/load_test.sh predict > "bench/$name.txt" 2>&1 \
    || echo "k6 $name: thresholds crossed or k6 failed (see bench/$name.txt)"
}

echo "== single requests, one at a time"; run single SCENARIO=single ITERATIONS=500
echo "== saturation: ${SAT_VUS:-16} closed-loop users"; run saturate SCENARIO=saturate VUS="${SAT_VUS:-16}"
ok_rate() { python3 -c "
import json; m=json.load(open('$1'))['metrics']
print((m['http_reqs']['count'] - m.get('rejected_429',{}).get('count',0) - m['http_req_failed']['passes']) / $seconds)"; }
sat=$(ok_rate bench/saturate.json)
half=$(python3 -c "print(max(1, round($sat / 2)))")
echo "== half load: $half requests/s"; run half SCENARIO=constant RATE="$half" VUS=32

python3 - "$engine" "$sat" "$half" <<'PY'
import json, sys
engine, sat, half = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
m = {n: json.load(open(f"bench/{n}.json"))["metrics"] for n in ("single", "saturate", "half")}
def d(n, s): return m[n]["http_req_duration"][s]
def errors(n):
    r = m[n]; fail = r["http_req_failed"]["passes"]; rej = r.get("rejected_429", {}).get("count", 0)
    return f"{int(fail)} errors, {int(rej)} × 429 of {int(r['http_reqs']['count'])}"
print()
print("| measure | value |")
print("|---|---|")
print(f"| raw engine, best batch (images/s) | {engine:.1f} |")
print(f"| server saturation, /predict 200s per s | {sat:.1f} ({100 * sat / engine:.0f}% of the engine) |")
print(f"| single request p50 / p99 (ms) | {d('single', 'med'):.2f} / {d('single', 'p(99)'):.2f} |")
print(f"| at half load ({half}/s) p50 / p99 (ms) | {d('half', 'med'):.2f} / {d('half', 'p(99)'):.2f} "
      f"(p99 = {d('half', 'p(99)') / d('single', 'med'):.1f}× single p50) |")
print(f"| saturation p50 / p99 (ms) | {d('saturate', 'med'):.2f} / {d('saturate', 'p(99)'):.2f} |")
for n in ("single", "saturate", "half"):
    print(f"| {n}: errors | {errors(n)} |")
PY
