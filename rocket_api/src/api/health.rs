//! `/healthz`, `/readyz`, `/metrics`: open to all (no key), for probes and scrapers.

use std::collections::BTreeMap;
use std::time::Duration;

use rocket::http::ContentType;
use rocket::serde::json::Json;
use rocket::tokio::time::timeout;
use rocket::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::service::Service;
use crate::telemetry::Gauges;

/// How long `/readyz` waits for Redis.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Readiness: the data directory is usable, Redis answers (when configured), and how many
/// models are loaded and training threads run.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "OK", body = Health),
        (status = 503, description = "Not ready", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[rocket::get("/readyz")]
pub async fn readyz(service: &State<Service>) -> ApiResult<Json<Health>> {
    let mut checks = BTreeMap::new();
    if !service.settings.data_dir.join("models").is_dir() {
        return Err(ApiError::new(ProblemKind::Unavailable, "the data directory is missing"));
    }
    checks.insert("storage".to_owned(), "ok".to_owned());
    let redis = match &service.settings.redis_url {
        None => "not configured".to_owned(),
        Some(url) => ping(url).await.map_err(|e| ApiError::new(ProblemKind::Unavailable, format!("redis: {e}")))?,
    };
    checks.insert("redis".to_owned(), redis);
    checks.insert("models_cached".to_owned(), service.cache.len().to_string());
    checks.insert("training_workers".to_owned(), service.settings.training_workers.to_string());
    Ok(Json(Health { status: "ready".to_owned(), checks }))
}

async fn ping(url: &str) -> Result<String, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let check = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await
    };
    match timeout(REDIS_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok("ok".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
    }
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
