#!/usr/bin/env bash
# Memory under big bodies: CLIENTS concurrent MB-megabyte bodies of random bytes (each answered
# 400, or 429 when the byte budget is full) sent ROUNDS times to each server binary given, with
# the shipped model loaded; prints the process's RSS before, its peak (VmHWM) and what it keeps
# after the last round, and the answers by status. Used to pick the allocator and to size
# --max-inflight-bytes (docs/benchmarks.md, "Memory").
# Usage: scripts/memory_bodies.sh "NAME=BINARY[,ENV=VALUE...] ..." [CLIENTS=24] [MB=60] [ROUNDS=3]
#        [server flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
binaries=$1 clients=${2:-24} mb=${3:-60} rounds=${4:-3}
shift $(($# < 4 ? $# : 4))
scripts/setup.sh >/dev/null
mkdir -p bench
body=bench/random_${mb}mb.bin
[ -f "$body" ] || head -c $((mb * 1000 * 1000)) /dev/urandom > "$body"
port=18091
kib() { awk -v key="$1:" '$1 == key {print int($2 / 1024)}' "/proc/$2/status"; }
printf '%-14s %9s %9s %9s  %s\n' binary "start MB" "peak MB" "after MB" answers
for spec in $binaries; do
  name=${spec%%=*} rest=${spec#*=}
  binary=${rest%%,*}
  environment=()
  [ "$binary" = "$rest" ] || IFS=, read -r -a environment <<< "${rest#*,}"
  env "${environment[@]}" "$binary" --port $port --device cpu "$@" > "bench/memory_$name.log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null; do sleep 0.2; done
  start=$(kib VmRSS $pid)
  answers=$(for round in $(seq "$rounds"); do
    for _ in $(seq "$clients"); do
      curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: image/jpeg' \
        --data-binary "@$body" "http://127.0.0.1:$port/predict" &
    done
    wait
  done | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  sleep "${SETTLE:-15}" # let the allocator hand back what it will (jemalloc decays over 10 s)
  printf '%-14s %9s %9s %9s  %s\n' "$name" "$start" "$(kib VmHWM $pid)" "$(kib VmRSS $pid)" "$answers"
  kill $pid; wait $pid 2>/dev/null || true
done
