#!/usr/bin/env bash
# Builds the CPU image from the Dockerfile's `cpu` target and runs it (issue #18, point 1), then
# starts the compose file's CPU profile through podman-compose. Checks: /health/ready, a /predict
# of a fixture with the shipped model answered 200, the image's own HEALTHCHECK, a non-root user,
# exit status 0 on SIGTERM. Prints the image size and the start-to-ready time.
#
# No registry is reachable here, so (scripts/container_host.sh) the Debian base is made with
# debootstrap, and the binary comes from the host (BINARY=prebuilt: the host is Debian 12 with
# Rust 1.95, what the `build` stage would use) instead of the Rust image. Both are build
# arguments of the same target a user builds; everything else in the image is built as written.
# Needs root (rootful podman). Usage: scripts/container_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
image=localhost/mammo-serve:cpu
name=mammo-serve-ci-$$
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

scripts/container_host.sh
scripts/setup.sh >/dev/null
cargo build --release --quiet --bin mammo-serve

secret=()
[ -f "$ca" ] && secret=(--secret "id=ca-bundle,src=$ca")
start=$(date +%s)
podman build --quiet ${NO_CACHE:+--no-cache} --format docker --target cpu --build-arg BINARY=prebuilt \
  "${secret[@]}" -t "$image" . >/dev/null
echo "image $image: built in $(($(date +%s) - start)) s${NO_CACHE:+ without cache}, $(
  podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
# Of the GPU target, the stage that needs no CUDA base image and no NVIDIA index: onnxruntime-gpu.
podman build --quiet --format docker --target ort-gpu "${secret[@]}" . >/dev/null
echo "GPU target: stage ort-gpu (onnxruntime-gpu 1.31.1) built"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits for /health/ready on $1 while container $2 runs; prints the seconds it took.
wait_ready() {
  python3 - "$1" "$2" <<'PY'
import subprocess, sys, time, urllib.request
url, name = sys.argv[1], sys.argv[2]
start = time.monotonic()
while time.monotonic() - start < 120:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
            if r.status == 200:
                print(f"{time.monotonic() - start:.2f}")
                sys.exit(0)
    except OSError:
        pass
    state = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name],
                           capture_output=True, text=True).stdout.strip()
    if state != "true":
        sys.exit(f"container {name} stopped before it was ready")
    time.sleep(0.1)
sys.exit(f"{url} not ready after 120 s")
PY
}
# POSTs a fixture to $1/predict (curl options after it): a 200 with the model's answer and the
# decision-support notice, from the INT8 model (the CPU image's default).
check_predict() {
  local url=$1
  shift
  curl -sS --fail-with-body "$@" -F file=@tests/fixtures/d3b_Image_1.jpg "$url/predict" | python3 -c '
import json, sys
answer = json.load(sys.stdin)
assert answer["notice"] and answer["model"]["version"], answer
assert answer["model"]["precision"] == "int8", answer["model"]
density = answer.get("density", {}).get("label", "not given")
status, version = answer["assessment"]["status"], answer["model"]["version"]
print(f"predict: 200, assessment {status}, density {density}, model {version} int8")'
}

# podman 4.3 reports each healthcheck timer it cannot give to systemd (none runs here).
podman() { command podman "$@" 2> >(grep -v 'systemd connection' >&2); }
work=$(mktemp -d)
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# Run as the Kubernetes base runs it (deploy/k8s/base): its flags (config.env), an API keys file
# mounted read-only, a read-only root with only /tmp writable, no capabilities, no privilege
# escalation, metrics on their own port; the model is the one in the image.
key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
echo "ci:$(printf %s "$key" | sha256sum | cut -d' ' -f1)" > "$work/api-keys"
chmod 755 "$work" && chmod 644 "$work/api-keys"
port=$(free_port) metrics_port=$(free_port)
# The image's HEALTHCHECK is run on demand below: podman's timer for it needs systemd.
podman run -d --name "$name" --health-interval disable -p "127.0.0.1:$port:8080" \
  -p "127.0.0.1:$metrics_port:9090" --env-file deploy/k8s/base/config.env \
  -v "$work:/etc/mammo:ro" --read-only --read-only-tmpfs=false --tmpfs /tmp \
  --cap-drop ALL --security-opt no-new-privileges "$image" >/dev/null
ready=$(wait_ready "http://127.0.0.1:$port" "$name") || { podman logs "$name" 2>&1 | tail -5 >&2; exit 1; }
echo "container: ready ${ready} s after podman run"
check_predict "http://127.0.0.1:$port" -H "Authorization: Bearer $key"
code=$(curl -s -o /dev/null -w '%{http_code}' -F file=@tests/fixtures/d3b_Image_1.jpg "http://127.0.0.1:$port/predict")
[ "$code" = 401 ] || { echo "/predict without a key answered $code, not 401" >&2; exit 1; }
echo "predict without a key: 401"
curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -q '^mammo_queue_depth ' ||
  { echo "no mammo_queue_depth on the metrics port (the autoscaler's metric)" >&2; exit 1; }
echo "metrics port: mammo_queue_depth present"
uid=$(podman exec "$name" id -u)
[ "$uid" != 0 ] || { echo "the container runs as root" >&2; exit 1; }
echo "user: uid $uid"
podman healthcheck run "$name" >/dev/null && echo "HEALTHCHECK: healthy" ||
  { echo "the image's HEALTHCHECK failed" >&2; exit 1; }
stopping=$(date +%s.%N)
podman stop -t 30 "$name" >/dev/null
status=$(podman inspect -f '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || { echo "exit status $status after SIGTERM" >&2; podman logs "$name" | tail -5 >&2; exit 1; }
echo "SIGTERM: exit status 0 after $(python3 -c "import time; print(f'{time.time() - $stopping:.1f}')") s (MAMMO_SHUTDOWN_DELAY $(grep -oP 'SHUTDOWN_DELAY=\K.*' deploy/k8s/base/config.env) s)"
cleanup

# The compose file's CPU profile, as `docker compose --profile cpu up -d mammo-serve-cpu` starts it.
[ -x .ort/tools/bin/podman-compose ] || {
  python3 -m venv .ort/tools && .ort/tools/bin/pip install --quiet --disable-pip-version-check podman-compose==1.6.0
}
project=mammo-ci-$$
log=$(mktemp)
# podman-compose's own output goes to $log, shown if a step fails.
compose() {
  MAMMO_PUBLISH="127.0.0.1:$port" .ort/tools/bin/podman-compose -p "$project" --profile cpu "$@" \
    >>"$log" 2>&1 || { cat "$log" >&2; return 1; }
}
trap 'compose down -t 30 || true; rm -f "$log"' EXIT
port=$(free_port)
compose up -d mammo-serve-cpu
ready=$(wait_ready "http://127.0.0.1:$port" "${project}_mammo-serve-cpu_1")
echo "compose (podman-compose, profile cpu): ready ${ready} s after up"
check_predict "http://127.0.0.1:$port"
compose down -t 30
