#!/usr/bin/env bash
# Installs what the server needs beside Cargo: ONNX Runtime 1.31.1 from the PyPI wheel, in a
# Python venv at .ort/venv, with its shared library copied to .ort/lib/ (the binary's default
# --ort-lib). Idempotent; everything lands in the git-ignored .ort/ folder.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.ort/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s scripts/requirements.txt "$venv/.installed" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt "$venv/.installed"
fi

capi=$("$venv/bin/python" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')
mkdir -p .ort/lib
cp -f "$capi"/libonnxruntime.so.1.31.1 "$capi"/libonnxruntime_providers_shared.so .ort/lib/
ln -sf libonnxruntime.so.1.31.1 .ort/lib/libonnxruntime.so
echo "ONNX Runtime ready: .ort/lib/libonnxruntime.so -> libonnxruntime.so.1.31.1"
