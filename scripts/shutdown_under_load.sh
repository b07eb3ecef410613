#!/usr/bin/env bash
# SIGTERM in the middle of a k6 run (issue #16, point 8): starts the release server with
# --shutdown-delay, drives /predict at a constant rate with k6 (scripts/load_test.sh against it),
# sends SIGTERM part-way, and checks from the server's own request log that every request it
# received was answered, that it exited 0, and when readiness failed and the listener closed.
# Requests k6 sends after the listener has closed are refused at connect: expected, and what a
# load balancer that honours readiness never sends.
# Usage: scripts/shutdown_under_load.sh   (RATE=30 DURATION=12s STOP_AFTER=4 DELAY=2 PORT=18081)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-18081} rate=${RATE:-30} duration=${DURATION:-12s} stop_after=${STOP_AFTER:-4}
delay=${DELAY:-2}
scripts/setup.sh >/dev/null
scripts/install_k6.sh >/dev/null
cargo build --release --quiet --bin mammo-serve
mkdir -p bench
log=bench/shutdown_server.jsonl
target/release/mammo-serve --port "$port" --shutdown-delay "$delay" --log-format json \
  --log info,ort=warn,tower_http=debug > "$log" 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do
  kill -0 $server 2>/dev/null || { echo "the server did not start" >&2; exit 1; }
  sleep 0.1
done
BASE_URL=http://127.0.0.1:$port SCENARIO=constant RATE=$rate DURATION=$duration ERROR_RATE=1 \
  K6_ARGS="--summary-export bench/shutdown_k6.json" scripts/load_test.sh predict \
  > bench/shutdown_k6.txt 2>&1 &
k6=$!
# The stop comes STOP_AFTER seconds into the load, counted from the first request received.
until grep -q '"path":"/predict"' "$log"; do
  kill -0 $k6 2>/dev/null || { echo "k6 ended before its first request" >&2; exit 1; }
  sleep 0.1
done
sleep "$stop_after"
kill -TERM $server
ready_after=$(for _ in $(seq 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready" || true)
  [ "$code" = 503 ] && { echo "503 stopping"; break; }
  sleep 0.05
done)
set +e
wait $server
status=$?
wait $k6
set -e
count() { grep -c "$1" || true; }
started=$(grep '"path":"/predict"' "$log" | count "started processing request")
finished=$(grep '"path":"/predict"' "$log" | count "finished processing request")
python3 - "$started" "$finished" "$status" "$ready_after" <<'PY'
import json, sys
started, finished, status, ready = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
k6 = json.load(open("bench/shutdown_k6.json"))["metrics"]
sent = k6["http_reqs"]["count"]
failed = k6["http_req_failed"]["passes"] if "passes" in k6["http_req_failed"] else k6["http_req_failed"].get("fails")
print(f"k6 requests sent {sent}, failed (refused after close) {failed}")
print(f"server: /predict requests received {started}, answered {finished}, unanswered {started - finished}")
print(f"readiness after SIGTERM: {ready or 'not seen'}; server exit status {status}")
sys.exit(0 if started == finished and status == 0 else 1)
PY
