//! `/healthz`, `/readyz`, `/metrics`: open to all (no key), for probes and scrapers.

use std::collections::BTreeMap;
use std::time::Duration;

use rocket::http::ContentType;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::service::Service;
use crate::telemetry::Gauges;

/// How old the training executor's last answer from Redis may be (it asks every 250 ms).
const REDIS_STALE: Duration = Duration::from_secs(5);

/// The answer of the probes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
    /// Each check and its outcome.
    pub checks: BTreeMap<String, String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "OK", body = Health)))]
#[rocket::get("/healthz")]
pub fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_owned(), checks: BTreeMap::new() })
}

/// Readiness: the data directory is usable and, with a Redis URL, Redis answered lately and a
/// live worker runs training tasks; the checks also say how many models are loaded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "OK", body = Health),
        (status = 503, response = crate::error::responses::Unavailable),
    )
)]
#[rocket::get("/readyz")]
pub fn readyz(service: &State<Service>) -> ApiResult<Json<Health>> {
    let mut checks = BTreeMap::new();
    if !service.settings.data_dir.join("models").is_dir() {
        return Err(ApiError::new(ProblemKind::Unavailable, "the data directory is missing"));
    }
    checks.insert("storage".to_owned(), "ok".to_owned());
    match service.jobs.queue_health() {
        None => {
            checks.insert("redis".to_owned(), "not configured".to_owned());
            checks.insert("training_workers".to_owned(), service.settings.training_workers.to_string());
        }
        Some(health) => {
            let unavailable = |detail: String| ApiError::new(ProblemKind::Unavailable, detail);
            if health.answered_at.is_none_or(|at| at.elapsed() >= REDIS_STALE) {
                let why = health.error.unwrap_or_else(|| "no answer yet".to_owned());
                return Err(unavailable(format!("redis: {why}")));
            }
            if health.workers == 0 {
                return Err(unavailable(format!(
                    "no live ferrocluster-worker runs training tasks from queue `{}`",
                    health.queue
                )));
            }
            checks.insert("redis".to_owned(), "ok".to_owned());
            checks.insert("workers".to_owned(), health.workers.to_string());
        }
    }
    checks.insert("models_cached".to_owned(), service.cache.len().to_string());
    Ok(Json(Health { status: "ready".to_owned(), checks }))
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
#[rocket::get("/metrics")]
pub fn metrics(service: &State<Service>) -> (ContentType, String) {
    let gauges = Gauges {
        in_flight: service.predictor.in_flight(),
        models_cached: service.cache.len(),
        jobs: service.jobs.counts(),
    };
    let text = service.metrics.render(&gauges);
    (ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")]), text)
}
