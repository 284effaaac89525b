//! The routes, one file per resource, and the OpenAPI document generated from them.

pub mod datasets;
pub mod docs;
pub mod features;
pub mod health;
pub mod jobs;
pub mod models;

use rocket::tokio::task::spawn_blocking;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::error::{responses, ApiError, ApiResult, Problem, ProblemKind};
use crate::store::valid_id;

/// Makes, from one list of handlers, both the routes Rocket mounts ([`routes`]) and the
/// operations of the document ([`Operations`]), so neither can miss one.
macro_rules! endpoints {
    ($($module:ident::$handler:ident),+ $(,)?) => {
        /// Every route of the service.
        pub fn routes() -> Vec<rocket::Route> {
            rocket::routes![$($module::$handler),+]
        }

        /// The operations of the same handlers; [`ApiDoc`] merges them in.
        #[derive(Debug, OpenApi)]
        #[openapi(paths($($module::$handler),+))]
        struct Operations;
    };
}

endpoints![
    features::extract,
    datasets::create,
    datasets::list,
    datasets::get,
    datasets::delete,
    models::train,
    models::list,
    models::get,
    models::delete,
    models::predict,
    models::cluster_examples,
    jobs::list,
    jobs::get,
    jobs::cancel,
    health::healthz,
    health::readyz,
    health::metrics,
    docs::openapi_json,
    docs::docs_page,
];

impl Modify for Operations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.merge(Operations::openapi());
    }
}

/// Runs CPU or disk work on a blocking thread, off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("a blocking task failed: {e}")))?
}

/// Refuses ids that cannot be ours (so they are safe as file names) as unknown.
pub(crate) fn checked_id<'a>(what: &str, id: &'a str) -> ApiResult<&'a str> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found(what, id))
    }
}

/// A numeric query parameter given at most once (`values`: each time it is given) within
/// `range`, or `default` when absent. Parsed here, not by Rocket, whose `Option<T>` takes a
/// value that does not parse, or one given twice, as absent.
pub(crate) fn query_number<T>(name: &str, values: &[&str], default: T, range: RangeInclusive<T>) -> ApiResult<T>
where
    T: FromStr + PartialOrd + Display,
{
    let text = match values {
        [] => return Ok(default),
        [text] => *text,
        _ => {
            return Err(ApiError::new(ProblemKind::InvalidParameter, format!("{name} is given {} times", values.len())))
        }
    };
    let (low, high) = (range.start(), range.end());
    match text.parse::<T>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(ApiError::new(ProblemKind::InvalidParameter, format!("{name} must be {low}..={high}, got `{text}`"))),
    }
}

/// Declares the two ways to send an API key.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The core's pairs (`[usize; 2]`) whose items the core validates within `1..=max`: schema,
/// property, `max`. Its derived schemas say only "two unsigned integers"; the suite checks these
/// bounds against the core's validation.
pub const PAIR_BOUNDS: [(&str, &str, u64); 3] =
    [("FeatureConfig", "size", 4096), ("Hog", "pixels_per_cell", 32_768), ("Hog", "cells_per_block", 32_768)];

/// Gives each item of the [`PAIR_BOUNDS`] pairs its `minimum` and `maximum`.
struct PairBounds;

impl Modify for PairBounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        for (schema, property, max) in PAIR_BOUNDS {
            let Some(RefOr::T(Schema::Object(owner))) = components.schemas.get_mut(schema) else { continue };
            let Some(RefOr::T(Schema::Array(pair))) = owner.properties.get_mut(property) else { continue };
            if let ArrayItems::RefOrSchema(item) = &mut pair.items {
                if let RefOr::T(Schema::Object(item)) = item.as_mut() {
                    item.minimum = Some(1.into());
                    item.maximum = Some(max.into());
                }
            }
        }
    }
}

/// The OpenAPI document of the service (served at `/openapi.json`, checked in as `docs/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "ferrocluster-api", description = "Image features, clustering models, training jobs and inference."),
    components(
        schemas(Problem),
        responses(
            responses::BadRequest,
            responses::Unauthorized,
            responses::Forbidden,
            responses::NotFound,
            responses::Conflict,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::Unprocessable,
            responses::Overloaded,
            responses::Unavailable,
        )
    ),
    modifiers(&Operations, &Security, &PairBounds),
    tags(
        (name = "features", description = "Feature vectors of images"),
        (name = "datasets", description = "Uploaded image sets"),
        (name = "models", description = "Trained clustering models and inference"),
        (name = "jobs", description = "Training jobs"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;
