// k6 load test for POST /predict: each iteration posts one real mammogram JPEG.
// Usage (any deployment):
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e IMAGE_DIR=tests/fixtures tests/load/predict.js
// Knobs: VUS (default 4), DURATION (default 30s). Fails if >1% of requests error or p99 > 2 s.
import http from "k6/http";
import { check } from "k6";

const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
const IMAGE_DIR = __ENV.IMAGE_DIR || "tests/fixtures";
const NAMES = (__ENV.IMAGES ||
  "d1b_Image_2.jpg,d1m_Image_3.jpg,d2b_Image_60.jpg,d2m_Image_9.jpg,d3b_Image_1.jpg,d3m_Image_31.jpg,d4b_Image_8.jpg,d4m_Image_83.jpg").split(",");
const IMAGES = NAMES.map((name) => open(`${IMAGE_DIR}/${name}`, "b"));

export const options = {
  vus: Number(__ENV.VUS || 4),
  duration: __ENV.DURATION || "30s",
  thresholds: {
    http_req_failed: ["rate<0.01"],
    http_req_duration: ["p(99)<2000"],
  },
};

export default function () {
  const image = IMAGES[Math.floor(Math.random() * IMAGES.length)];
  const response = http.post(`${BASE_URL}/predict`, image, { headers: { "Content-Type": "image/jpeg" } });
  check(response, {
    "status is 200": (r) => r.status === 200,
    "has a density call": (r) => r.status === 200 && r.json("density.label") !== undefined,
  });
}
