//! Prometheus metrics through the `metrics` facade, rendered by `metrics-exporter-prometheus`
//! for `GET /metrics`. Each server owns its recorder instead of installing the process-wide
//! one: a library should not take over its host's recorder, and tests run several servers in
//! one process, each of which must count only its own requests.

use crate::engine::Observer;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::Arc;
use std::time::Duration;

/// Bucket bounds in seconds for latencies: 1 ms to 10 s.
const SECONDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Bucket bounds for engine batch sizes.
const BATCH_SIZES: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0];

const REQUESTS: &str = "mammo_http_requests_total";
const REQUEST_SECONDS: &str = "mammo_http_request_duration_seconds";
const IN_FLIGHT: &str = "mammo_http_requests_in_flight";
const QUEUE_WAIT: &str = "mammo_queue_wait_seconds";
const INFERENCE: &str = "mammo_inference_duration_seconds";
const BATCH_SIZE: &str = "mammo_batch_size";
const IMAGES: &str = "mammo_images_inferred_total";
const QUEUE_DEPTH: &str = "mammo_queue_depth";
const QUEUE_CAPACITY: &str = "mammo_queue_capacity";
const MODEL_INFO: &str = "mammo_model_info";
const ASSESSMENTS: &str = "mammo_assessments_total";
const BODY_BYTES_HELD: &str = "mammo_request_body_bytes_held";
const BODY_BYTES_BUDGET: &str = "mammo_request_body_bytes_budget";
const RESULTS: &str = "mammo_results_total";
const RESULTS_WAITING: &str = "mammo_results_outbox_depth";
const STUDIES_PENDING: &str = "mammo_results_pending_studies";

/// Every metric with its help text.
const HELP: [(&str, &str); 16] = [
    (REQUESTS, "HTTP requests answered, by route and status."),
    (REQUEST_SECONDS, "End-to-end request time, by route."),
    (IN_FLIGHT, "Requests being handled now."),
    (QUEUE_WAIT, "Time an image waited in the inference queue."),
    (INFERENCE, "Time of one engine run (a batch)."),
    (BATCH_SIZE, "Images per engine run."),
    (IMAGES, "Images run through the model."),
    (QUEUE_DEPTH, "Images waiting for an engine worker."),
    (
        QUEUE_CAPACITY,
        "Most images the inference queue holds (--max-queue-size).",
    ),
    (MODEL_INFO, "The loaded model (1 once loaded)."),
    (
        ASSESSMENTS,
        "Images answered, by assessment status (assessed, not_assessable).",
    ),
    (
        BODY_BYTES_HELD,
        "Request body bytes charged to requests being handled now.",
    ),
    (
        BODY_BYTES_BUDGET,
        "Most request body bytes held at once (--max-inflight-bytes).",
    ),
    (
        RESULTS,
        "DICOM SR results by outcome of a STOW-RS attempt: sent, retried (PACS unreachable or 5xx), refused (4xx: kept for an operator).",
    ),
    (RESULTS_WAITING, "DICOM SR results waiting in the outbox for the PACS."),
    (
        STUDIES_PENDING,
        "Studies received over STOW-RS waiting to settle before their SR is made.",
    ),
];

/// What the server and its engine record.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    queue_wait: Histogram,
    inference: Histogram,
    batch_size: Histogram,
    images: Counter,
    in_flight: Gauge,
}

/// Gauges read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (label, value) pairs describing the loaded model; empty while loading.
    pub model: Vec<(&'static str, String)>,
    /// Images waiting for an engine worker.
    pub queue_depth: usize,
    /// Most images the queue holds.
    pub queue_capacity: usize,
    /// Request body bytes charged now, and the budget they are charged to.
    pub body_bytes_held: usize,
    pub body_bytes_budget: usize,
    /// With a results outbox: (SRs waiting for the PACS, studies waiting to settle).
    pub results: Option<(usize, usize)>,
}

/// Holds one request in the in-flight gauge until dropped (also when the client goes away
/// and the request is abandoned).
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &BATCH_SIZES))
            .expect("bucket bounds are not empty")
            .build_recorder();
        for (name, help) in HELP {
            let key = KeyName::from_const_str(name);
            if name.ends_with("_total") {
                recorder.describe_counter(key, None, help.into());
            } else if name.ends_with("_seconds") || name == BATCH_SIZE {
                recorder.describe_histogram(key, None, help.into());
            } else {
                recorder.describe_gauge(key, None, help.into());
            }
        }
        let handle = recorder.handle();
        let metrics = Metrics {
            queue_wait: recorder.register_histogram(&Key::from_static_name(QUEUE_WAIT), &META),
            inference: recorder.register_histogram(&Key::from_static_name(INFERENCE), &META),
            batch_size: recorder.register_histogram(&Key::from_static_name(BATCH_SIZE), &META),
            images: recorder.register_counter(&Key::from_static_name(IMAGES), &META),
            in_flight: recorder.register_gauge(&Key::from_static_name(IN_FLIGHT), &META),
            recorder,
            handle,
        };
        // Present from the first scrape, before any request has been counted.
        metrics.counter(REQUESTS, vec![]).absolute(0);
        metrics
    }
}

