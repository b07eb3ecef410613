// Shared by the k6 scripts: the images to send, the timing-header trends and the thresholds.
//
// Images: IMAGE_LIST names a text file with one image path per line (absolute, or relative to
// the directory k6 runs in: PWD); scripts/load_test.sh writes one from a folder. Without it the
// eight fixture JPEGs in tests/fixtures are used.
import http from "k6/http";
import { Counter, Trend } from "k6/metrics";

export const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
// DISCARD_BODIES=1 skips reading response bodies (and the body checks): less k6 CPU per request,
// for benchmarks where k6 shares the machine with the server.
export const DISCARD_BODIES = __ENV.DISCARD_BODIES === "1";

const FIXTURES = ["d1b_Image_2", "d1m_Image_3", "d2b_Image_60", "d2m_Image_9", "d3b_Image_1", "d3m_Image_31", "d4b_Image_8", "d4m_Image_83"]
  .map((n) => `tests/fixtures/${n}.jpg`);

function imagePaths() {
  if (!__ENV.IMAGE_LIST) return FIXTURES;
  return open(absolute(__ENV.IMAGE_LIST)).split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

// k6 resolves open() relative to the script; callers think relative to where they run k6.
function absolute(path) {
  return path.startsWith("/") ? path : `${__ENV.PWD}/${path}`;
}

export const IMAGES = imagePaths().map((p) => ({ name: p.split("/").pop(), bytes: open(absolute(p), "b") }));

export function pick() {
  return IMAGES[Math.floor(Math.random() * IMAGES.length)];
}

// The server's own timing headers, as trends (milliseconds).
const queueTime = new Trend("server_queue_time", true);
const inferenceTime = new Trend("server_inference_time", true);
const totalTime = new Trend("server_total_time", true);
// 429s are deliberate backpressure, not errors: counted apart and not in http_req_failed.
export const rejected = new Counter("rejected_429");
http.setResponseCallback(http.expectedStatuses(200, 429));

export function record(response) {
  if (response.status === 429) {
    rejected.add(1);
    return;
  }
  const ms = (h) => Number(response.headers[h]);
  if (response.status === 200) {
    queueTime.add(ms("X-Queue-Time"));
    inferenceTime.add(ms("X-Inference-Time"));
    totalTime.add(ms("X-Total-Time"));
  }
}

// Scenario from SCENARIO: constant (RATE req/s), ramp (0 to RATE), saturate (VUS closed-loop
// users), single (one user, ITERATIONS requests one after another). DURATION for all but single.
export function scenario() {
  const rate = Number(__ENV.RATE || 50);
  const duration = __ENV.DURATION || "30s";
  const vus = Number(__ENV.VUS || 32);
  switch (__ENV.SCENARIO || "constant") {
    case "constant":
      return { executor: "constant-arrival-rate", rate, timeUnit: "1s", duration, preAllocatedVUs: vus, maxVUs: vus * 4 };
    case "ramp":
      return { executor: "ramping-arrival-rate", startRate: 1, timeUnit: "1s", preAllocatedVUs: vus, maxVUs: vus * 4,
        stages: [{ target: rate, duration }, { target: rate, duration: "10s" }] };
    case "saturate":
      return { executor: "constant-vus", vus, duration };
    case "single":
      return { executor: "shared-iterations", vus: 1, iterations: Number(__ENV.ITERATIONS || 300), maxDuration: "10m" };
    default:
      throw new Error(`unknown SCENARIO ${__ENV.SCENARIO}`);
  }
}

// Fails the run when more than ERROR_RATE of requests error (429 excepted) or p99 > P99_MS.
export const thresholds = {
  http_req_failed: [`rate<${__ENV.ERROR_RATE || 0.01}`],
  http_req_duration: [`p(99)<${__ENV.P99_MS || 2000}`],
};
