//! Request ids, the access log and the Prometheus metrics, in one fairing that sees every
//! request and response.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::Rng;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Data, Request, Response};

/// The header carrying the request id both ways.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// The id of a request: the client's `X-Request-Id` when it is a sane token, else a new one.
#[derive(Debug)]
pub struct RequestId(String);

impl RequestId {
    /// The id of `req` (made on first use, so catchers and guards always have one).
    pub fn of<'r>(req: &'r Request<'_>) -> &'r str {
        &req.local_cache(|| RequestId(new_or_given(req.headers().get_one(REQUEST_ID_HEADER)))).0
    }
}

fn new_or_given(given: Option<&str>) -> String {
    match given {
        Some(id)
            if (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            id.to_owned()
        }
        _ => format!("{:032x}", rand::rng().random::<u128>()),
    }
}

/// When the request arrived.
struct Started(Instant);

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Upper bounds of the batch size histogram buckets, in images.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A cumulative histogram with fixed buckets, as Prometheus wants it.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations in millionths, so it can be atomic.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro.fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// The service's counters, rendered in the Prometheus text format by `GET /metrics`.
#[derive(Debug)]
pub struct Metrics {
    /// Responses by (method, route template, status).
    responses: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Latency by route template.
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    batch_sizes: Histogram,
    predictions: AtomicU64,
    overloaded: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: Mutex::default(),
            latency: Mutex::default(),
            batch_sizes: Histogram::new(&BATCH_BUCKETS),
            predictions: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
        }
    }
}

/// Gauges read at scrape time from the rest of the service.
#[derive(Debug)]
pub struct Gauges {
    /// Predict requests being served now.
    pub in_flight: usize,
    /// Models held in memory.
    pub models_cached: usize,
    /// Job records by state name.
    pub jobs: BTreeMap<&'static str, usize>,
}

impl Metrics {
    /// Records one inference batch of `images` images.
    pub fn observe_batch(&self, images: usize) {
        self.batch_sizes.observe(images as f64);
        self.predictions.fetch_add(images as u64, Ordering::Relaxed);
    }

    /// Counts a predict request refused for lack of capacity.
    pub fn observe_overload(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    fn observe_response(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *responses.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        drop(responses);
        let histogram = {
            let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            latency.entry(route.to_owned()).or_insert_with(|| Histogram::new(&LATENCY_BUCKETS).into()).clone()
        };
        histogram.observe(seconds);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP ferrocluster_http_responses_total HTTP responses by method, route and status.\n");
        out.push_str("# TYPE ferrocluster_http_responses_total counter\n");
        for ((method, route, status), n) in self.responses.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "ferrocluster_http_responses_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP ferrocluster_http_request_duration_seconds Time from request to response, by route.\n");
        out.push_str("# TYPE ferrocluster_http_request_duration_seconds histogram\n");
        for (route, histogram) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            histogram.render(&mut out, "ferrocluster_http_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out.push_str("# HELP ferrocluster_predict_batch_images Images per inference batch.\n");
        out.push_str("# TYPE ferrocluster_predict_batch_images histogram\n");
        self.batch_sizes.render(&mut out, "ferrocluster_predict_batch_images", "");
        let counters = [
            ("ferrocluster_predictions_total", "Images labelled by predict.", self.predictions.load(Ordering::Relaxed)),
            (
                "ferrocluster_predict_overloaded_total",
                "Predict requests refused with 503 (too many in flight).",
                self.overloaded.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let gauges_list = [
            ("ferrocluster_predict_in_flight", "Predict requests being served.", gauges.in_flight),
            ("ferrocluster_models_cached", "Models held in memory.", gauges.models_cached),
        ];
        for (name, help, value) in gauges_list {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out.push_str("# HELP ferrocluster_jobs Job records by state.\n# TYPE ferrocluster_jobs gauge\n");
        for (state, n) in &gauges.jobs {
            let _ = writeln!(out, "ferrocluster_jobs{{state=\"{state}\"}} {n}");
        }
        out
    }
}

/// Gives each request an id (echoed in `X-Request-Id`), logs one line per response and
/// counts it in [`Metrics`].
#[derive(Debug, Default)]
pub struct Telemetry;

#[rocket::async_trait]
impl Fairing for Telemetry {
    fn info(&self) -> Info {
        Info { name: "request ids, access log, metrics", kind: Kind::Request | Kind::Response }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(|| Started(Instant::now()));
        RequestId::of(req);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let seconds = req.local_cache(|| Started(Instant::now())).0.elapsed().as_secs_f64();
        let id = RequestId::of(req);
        res.set_header(Header::new(REQUEST_ID_HEADER, id.to_owned()));
        let route = req.route().map_or_else(|| "unmatched".to_owned(), |r| r.uri.path().to_string());
        let status = res.status().code;
        tracing::info!(request_id = %id, method = %req.method(), path = %req.uri().path(), status, ms = seconds * 1e3, "request");
        if let Some(service) = req.rocket().state::<crate::service::Service>() {
            service.metrics.observe_response(req.method().as_str(), &route, status, seconds);
        }
    }
}
