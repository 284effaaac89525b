//! `/v1/datasets`: upload image sets (multipart, JSON base64, tar or zip), list, get, delete.

use ferrocluster_core::image::decode_dynamic;
use rayon::prelude::*;
use rocket::data::{Data, Limits};
use rocket::http::{ContentType, Header, Status};
use rocket::serde::json::Json;
use rocket::State;

use super::{blocking, checked_id};
use crate::auth::{Admin, Reader};
use crate::config::BodyLimit;
use crate::error::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unprocessable, UnsupportedMediaType,
};
use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::service::Service;
use crate::store::datasets::{Dataset, DatasetSummary};
use crate::store::{new_id, DatasetId};
use crate::upload::{body_kind, parse_upload_within, read_body};

/// A stored dataset and where it lives.
#[derive(Debug, rocket::Responder)]
#[response(status = 201)]
pub struct Created {
    body: Json<Dataset>,
    location: Header<'static>,
}

/// The JSON body of `POST /v1/datasets`, for the OpenAPI document: the body is read by
/// [`crate::upload::parse_upload_within`].
#[derive(Debug, utoipa::ToSchema)]
pub struct DatasetRequest {
    /// The images.
    #[schema(min_items = 1)]
    pub images: Vec<crate::upload::InlineImage>,
    /// A name for the dataset (the `name` query parameter wins).
    pub name: Option<String>,
}

/// Stores a set of images as a dataset, after checking every image decodes.
#[utoipa::path(
    post,
    path = "/v1/datasets",
    operation_id = "create_dataset",
    tag = "datasets",
    params(("name" = Option<String>, Query, description = "A name for the dataset")),
    request_body(
        description = "Images as multipart file fields, JSON with base64 data, or a tar / zip archive",
        content(
            (DatasetRequest = "application/json"),
            (crate::upload::MultipartDataset = "multipart/form-data"),
            (crate::upload::Archive = "application/x-tar"),
            (crate::upload::Archive = "application/zip")
        )
    ),
    responses(
        (
            status = 201,
            description = "Stored",
            body = Dataset,
            headers(("Location" = String, description = "`/v1/datasets/{id}`")),
            links(
                ("GetDataset" = (operation_id = "get_dataset", parameters(("id" = "$response.body#/id")))),
                ("DeleteDataset" = (operation_id = "delete_dataset", parameters(("id" = "$response.body#/id")))),
                ("TrainModel" = (operation_id = "train_model", request_body = json!({"dataset_id": "$response.body#/id"}))),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::post("/v1/datasets?<name>", data = "<data>")]
pub async fn create(
    _key: Admin,
    name: Option<String>,
    content_type: Option<&ContentType>,
    limits: &Limits,
    service: &State<Service>,
    data: Data<'_>,
) -> ApiResult<Created> {
    let kind = body_kind(content_type, true)?;
    let body = read_body(data, limits, BodyLimit::Datasets).await?;
    let mut upload = parse_upload_within(&kind, body, &service.settings.archive_limits).await?;
    let field = match upload.fields.remove("name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(text),
        Some(other) => {
            return Err(ApiError::new(ProblemKind::InvalidParameter, format!("`name` must be a string, got {other}")))
        }
    };
    let name = name.or(field);
    let (store, limits) = (service.store.clone(), service.settings.decode_limits);
    let dataset = blocking(move || {
        // Every image is decoded (then dropped) before anything is written.
        let sizes = upload
            .images
            .par_iter()
            .map(|image| decode_dynamic(&image.bytes, &image.name, &limits).map(|d| (d.width(), d.height())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(store.create_dataset(&new_id(DatasetId::PREFIX), name, &upload.images, &sizes)?)
    })
    .await?;
    let location = Header::new("Location", format!("/v1/datasets/{}", dataset.summary.id));
    Ok(Created { body: Json(dataset), location })
}

/// Lists the datasets, oldest first.
#[utoipa::path(
    get,
    path = "/v1/datasets",
    operation_id = "list_datasets",
    tag = "datasets",
    responses((status = 200, description = "OK", body = Vec<DatasetSummary>), (status = 401, response = Unauthorized)),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/datasets")]
pub async fn list(_key: Reader, service: &State<Service>) -> ApiResult<Json<Vec<DatasetSummary>>> {
    let store = service.store.clone();
    blocking(move || Ok(Json(store.datasets()?))).await
}

/// A dataset with its images.
#[utoipa::path(
    get,
    path = "/v1/datasets/{id}",
    operation_id = "get_dataset",
    tag = "datasets",
    params(("id" = DatasetId, Path, description = "The dataset id")),
    responses(
        (
            status = 200,
            description = "OK",
            body = Dataset,
            links(
                ("TrainModel" = (operation_id = "train_model", request_body = json!({"dataset_id": "$response.body#/id"}))),
                ("DeleteDataset" = (operation_id = "delete_dataset", parameters(("id" = "$response.body#/id")))),
            )
        ),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/datasets/<id>")]
pub async fn get(_key: Reader, id: &str, service: &State<Service>) -> ApiResult<Json<Dataset>> {
    let id = checked_id("dataset", id)?.to_owned();
    let store = service.store.clone();
    blocking(move || store.dataset(&id)?.map(Json).ok_or_else(|| ApiError::not_found("dataset", &id))).await
}

/// Deletes a dataset (refused while a job trains on it). Models trained on it stay.
#[utoipa::path(
    delete,
    path = "/v1/datasets/{id}",
    operation_id = "delete_dataset",
    tag = "datasets",
    params(("id" = DatasetId, Path, description = "The dataset id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::delete("/v1/datasets/<id>")]
pub async fn delete(_key: Admin, id: &str, service: &State<Service>) -> ApiResult<Status> {
    let id = checked_id("dataset", id)?.to_owned();
    if service.jobs.uses_dataset(&id) {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!("a training job is using dataset `{id}`: cancel it first"),
        ));
    }
    let store = service.store.clone();
    blocking(move || match store.delete_dataset(&id)? {
        true => Ok(Status::NoContent),
        false => Err(ApiError::not_found("dataset", &id)),
    })
    .await
}
