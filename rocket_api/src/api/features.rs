//! `POST /v1/features`: images in, feature vectors out.

use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::image::decode;
use ferrocluster_core::pipeline::extract_images;
use rayon::prelude::*;
use rocket::data::{Data, Limits};
use rocket::http::ContentType;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::blocking;
use crate::auth::Reader;
use crate::config::BodyLimit;
use crate::error::responses::{
    BadRequest, Overloaded, PayloadTooLarge, Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::memory::Need;
use crate::service::Service;
use crate::upload::{body_kind, integral_numbers, parse_upload, read_body, InlineImage, NamedImage};

/// The JSON body of `POST /v1/features` (multipart: file fields plus a `features` text field of
/// JSON), for the OpenAPI document: the body is read by [`crate::upload::parse_upload`].
#[derive(Debug, ToSchema)]
pub struct FeaturesRequest {
    /// The images.
    #[schema(min_items = 1)]
    pub images: Vec<InlineImage>,
    /// The features to extract (default RGB HOG of 64×64).
    pub features: Option<FeatureConfig>,
}

/// Feature vectors, one row per image in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeaturesResponse {
    /// The image names.
    pub names: Vec<String>,
    /// Length of each vector.
    pub dim: usize,
    /// The vectors.
    pub features: Vec<Vec<f32>>,
}

/// The `features` field of an upload (an object, or JSON text from a multipart field) as a
/// validated config (the default if absent).
pub(crate) fn feature_config(fields: &mut serde_json::Map<String, serde_json::Value>) -> ApiResult<FeatureConfig> {
    let invalid =
        |e: serde_json::Error| ApiError::new(ProblemKind::InvalidParameter, format!("invalid `features`: {e}"));
    let config: FeatureConfig = match fields.remove("features") {
        None | Some(serde_json::Value::Null) => FeatureConfig::default(),
        // A multipart text field: JSON text.
        Some(serde_json::Value::String(text)) => {
            let mut value = serde_json::from_str(&text).map_err(invalid)?;
            integral_numbers(&mut value);
            serde_json::from_value(value).map_err(invalid)?
        }
        Some(value) => serde_json::from_value(value).map_err(invalid)?,
    };
    config.validate()?;
    Ok(config)
}

/// Decodes every image (in parallel), failing with the first that cannot be read.
pub(crate) fn decode_all(
    images: &[NamedImage],
    size: Option<[usize; 2]>,
    limits: &ferrocluster_core::image::DecodeLimits,
) -> ApiResult<Vec<ferrocluster_core::image::Image<f32>>> {
    images.par_iter().map(|image| Ok(decode(&image.bytes, &image.name, size, limits)?)).collect()
}

/// Extracts feature vectors from images.
#[utoipa::path(
    post,
    path = "/v1/features",
    operation_id = "extract_features",
    tag = "features",
    request_body(
        description = "Images as multipart file fields plus a `features` field of JSON text, or JSON with base64 data",
        content(
            (FeaturesRequest = "application/json"),
            (crate::upload::MultipartFeatures = "multipart/form-data")
        )
    ),
    responses(
        (status = 200, description = "One vector per image", body = FeaturesResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Overloaded),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::post("/v1/features", data = "<data>")]
pub async fn extract(
    _key: Reader,
    content_type: Option<&ContentType>,
    limits: &Limits,
    service: &State<Service>,
    data: Data<'_>,
) -> ApiResult<Json<FeaturesResponse>> {
    let kind = body_kind(content_type, false)?;
    let body = read_body(data, limits, BodyLimit::Features).await?;
    let mut upload = parse_upload(&kind, body).await?;
    let config = feature_config(&mut upload.fields)?;
    let reservation = service.memory.reserve(Need::features(upload.images.len(), &config))?;
    let limits = service.settings.decode_limits;
    let images = upload.images;
    blocking(move || {
        let _reservation = reservation;
        let decoded = decode_all(&images, Some(config.size), &limits)?;
        let views: Vec<_> = decoded.iter().map(|image| image.view()).collect();
        let extracted = extract_images(&views, &config, &|_| {})?;
        if let Some((_, e)) = extracted.failures.into_iter().next() {
            return Err(e.into());
        }
        Ok(Json(FeaturesResponse {
            names: images.into_iter().map(|image| image.name).collect(),
            dim: config.dim(),
            features: extracted.features.outer_iter().map(|row| row.to_vec()).collect(),
        }))
    })
    .await
}
