#!/usr/bin/env bash
# The DICOM tools the tests use: dciodvfy (dicom3tools) and dsrdump (dcmtk), which validate our
# Structured Reports (tests/sr.rs), and Orthanc with its DICOMweb plugin, the PACS of
# tests/orthanc.rs, from Debian; highdicom from PyPI into the git-ignored tools venv
# .ort/tools. Idempotent; installing the Debian packages needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dciodvfy >/dev/null || ! command -v dsrdump >/dev/null ||
  [ ! -x /usr/sbin/Orthanc ] || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools dcmtk orthanc orthanc-dicomweb >/dev/null
fi
[ -x .ort/tools/bin/pip ] || python3 -m venv .ort/tools
.ort/tools/bin/python -c 'import highdicom' 2>/dev/null ||
  .ort/tools/bin/pip install --quiet --disable-pip-version-check highdicom==0.28.2
echo "DICOM tools ready: dciodvfy, dsrdump, Orthanc $(/usr/sbin/Orthanc --version | head -1 | awk '{print $2}'), highdicom in .ort/tools"
