//! Prometheus metrics: counters and histograms kept in memory and rendered in the text
//! exposition format for `GET /metrics`. Engine and HTTP layers record into one [`Metrics`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bucket bounds in seconds for latencies: 1 ms to 10 s.
const SECONDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Bucket bounds for engine batch sizes.
const BATCH_SIZES: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0];

/// A cumulative histogram with fixed bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not yet cumulative); the last slot is +Inf.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, value: f64) {
        let slot = self.bounds.partition_point(|&b| b < value);
        self.counts[slot] += 1;
        self.sum += value;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// What the server and its engine record.
#[derive(Debug)]
pub struct Metrics {
    /// (route, status) → requests answered.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// route → end-to-end seconds.
    request_seconds: Mutex<BTreeMap<String, Histogram>>,
    queue_seconds: Mutex<Histogram>,
    inference_seconds: Mutex<Histogram>,
    batch_size: Mutex<Histogram>,
    images: AtomicU64,
    in_flight: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            request_seconds: Mutex::default(),
            queue_seconds: Mutex::new(Histogram::new(&SECONDS)),
            inference_seconds: Mutex::new(Histogram::new(&SECONDS)),
            batch_size: Mutex::new(Histogram::new(&BATCH_SIZES)),
            images: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
        }
    }
}

/// Labels of the `mammo_model_info` gauge and the gauges read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (label, value) pairs describing the loaded model; empty while loading.
    pub model: Vec<(&'static str, String)>,
    /// Images waiting for an engine worker.
    pub queue_depth: usize,
    /// Most images the queue holds.
    pub queue_capacity: usize,
}

/// Holds one request in the in-flight gauge.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// A request entered the server; it counts as in flight until the guard drops (also
    /// when the client goes away and the request is abandoned).
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// A request was answered with `status` after `elapsed`.
    pub fn request_finished(&self, route: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
        lock(&self.request_seconds)
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(&SECONDS))
            .observe(elapsed.as_secs_f64());
    }

    /// One image waited `queue` before its engine run.
    pub fn observe_queue(&self, queue: Duration) {
        lock(&self.queue_seconds).observe(queue.as_secs_f64());
    }

    /// An engine run of `images` took `elapsed`.
    pub fn observe_batch(&self, images: usize, elapsed: Duration) {
        self.images.fetch_add(images as u64, Ordering::Relaxed);
        lock(&self.batch_size).observe(images as f64);
        lock(&self.inference_seconds).observe(elapsed.as_secs_f64());
    }

    /// Requests answered so far with this route and status.
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        lock(&self.requests)
            .get(&(route.to_string(), status))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition (format 0.0.4) of everything recorded.
    pub fn render(&self, now: &Snapshot) -> String {
        let mut out = String::new();
        let o = &mut out;
        header(
            o,
            "mammo_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                o,
                "mammo_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        header(
            o,
            "mammo_http_request_duration_seconds",
            "histogram",
            "End-to-end request time, by route.",
        );
        for (route, h) in lock(&self.request_seconds).iter() {
            h.render(
                o,
                "mammo_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        scalar(
            o,
            "mammo_http_requests_in_flight",
            "gauge",
            "Requests being handled now.",
            in_flight,
        );
        let histograms = [
            (
                "mammo_queue_wait_seconds",
                "Time an image waited in the inference queue.",
                &self.queue_seconds,
            ),
            (
                "mammo_inference_duration_seconds",
                "Time of one engine run (a batch).",
                &self.inference_seconds,
            ),
            (
                "mammo_batch_size",
                "Images per engine run.",
                &self.batch_size,
            ),
        ];
        for (name, help, h) in histograms {
            header(o, name, "histogram", help);
            lock(h).render(o, name, "");
        }
        let images = self.images.load(Ordering::Relaxed);
        scalar(
            o,
            "mammo_images_inferred_total",
            "counter",
            "Images run through the model.",
            images,
        );
        scalar(
            o,
            "mammo_queue_depth",
            "gauge",
            "Images waiting for an engine worker.",
            now.queue_depth,
        );
        scalar(
            o,
            "mammo_queue_capacity",
            "gauge",
            "Most images the inference queue holds (--max-queue-size).",
            now.queue_capacity,
        );
        header(
            o,
            "mammo_model_info",
            "gauge",
            "The loaded model (1 once loaded).",
        );
        if !now.model.is_empty() {
            let labels: Vec<String> = now
                .model
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(o, "mammo_model_info{{{}}} 1", labels.join(","));
        }
        out
    }
}

/// `# HELP` and `# TYPE` lines of one metric.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled value.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_include_their_bound() {
        let mut h = Histogram::new(&BATCH_SIZES);
        for v in [1.0, 1.0, 3.0, 8.0, 100.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"3\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"8\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(
            out.contains("x_sum 113\n") && out.contains("x_count 5\n"),
            "{out}"
        );
    }

    #[test]
    fn renders_requests_by_route_and_status_and_escapes_labels() {
        let m = Arc::new(Metrics::default());
        drop(m.in_flight());
        m.request_finished("/predict", 200, Duration::from_millis(7));
        let _held = m.in_flight();
        let text = m.render(&Snapshot {
            model: vec![("version", "1.0 \"beta\"".into())],
            queue_depth: 3,
            queue_capacity: 64,
        });
        assert!(text.contains("mammo_http_requests_total{route=\"/predict\",status=\"200\"} 1\n"));
        assert!(text.contains(
            "mammo_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.0075\"} 1\n"
        ));
        assert!(text.contains(
            "mammo_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.005\"} 0\n"
        ));
        assert!(text.contains("mammo_http_requests_in_flight 1\n"));
        assert!(text.contains("mammo_queue_depth 3\n"));
        assert!(
            text.contains("mammo_model_info{version=\"1.0 \\\"beta\\\"\"} 1\n"),
            "{text}"
        );
    }
}
