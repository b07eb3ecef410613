#!/usr/bin/env bash
# One run, side by side on this machine, of the ways to serve the model here:
#   - the raw engine, FP32 and INT8 (examples/bench_engine: preprocessed tensors straight into
#     ONNX Runtime at its best batch size and session layout; no HTTP, no decoding);
#   - mammo-serve FP32 and INT8, as the CPU image runs it (--max-batch-size 2; OURS_ARGS);
#   - NVIDIA Triton through PyTriton, FP32 and INT8 (dynamic batcher, max batch 8, 2 ms queue
#     delay, two model instances of one thread each; KServe v2, the JPEG as one BYTES element);
#   - a FastAPI + ONNX Runtime wrapper, FP32 (one session on every core).
# Every server decodes the same real 224-px JPEG and applies the model's full preprocessing
# (the peers through their own Python version, scripts/peers/preprocess.py). wrk (little CPU per request) keeps CONNECTIONS requests open for SECONDS per
# server; the servers alternate within each of ROUNDS rounds so the machine's drift falls on all
# alike. Prints each round and the medians (images/s, p50, p99, errors).
# Usage: scripts/bench_peers.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (defaults 3, 20, 16)
# Needs wrk (apt) and the peers' venv, made here in bench/peers-venv from
# scripts/peers/requirements.txt (PyTriton needs numpy < 2 and the system's Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} seconds=${2:-20} connections=${3:-16}
image=${IMAGE:-../shared/data/dphi-mammography/test/Image_1.jpg}
[ -f "$image" ] || image=tests/fixtures/d3b_Image_1.jpg
fp32=models/mammo.onnx int8=models/mammo-int8.onnx
venv=bench/peers-venv
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
scripts/setup.sh >/dev/null
mkdir -p bench
if ! cmp -s scripts/peers/requirements.txt "$venv/.installed"; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/peers/requirements.txt
  cp scripts/peers/requirements.txt "$venv/.installed"
fi
cargo build --release --quiet --bin mammo-serve --example bench_engine

echo "== raw engine"
for precision in fp32 int8; do
  model=$fp32; [ "$precision" = int8 ] && model=$int8
  target/release/examples/bench_engine "$model" "$image" 4 > "bench/engine-$precision.txt"
  sed -n "s/^best_images_per_s=/engine-$precision best_images_per_s=/p" "bench/engine-$precision.txt"
done

# The request bodies: the JPEG for /predict, and KServe v2's binary form for Triton (a JSON
# header, then the BYTES element as a 4-byte little-endian length and the bytes).
python3 - "$image" <<'PY'
import json, struct, sys
jpeg = open(sys.argv[1], "rb").read()
element = struct.pack("<I", len(jpeg)) + jpeg
head = json.dumps({"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                               "parameters": {"binary_data_size": len(element)}}],
                   "outputs": [{"name": "logits", "parameters": {"binary_data": False}},
                               {"name": "ood_score", "parameters": {"binary_data": False}}]}).encode()
open("bench/kserve_body.bin", "wb").write(head + element)
open("bench/kserve_header_length", "w").write(str(len(head)))
PY
scripts/wrk_post.sh "$image" image/jpeg /predict > bench/post_predict.lua
scripts/wrk_post.sh bench/kserve_body.bin application/octet-stream /v2/models/mammo/infer \
  "wrk.headers[\"Inference-Header-Content-Length\"] = \"$(cat bench/kserve_header_length)\"" > bench/post_kserve.lua

port=18600
pid=
stop() { [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=; }
trap stop EXIT
ready() { # URL: wait up to 3 minutes for a 200
  for _ in $(seq 360); do curl -sf -o /dev/null "$1" && return 0; sleep 0.5; done
  echo "not ready: $1" >&2; return 1
}
serve() { # NAME MODEL: start it on $port, wait until ready; set $script, the wrk script that loads it
  case $1 in
    ours-*) target/release/mammo-serve --port "$port" --device cpu --model "$2" ${OURS_ARGS:---max-batch-size 2} >"bench/$1.log" 2>&1 &
            pid=$!; ready "http://127.0.0.1:$port/health/ready"; script=bench/post_predict.lua ;;
    triton-*) (cd scripts/peers && exec "../../$venv/bin/python" triton_peer.py "../../$2" "$port") >"bench/$1.log" 2>&1 &
              pid=$!; ready "http://127.0.0.1:$port/v2/models/mammo/ready"; script=bench/post_kserve.lua ;;
    fastapi-*) (cd scripts/peers && exec "../../$venv/bin/python" fastapi_peer.py "../../$2" "$port") >"bench/$1.log" 2>&1 &
               pid=$!; ready "http://127.0.0.1:$port/health"; script=bench/post_predict.lua ;;
  esac
}
servers="ours-fp32=$fp32 ours-int8=$int8 triton-fp32=$fp32 triton-int8=$int8 fastapi-fp32=$fp32"
: > bench/peers.txt
for round in $(seq "$rounds"); do
  for pair in $servers; do
    name=${pair%%=*} model=${pair#*=}
    serve "$name" "$model"
    wrk -t2 -c"$connections" -d2s -s "$script" "http://127.0.0.1:$port" >/dev/null # warm-up
    result=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$script" "http://127.0.0.1:$port" | grep '^RESULT')
    echo "round=$round server=$name ${result#RESULT }" | tee -a bench/peers.txt
    stop
    port=$((port + 10))
  done
done

python3 - bench/peers.txt bench/engine-fp32.txt bench/engine-int8.txt <<'PY'
import re, statistics, sys
rows = [dict(kv.split("=") for kv in line.split()) for line in open(sys.argv[1])]
engine = {p: float(re.search(r"best_images_per_s=([0-9.]+)", open(f).read()).group(1))
          for p, f in (("fp32", sys.argv[2]), ("int8", sys.argv[3]))}
print()
print("| server | images/s (median of rounds) | rounds | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|")
for p in ("fp32", "int8"):
    print(f"| raw engine {p} (best batch, no HTTP) | {engine[p]:.1f} | | | | |")
med = {}
for name in dict.fromkeys(r["server"] for r in rows):
    mine = [r for r in rows if r["server"] == name]
    m = {k: statistics.median(float(r[k]) for r in mine) for k in ("per_s", "p50_ms", "p99_ms")}
    med[name] = m["per_s"]
    print(f"| {name} | {m['per_s']:.1f} | {' / '.join(r['per_s'] for r in mine)} "
          f"| {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {sum(int(r['errors']) for r in mine)} |")
print()
for p in ("fp32", "int8"):
    print(f"ours-{p} / triton-{p}: {med[f'ours-{p}'] / med[f'triton-{p}']:.2f}x; "
          f"ours-{p} / raw engine {p}: {med[f'ours-{p}'] / engine[p]:.2f}")
print(f"ours-int8 / ours-fp32: {med['ours-int8'] / med['ours-fp32']:.2f}x")
PY
