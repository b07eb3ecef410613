#!/usr/bin/env bash
# Prints a wrk script that POSTs one file's bytes on every request and ends its run with one line
#   RESULT per_s=… p50_ms=… p99_ms=… errors=…
# (answers per second, latency percentiles, non-2xx/3xx + connect + timeout errors), which the
# benchmark scripts read.
# Usage: scripts/wrk_post.sh FILE CONTENT_TYPE [URL_PATH] [EXTRA_LUA_LINE] > script.lua
set -euo pipefail
file=$1 content_type=$2 path=${3:-} extra=${4:-}
cat <<LUA
local f = assert(io.open("$file", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "$content_type"
${path:+wrk.path = \"$path\"}
$extra
done = function(summary, latency, requests)
  io.write(string.format("RESULT per_s=%.2f p50_ms=%.1f p99_ms=%.1f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, summary.errors.status + summary.errors.connect + summary.errors.timeout))
end
LUA
