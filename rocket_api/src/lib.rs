//! `ferrocluster-api`: the REST service over `ferrocluster-core` — image features, datasets,
//! training jobs, models and batched inference, with API keys, problem+json errors,
//! Prometheus metrics and an OpenAPI document generated from the code.
//!
//! The crate is a thin adapter: every computation is the core's; this crate maps HTTP to it.
//! [`build`] makes the Rocket instance from a figment (tests pass their own); `main` uses
//! Rocket's default figment (`Rocket.toml` + `ROCKET_*` environment).

pub mod api;
pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod inference;
pub mod memory;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod training;
pub mod upload;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::config::Settings;
use crate::service::Service;

/// The service configured by `figment` (Rocket's keys and ours, see [`Settings`]).
///
/// # Errors
/// A message naming the bad setting, or why the data directory could not be opened.
pub fn build(figment: Figment) -> Result<Rocket<Build>, String> {
    // Without the feature Rocket would ignore a `tls` section and serve plain HTTP.
    if !cfg!(feature = "tls") && figment.contains("tls") {
        return Err("`tls` is configured but this build has no TLS (build with the `tls` feature)".to_owned());
    }
    let settings: Settings = figment.extract().map_err(|e| format!("configuration: {e}"))?;
    let service = Service::start(settings)?;
    tracing::info!(
        data_dir = %service.settings.data_dir.display(),
        keys = service.keys.len(),
        batching = service.settings.batching,
        cors_origins = service.settings.cors_allowed_origins.len(),
        "ferrocluster-api configured"
    );
    let cors = cors::Cors::new(&service.settings.cors_allowed_origins);
    // CORS goes first so the access log and metrics see the status it may set (a preflight's 204).
    let rocket = match cors {
        Some(cors) => rocket::custom(figment).attach(cors),
        None => rocket::custom(figment),
    };
    Ok(rocket
        .manage(service)
        .attach(telemetry::Telemetry)
        .attach(AdHoc::on_shutdown("note unfinished jobs", |rocket| {
            Box::pin(async move {
                if let Some(service) = rocket.state::<Service>() {
                    let unfinished = service.jobs.list().iter().filter(|j| !j.state.is_final()).count();
                    tracing::info!(unfinished, "shutting down: unfinished jobs resume at the next start");
                }
            })
        }))
        .mount("/", api::routes())
        .register("/", rocket::catchers![error::default_catcher]))
}
