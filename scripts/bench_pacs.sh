#!/usr/bin/env bash
# The Orthanc round trip with full-field images (issue #17): a 4-view study (left and right,
# CC and MLO) of 2600×4700 16-bit RLE mammograms (bench/full_field_rle.dcm with its laterality,
# view and UIDs rewritten) is stored in a real Orthanc, pushed to our server with Orthanc's
# STOW-RS client, and the time from the push to the SR found in Orthanc by QIDO-RS is printed,
# ROUNDS times (a new study each round). --study-settle is part of it and printed.
# Usage: scripts/bench_pacs.sh [ROUNDS]   (SETTLE=1)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} settle=${SETTLE:-1}
scripts/setup.sh >/dev/null
scripts/dicom_tools.sh >/dev/null
cargo build --release --quiet --bin mammo-serve
[ -f bench/full_field_rle.dcm ] ||
  .ort/venv/bin/python tests/fixtures/make_dicom_fixtures.py --full-field bench/full_field_rle.dcm
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ours=$(free_port) pacs=$(free_port)
target/release/mammo-serve --port "$ours" --results-outbox "$work/outbox" --study-settle "$settle" \
  --results-stow-url "http://127.0.0.1:$pacs/dicom-web" > "$work/server.log" 2>&1 &
pids+=($!)
cat > "$work/orthanc.json" <<JSON
{"StorageDirectory": "$work/storage", "IndexDirectory": "$work/storage", "HttpPort": $pacs,
 "DicomServerEnabled": false, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
 "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Servers": {"mammo": ["http://127.0.0.1:$ours/dicomweb/"]}}}
JSON
/usr/sbin/Orthanc "$work/orthanc.json" > "$work/orthanc.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$ours/health/ready" >/dev/null && curl -sf "http://127.0.0.1:$pacs/system" >/dev/null; do
  sleep 0.1
done
.ort/venv/bin/python - "$pacs" "$rounds" "$settle" <<'PY'
import copy, io, json, statistics, sys, time, urllib.request
import pydicom
from pydicom.uid import generate_uid

pacs, rounds, settle = f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[2]), float(sys.argv[3])
source = pydicom.dcmread("bench/full_field_rle.dcm")

def call(path, body=None):
    request = urllib.request.Request(pacs + path, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request) as r:
        return json.loads(r.read() or b"null")

times = []
for round in range(rounds):
    study = generate_uid()
    orthanc_study = None
    for side in "LR":
        for view in ("CC", "MLO"):
            ds = copy.deepcopy(source)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, generate_uid(), generate_uid()
            ds.ImageLaterality, ds.ViewPosition = side, view
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            orthanc_study = call("/instances", out.getvalue())["ParentStudy"]
    started = time.monotonic()
    pushed = call("/dicom-web/servers/mammo/stow", json.dumps({"Resources": [orthanc_study], "Synchronous": True}).encode())
    pushed_at = time.monotonic() - started
    while not call(f"/dicom-web/studies/{study}/series?Modality=SR"):
        time.sleep(0.02)
    times.append((pushed_at, time.monotonic() - started))
    print(f"round {round + 1}: 4 × {len(out.getvalue()) / 1e6:.1f} MB pushed in {pushed_at:.2f} s "
          f"(Orthanc's STOW job, {pushed['InstancesCount']} instances); SR in Orthanc {times[-1][1]:.2f} s after the push")
total = [t for _, t in times]
print(f"push → SR stored: median {statistics.median(total):.2f} s, min {min(total):.2f}, max {max(total):.2f} "
      f"(of which --study-settle {settle} s)")
PY