/// Where our metrics come from, for the recorder's bookkeeping.
static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Metrics {
    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    /// A request entered the server; it counts as in flight until the guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.increment(1.0);
        InFlight(Arc::clone(self))
    }

    /// A request was answered with `status` after `elapsed`.
    pub fn request_finished(&self, route: &str, status: u16, elapsed: Duration) {
        let labels = vec![
            Label::new("route", route.to_string()),
            Label::new("status", status.to_string()),
        ];
        self.counter(REQUESTS, labels).increment(1);
        let key = Key::from_parts(
            REQUEST_SECONDS,
            vec![Label::new("route", route.to_string())],
        );
        self.recorder
            .register_histogram(&key, &META)
            .record(elapsed.as_secs_f64());
    }

    /// A STOW-RS attempt to send an SR ended with `outcome` (sent, retried, refused).
    pub fn result(&self, outcome: &'static str) {
        self.counter(RESULTS, vec![Label::new("outcome", outcome)])
            .increment(1);
    }

    /// An image was answered with assessment `status`.
    pub fn assessed(&self, status: &'static str) {
        self.counter(ASSESSMENTS, vec![Label::new("status", status)])
            .increment(1);
    }

    /// The Prometheus text exposition (format 0.0.4) of everything recorded, with the gauges
    /// of `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        let gauge = |name: &'static str, labels: Vec<Label>| {
            self.recorder
                .register_gauge(&Key::from_parts(name, labels), &META)
        };
        gauge(QUEUE_DEPTH, vec![]).set(now.queue_depth as f64);
        gauge(QUEUE_CAPACITY, vec![]).set(now.queue_capacity as f64);
        gauge(BODY_BYTES_HELD, vec![]).set(now.body_bytes_held as f64);
        gauge(BODY_BYTES_BUDGET, vec![]).set(now.body_bytes_budget as f64);
        if let Some((waiting, pending)) = now.results {
            gauge(RESULTS_WAITING, vec![]).set(waiting as f64);
            gauge(STUDIES_PENDING, vec![]).set(pending as f64);
        }
        if !now.model.is_empty() {
            let labels = now
                .model
                .iter()
                .map(|(k, v)| Label::new(*k, v.clone()))
                .collect();
            gauge(MODEL_INFO, labels).set(1.0);
        }
        self.handle.render()
    }
}

impl Observer for Metrics {
    fn batch_ran(&self, images: usize, elapsed: Duration) {
        self.images.increment(images as u64);
        self.batch_size.record(images as f64);
        self.inference.record(elapsed.as_secs_f64());
    }

    fn waited(&self, waited: Duration) {
        self.queue_wait.record(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_route_and_status_histograms_and_gauges() {
        let m = Arc::new(Metrics::default());
        let first = m.render(&Snapshot::default());
        assert!(
            first.contains("# TYPE mammo_http_requests_total counter"),
            "{first}"
        );
        drop(m.in_flight());
        m.request_finished("/predict", 200, Duration::from_millis(7));
        for n in [1, 1, 3, 8, 100] {
            m.batch_ran(n, Duration::from_millis(2));
        }
        let _held = m.in_flight();
        m.result("sent");
        let text = m.render(&Snapshot {
            model: vec![("version", "1.0 \"beta\"".into())],
            queue_depth: 3,
            queue_capacity: 64,
            body_bytes_held: 2048,
            body_bytes_budget: 4096,
            results: Some((2, 1)),
        });
        for line in [
            "mammo_http_requests_total{route=\"/predict\",status=\"200\"} 1\n",
            "mammo_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.0075\"} 1\n",
            "mammo_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.005\"} 0\n",
            "mammo_batch_size_bucket{le=\"1\"} 2\n",
            "mammo_batch_size_bucket{le=\"3\"} 3\n",
            "mammo_batch_size_bucket{le=\"+Inf\"} 5\n",
            "mammo_batch_size_sum 113\n",
            "mammo_images_inferred_total 113\n",
            "mammo_http_requests_in_flight 1\n",
            "mammo_request_body_bytes_held 2048\n",
            "mammo_queue_depth 3\n",
            "mammo_results_outbox_depth 2\n",
            "mammo_results_pending_studies 1\n",
            "mammo_results_total{outcome=\"sent\"} 1\n",
            "mammo_model_info{version=\"1.0 \\\"beta\\\"\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}missing from:\n{text}");
        }
    }
}
