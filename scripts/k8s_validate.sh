#!/usr/bin/env bash
# Renders each Kubernetes overlay (deploy/k8s/overlays/*) with `kubectl kustomize` and validates
# what it renders, and the Prometheus Adapter rule, with `kubernetes-validate --strict` (offline
# schemas, PyPI) against the oldest and the newest Kubernetes the manifests support (issue #18).
# Usage: scripts/k8s_validate.sh   (VERSIONS="1.25.0 1.37.0")
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${VERSIONS:-1.25.0 1.37.0}
command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is needed to render the overlays" >&2; exit 1; }
validate=.ort/tools/bin/kubernetes-validate
[ -x "$validate" ] || {
  [ -x .ort/tools/bin/pip ] || python3 -m venv .ort/tools
  .ort/tools/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  for version in $versions; do
    "$validate" --strict --quiet -k "$version" "$out/$name.yaml"
    echo "overlay $name: $(grep -c '^kind:' "$out/$name.yaml") resources valid on Kubernetes $version"
  done
done
for version in $versions; do
  "$validate" --strict --quiet -k "$version" deploy/k8s/prometheus-adapter/rules.yaml
done
echo "prometheus-adapter/rules.yaml valid on Kubernetes ${versions// /, }"
