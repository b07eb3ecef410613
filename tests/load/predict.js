// k6 load test for POST /predict: each iteration posts one real mammogram (raw JPEG/PNG body).
//   k6 run -e BASE_URL=http://HOST:8080 -e SCENARIO=constant -e RATE=50 tests/load/predict.js
// Knobs and image selection: tests/load/common.js. scripts/load_test.sh installs k6 and runs it.
import http from "k6/http";
import { check } from "k6";
import { BASE_URL, DISCARD_BODIES, pick, record, scenario, thresholds } from "./common.js";

export const options = { scenarios: { predict: scenario() }, thresholds, discardResponseBodies: DISCARD_BODIES };

export default function () {
  const image = pick();
  const type = image.name.toLowerCase().endsWith(".png") ? "image/png" : "image/jpeg";
  const response = http.post(`${BASE_URL}/predict`, image.bytes, { headers: { "Content-Type": type } });
  record(response);
  check(response, {
    "200 or deliberate 429": (r) => r.status === 200 || r.status === 429,
    "200 has a density call": (r) => DISCARD_BODIES || r.status !== 200 || r.json("density.label") !== undefined,
  });
}
