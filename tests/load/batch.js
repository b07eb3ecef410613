// k6 load test for POST /batch: each iteration posts BATCH_ITEMS (default 8) real mammograms as
// JSON {items: [{id, image_base64}]} (k6 cannot repeat a multipart field without a polyfill
// fetched from the internet).
//   k6 run -e BASE_URL=http://HOST:8080 -e SCENARIO=constant -e RATE=10 tests/load/batch.js
// Knobs and image selection: tests/load/common.js.
import http from "k6/http";
import encoding from "k6/encoding";
import { check } from "k6";
import { BASE_URL, DISCARD_BODIES, IMAGES, record, scenario, thresholds } from "./common.js";

export const options = { scenarios: { batch: scenario() }, thresholds, discardResponseBodies: DISCARD_BODIES };
const ITEMS = Number(__ENV.BATCH_ITEMS || 8);
const ENCODED = IMAGES.map((image) => ({ id: image.name, image_base64: encoding.b64encode(image.bytes) }));

export default function () {
  const items = [];
  for (let i = 0; i < ITEMS; i++) {
    items.push(ENCODED[Math.floor(Math.random() * ENCODED.length)]);
  }
  const response = http.post(`${BASE_URL}/batch`, JSON.stringify({ items }), { headers: { "Content-Type": "application/json" } });
  record(response);
  check(response, {
    "200 or deliberate 429": (r) => r.status === 200 || r.status === 429,
    "every item answered": (r) => DISCARD_BODIES || r.status !== 200 || r.json("results").filter((x) => x.ok).length === ITEMS,
  });
}
