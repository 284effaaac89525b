//! `/v1/models`: train (a job), list, get, delete, predict, and cluster thumbnails.

use rocket::data::{Data, Limits};
use rocket::http::{ContentType, Header, Status};
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{blocking, checked_id, query_number};
use crate::auth::{Admin, Reader};
use crate::config::BodyLimit;
use crate::error::responses::{
    BadRequest, Forbidden, NotFound, Overloaded, PayloadTooLarge, Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::inference::{cluster_examples_png, Prediction};
use crate::memory::Need;
use crate::service::Service;
use crate::store::jobs::Job;
use crate::store::models::ModelMeta;
use crate::store::ModelId;
use crate::training::TrainRequest;
use crate::upload::{body_kind, parse_json, parse_upload, read_body};

/// Largest thumbnail strip: members per request and thumbnail side.
const MAX_EXAMPLES: usize = 64;
const MAX_THUMB: u32 = 256;

/// A training job accepted, and where to watch it.
#[derive(Debug, rocket::Responder)]
#[response(status = 202)]
pub struct Accepted {
    body: Json<Job>,
    location: Header<'static>,
}

/// Starts training a model on a dataset: answers at once with the job.
#[utoipa::path(
    post,
    path = "/v1/models",
    operation_id = "train_model",
    tag = "models",
    request_body(content = TrainRequest, content_type = "application/json"),
    responses(
        (
            status = 202,
            description = "The training job, queued",
            body = Job,
            headers(("Location" = String, description = "`/v1/jobs/{id}`")),
            links(
                ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
                ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")))),
                ("GetModel" = (operation_id = "get_model", parameters(("id" = "$response.body#/model_id")))),
                ("DeleteModel" = (operation_id = "delete_model", parameters(("id" = "$response.body#/model_id")))),
                ("Predict" = (operation_id = "predict", parameters(("id" = "$response.body#/model_id")))),
                ("ClusterExamples" = (operation_id = "cluster_examples", parameters(("id" = "$response.body#/model_id"), ("c" = 0)))),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::post("/v1/models", data = "<data>")]
pub async fn train(
    _key: Admin,
    content_type: Option<&ContentType>,
    limits: &Limits,
    service: &State<Service>,
    data: Data<'_>,
) -> ApiResult<Accepted> {
    if !content_type.is_some_and(|ct| ct.is_json()) {
        return Err(ApiError::new(ProblemKind::UnsupportedMediaType, "send the training request as application/json"));
    }
    let request: TrainRequest = parse_json(&read_body(data, limits, BodyLimit::Models).await?)?;
    let id = checked_id("dataset", &request.dataset_id)?.to_owned();
    let (store, jobs, memory) = (service.store.clone(), service.jobs.clone(), service.memory.clone());
    let job = blocking(move || {
        let dataset = store.dataset(&id)?.ok_or_else(|| ApiError::not_found("dataset", &id))?;
        request.validate(dataset.summary.n_images)?;
        memory.check(Need::training(dataset.summary.n_images, &request.features))?;
        Ok(jobs.submit(request)?)
    })
    .await?;
    let location = Header::new("Location", format!("/v1/jobs/{}", job.id));
    Ok(Accepted { body: Json(job), location })
}

/// Lists the models, oldest first.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "list_models",
    tag = "models",
    responses((status = 200, description = "OK", body = Vec<ModelMeta>), (status = 401, response = Unauthorized)),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/models")]
pub async fn list(_key: Reader, service: &State<Service>) -> ApiResult<Json<Vec<ModelMeta>>> {
    let store = service.store.clone();
    blocking(move || Ok(Json(store.models()?))).await
}

/// A model: how it was trained, its metrics and its centres.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetail {
    /// The record.
    #[serde(flatten)]
    pub meta: ModelMeta,
    /// The cluster centres, `k × n_features`.
    pub centroids: Vec<Vec<f32>>,
}

/// A model with its centres.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    operation_id = "get_model",
    tag = "models",
    params(("id" = ModelId, Path, description = "The model id")),
    responses(
        (
            status = 200,
            description = "OK",
            body = ModelDetail,
            links(
                ("Predict" = (operation_id = "predict", parameters(("id" = "$response.body#/id")))),
                ("ClusterExamples" = (operation_id = "cluster_examples", parameters(("id" = "$response.body#/id"), ("c" = 0)))),
                ("DeleteModel" = (operation_id = "delete_model", parameters(("id" = "$response.body#/id")))),
                ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/job_id")))),
            )
        ),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/models/<id>")]
pub async fn get(_key: Reader, id: &str, service: &State<Service>) -> ApiResult<Json<ModelDetail>> {
    let id = checked_id("model", id)?.to_owned();
    let cache = service.cache.clone();
    let served = blocking(move || cache.get(&id)).await?;
    let centroids = served.centres().outer_iter().map(|row| row.to_vec()).collect();
    Ok(Json(ModelDetail { meta: served.meta.clone(), centroids }))
}

/// Deletes a model.
#[utoipa::path(
    delete,
    path = "/v1/models/{id}",
    operation_id = "delete_model",
    tag = "models",
    params(("id" = ModelId, Path, description = "The model id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::delete("/v1/models/<id>")]
pub async fn delete(_key: Admin, id: &str, service: &State<Service>) -> ApiResult<Status> {
    let id = checked_id("model", id)?.to_owned();
    let (jobs, cache) = (service.jobs.clone(), service.cache.clone());
    blocking(move || {
        let deleted = jobs.delete_model(&id)?;
        cache.evict(&id);
        if deleted {
            Ok(Status::NoContent)
        } else {
            Err(ApiError::not_found("model", &id))
        }
    })
    .await
}

/// Labels of the images sent, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    /// The model that answered.
    #[schema(value_type = ModelId)]
    pub model_id: String,
    /// One per image.
    pub predictions: Vec<Prediction>,
}

/// The JSON body of a predict request (multipart: one file field per image), for the OpenAPI
/// document: the body is read by [`crate::upload::parse_upload`].
#[derive(Debug, ToSchema)]
pub struct PredictRequest {
    /// The images.
    #[schema(min_items = 1)]
    pub images: Vec<crate::upload::InlineImage>,
}

/// Inference: the nearest cluster of each image, its distance to every centre, and the
/// nearest training examples of that cluster. Requests are batched; past the in-flight bound
/// the answer is 503 with `Retry-After`.
#[utoipa::path(
    post,
    path = "/v1/models/{id}/predict",
    operation_id = "predict",
    tag = "models",
    params(("id" = ModelId, Path, description = "The model id")),
    request_body(
        description = "Images as multipart file fields, or JSON with base64 data",
        content(
            (PredictRequest = "application/json"),
            (crate::upload::MultipartImages = "multipart/form-data")
        )
    ),
    responses(
        (status = 200, description = "OK", body = PredictResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Overloaded),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::post("/v1/models/<id>/predict", data = "<data>")]
pub async fn predict(
    _key: Reader,
    id: &str,
    content_type: Option<&ContentType>,
    limits: &Limits,
    service: &State<Service>,
    data: Data<'_>,
) -> ApiResult<Json<PredictResponse>> {
    let id = checked_id("model", id)?;
    let kind = body_kind(content_type, false)?;
    let upload = parse_upload(&kind, read_body(data, limits, BodyLimit::Predict).await?).await?;
    let predictions = service.predictor.predict(id, upload.images).await?;
    Ok(Json(PredictResponse { model_id: id.to_owned(), predictions }))
}

/// A PNG strip of the training images of cluster `c` nearest its centre.
#[utoipa::path(
    get,
    path = "/v1/models/{id}/clusters/{c}/examples",
    operation_id = "cluster_examples",
    tag = "models",
    params(
        ("id" = ModelId, Path, description = "The model id"),
        ("c" = usize, Path, description = "The cluster"),
        ("n" = Option<usize>, Query, minimum = 1, maximum = 64, description = "How many images (default 12)"),
        ("thumb" = Option<u32>, Query, minimum = 8, maximum = 256, description = "Thumbnail side in pixels (default 64)"),
    ),
    responses(
        (status = 200, description = "The thumbnails", content_type = "image/png"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/models/<id>/clusters/<c>/examples?<n>&<thumb>")]
pub async fn cluster_examples(
    _key: Reader,
    id: &str,
    c: usize,
    n: Vec<&str>,
    thumb: Vec<&str>,
    service: &State<Service>,
) -> ApiResult<(ContentType, Vec<u8>)> {
    let id = checked_id("model", id)?.to_owned();
    let n = query_number("n", &n, 12, 1..=MAX_EXAMPLES)?;
    let thumb = query_number("thumb", &thumb, 64, 8..=MAX_THUMB)?;
    let (store, cache, limits) = (service.store.clone(), service.cache.clone(), service.settings.decode_limits);
    let png = blocking(move || {
        let served = cache.get(&id)?;
        cluster_examples_png(&store, &served, c, n, thumb, &limits)
    })
    .await?;
    Ok((ContentType::PNG, png))
}
