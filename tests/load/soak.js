// k6 soak for scripts/soak.sh: DURATION (default 10m) of mixed traffic at once. JPEG and PNG
// /predict, a full-field RLE DICOM (FULL_FIELD, a path), multipart and JSON /batch, bad inputs
// (random bytes, a truncated JPEG, a DICOM that declares more than it holds), and every
// BURST_EVERY a burst of closed-loop users well past --max-concurrency and the queue, answered
// 429. Every answer must be one the API documents for what was sent.
import http from "k6/http";
import encoding from "k6/encoding";
import { check } from "k6";
import { Counter } from "k6/metrics";
import { BASE_URL, IMAGES, pick } from "./common.js";

const DURATION = __ENV.DURATION || "10m";
const minutes = Number(DURATION.replace("m", ""));
const PNG = open(`${__ENV.PWD}/tests/fixtures/variant_grey16_448x560.png`, "b");
const FULL_FIELD = open(`${__ENV.PWD}/${__ENV.FULL_FIELD}`, "b");
const DICOM = open(`${__ENV.PWD}/tests/fixtures/dicom/mg_left_mlo.dcm`, "b");
const answers = new Counter("answers");
http.setResponseCallback(http.expectedStatuses(200, 400, 413, 422, 429));

const rate = (r, exec) => ({
  executor: "constant-arrival-rate", exec, rate: r, timeUnit: "1s", duration: DURATION,
  preAllocatedVUs: 8, maxVUs: 64,
});
// One burst a minute: 5 s of 96 users sending as fast as they are answered.
const bursts = [];
for (let m = 0; m < minutes; m++) {
  bursts.push({ target: 0, duration: "50s" }, { target: 96, duration: "1s" }, { target: 96, duration: "5s" },
    { target: 0, duration: "1s" }, { target: 0, duration: "3s" });
}

export const options = {
  scenarios: {
    jpeg: rate(8, "jpeg"),
    png: rate(2, "png"),
    full_field: rate(1, "fullField"),
    batch: rate(1, "batch"),
    bad: rate(3, "bad"),
    burst: { executor: "ramping-vus", exec: "jpeg", startVUs: 0, stages: bursts },
  },
  // The per-status thresholds never fail: they make k6 report the answers by status.
  thresholds: Object.assign({ checks: ["rate>0.999"] },
    ...["200", "400", "413", "422", "429"].map((s) => ({ [`answers{status:${s}}`]: ["count>=0"] }))),
  discardResponseBodies: false,
};

function post(path, body, type, expected) {
  const response = http.post(`${BASE_URL}${path}`, body, { headers: { "Content-Type": type } });
  answers.add(1, { status: String(response.status) });
  const ok = check(response, { [`${path} ${type}: ${expected.join("/")}`]: (r) => expected.includes(r.status) });
  if (!ok) console.warn(`unexpected ${response.status} from ${path} (${type}): ${response.error || String(response.body).slice(0, 200)}`);
  return response;
}

export function jpeg() {
  post("/predict", pick().bytes, "image/jpeg", [200, 429]);
}

export function png() {
  post("/predict", PNG, "image/png", [200, 429]);
}

export function fullField() {
  post("/predict", FULL_FIELD, "application/dicom", [200, 429]);
}

// Four items: multipart with repeated `files` parts (built by hand) or JSON, in turn.
export function batch() {
  const chosen = [pick(), pick(), pick(), DICOM];
  if (__ITER % 2 === 0) {
    const items = chosen.map((b, i) => ({ id: `v${i}`, image_base64: encoding.b64encode(b.bytes || b) }));
    post("/batch", JSON.stringify({ items }), "application/json", [200, 429]);
    return;
  }
  const boundary = "mammo-soak-boundary";
  const parts = [];
  chosen.forEach((b, i) => {
    parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="v${i}"\r\n` +
      "Content-Type: application/octet-stream\r\n\r\n", new Uint8Array(b.bytes || b), "\r\n");
  });
  parts.push(`--${boundary}--\r\n`);
  post("/batch", concat(parts), `multipart/form-data; boundary=${boundary}`, [200, 429]);
}

const RANDOM = new Uint8Array(200000).map(() => Math.floor(Math.random() * 256)).buffer;
const TRUNCATED = IMAGES[0].bytes.slice(0, Math.floor(IMAGES[0].bytes.byteLength / 2));
const LYING_DICOM = (() => {
  // An uncompressed DICOM fixture whose pixel data declares 1 GiB more than it holds.
  const bytes = new Uint8Array(open(`${__ENV.PWD}/tests/fixtures/dicom/mg_explicit_le.dcm`, "b"));
  for (let i = 0; i + 12 <= bytes.length; i++) {
    if (bytes[i] === 0xe0 && bytes[i + 1] === 0x7f && bytes[i + 2] === 0x10 && bytes[i + 3] === 0x00) {
      bytes[i + 11] = 0x40;
      break;
    }
  }
  return bytes.buffer;
})();

export function bad() {
  const which = __ITER % 3;
  if (which === 0) post("/predict", RANDOM, "image/jpeg", [400, 429]);
  if (which === 1) post("/predict", TRUNCATED, "image/jpeg", [400, 429]);
  if (which === 2) post("/predict", LYING_DICOM, "application/dicom", [400, 429]);
}

function concat(parts) {
  const encoded = parts.map((p) => (typeof p === "string" ? new Uint8Array(stringBytes(p)) : p));
  const out = new Uint8Array(encoded.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of encoded) {
    out.set(p, at);
    at += p.length;
  }
  return out.buffer;
}

function stringBytes(text) {
  return Array.from(text, (c) => c.charCodeAt(0));
}
