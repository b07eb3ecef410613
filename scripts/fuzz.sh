#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (libFuzzer through cargo-fuzz, on the nightly toolchain that
# rustup has here) for a time budget each, seeded from tests/fixtures, and prints the
# executions of each and what it found. Crashes land in fuzz/artifacts/TARGET/; each one found
# becomes a regression test.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET=600] [TARGET...]   (two targets run at a time)
# Needs: rustup's nightly toolchain, `cargo install cargo-fuzz`, `make setup` (pydicom for the
# RLE seed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode prepare rle batch)
corpus=fuzz/corpus
mkdir -p "$corpus"/{decode,prepare,rle,batch} fuzz/logs

# Seeds: every fixture image for the decoders; the RLE fixture's frame behind the six bytes
# the rle target reads its geometry from; a JSON and a multipart batch of two fixtures.
for target in decode prepare; do
  cp tests/fixtures/*.jpg tests/fixtures/*.png tests/fixtures/dicom/*.dcm "$corpus/$target/"
done
.ort/venv/bin/python - "$corpus" <<'PY'
import base64, struct, sys, pydicom
from pydicom.encaps import generate_fragmented_frames
corpus = sys.argv[1]
ds = pydicom.dcmread("tests/fixtures/dicom/mg_rle.dcm")
frame = b"".join(next(generate_fragmented_frames(ds.PixelData)))
for k in (1, 4, 7):
    head = struct.pack("<HHBB", ds.Columns - 1, ds.Rows - 1, ds.BitsAllocated // 8 - 1, k - 1)
    open(f"{corpus}/rle/mg_rle_k{k}", "wb").write(head + frame)
small = [open(f"tests/fixtures/{n}", "rb").read() for n in ("d4b_Image_8.jpg", "d1m_Image_3.jpg")]
items = ",".join('{"id":"v%d","image_base64":"%s"}' % (i, base64.b64encode(b).decode()) for i, b in enumerate(small))
open(f"{corpus}/batch/json", "wb").write(b"\x01" + ('{"items":[%s]}' % items).encode())
boundary = b"mammo-fuzz-boundary"
parts = b"".join(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="v%d.jpg"\r\nContent-Type: image/jpeg\r\n\r\n' % i + b + b"\r\n" for i, b in enumerate(small))
open(f"{corpus}/batch/multipart", "wb").write(b"\x00" + parts + b"--" + boundary + b"--\r\n")
PY

# Built once, without a sanitizer: safe Rust needs none to show panics, overflows (debug
# assertions are on), hangs and runaway allocations, and runs several times faster without.
(cd fuzz && cargo +nightly fuzz build -s none)
run() {
  local target=$1
  (cd fuzz && cargo +nightly fuzz run -s none "$target" "corpus/$target" -- \
     -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
     -print_final_stats=1) > "fuzz/logs/$target.log" 2>&1 || true
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i + 1]}" & fi
  wait
done

printf '%-8s %14s %8s %7s  %s\n' target executions exec/s corpus found
for target in "${targets[@]}"; do
  log=fuzz/logs/$target.log
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  found=$(ls "fuzz/artifacts/$target" 2>/dev/null | wc -l)
  size=$(ls "$corpus/$target" | wc -l)
  printf '%-8s %14s %8s %7s  %s\n' "$target" "$runs" "$((runs / seconds))" "$size" \
    "$([ "$found" = 0 ] && echo none || echo "$found in fuzz/artifacts/$target")"
done
