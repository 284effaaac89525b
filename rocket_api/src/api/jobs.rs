//! `/v1/jobs`: training job status, progress and cancellation.

use rocket::serde::json::Json;
use rocket::State;

use super::checked_id;
use crate::auth::{Admin, Reader};
use crate::error::responses::{Conflict, Forbidden, NotFound, Unauthorized};
use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::service::Service;
use crate::store::jobs::Job;
use crate::store::JobId;
use crate::training::CancelError;

/// Lists the jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    responses((status = 200, description = "OK", body = Vec<Job>), (status = 401, response = Unauthorized)),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/jobs")]
pub fn list(_key: Reader, service: &State<Service>) -> Json<Vec<Job>> {
    Json(service.jobs.list())
}

/// A job: state, progress, timings, error.
///
/// A cancelled job keeps its record: it answers here, `cancelled`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    params(("id" = JobId, Path, description = "The job id")),
    responses(
        (
            status = 200,
            description = "OK",
            body = Job,
            links(
                ("GetModel" = (operation_id = "get_model", parameters(("id" = "$response.body#/model_id")))),
                ("Predict" = (operation_id = "predict", parameters(("id" = "$response.body#/model_id")))),
                ("ClusterExamples" = (operation_id = "cluster_examples", parameters(("id" = "$response.body#/model_id"), ("c" = 0)))),
                ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")))),
            )
        ),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::get("/v1/jobs/<id>")]
pub fn get(_key: Reader, id: &str, service: &State<Service>) -> ApiResult<Json<Job>> {
    let id = checked_id("job", id)?;
    service.jobs.get(id).map(Json).ok_or_else(|| ApiError::not_found("job", id))
}

/// Cancels a queued or running job; its model is not stored.
///
/// The job is not removed: `GET /v1/jobs/{id}` answers it from then on, `cancelled`.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    operation_id = "cancel_job",
    tag = "jobs",
    params(("id" = JobId, Path, description = "The job id")),
    responses(
        (
            status = 200,
            description = "Cancelled: the job's record, kept with state `cancelled`",
            body = Job,
            links(("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id"))))),
        ),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[rocket::delete("/v1/jobs/<id>")]
pub fn cancel(_key: Admin, id: &str, service: &State<Service>) -> ApiResult<Json<Job>> {
    let id = checked_id("job", id)?;
    match service.jobs.cancel(id) {
        Ok(job) => Ok(Json(job)),
        Err(CancelError::NotFound) => Err(ApiError::not_found("job", id)),
        Err(CancelError::Finished(state)) => {
            Err(ApiError::new(ProblemKind::Conflict, format!("job `{id}` has already finished ({})", state.name())))
        }
    }
}
