#!/usr/bin/env bash
# The DICOM tools the SR tests (tests/sr.rs) validate our Structured Reports with: dciodvfy
# (dicom3tools) and dsrdump (dcmtk) from Debian, highdicom from PyPI into the git-ignored tools
# venv .ort/tools. Idempotent; installing the Debian packages needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dciodvfy >/dev/null || ! command -v dsrdump >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools dcmtk >/dev/null
fi
[ -x .ort/tools/bin/pip ] || python3 -m venv .ort/tools
.ort/tools/bin/python -c 'import highdicom' 2>/dev/null ||
  .ort/tools/bin/pip install --quiet --disable-pip-version-check highdicom==0.28.2
echo "DICOM tools ready: $(command -v dciodvfy), $(command -v dsrdump), highdicom in .ort/tools"
