//! The one error type of the service: every failure becomes an RFC 9457
//! `application/problem+json` document with a stable `type` per kind, logged once.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::telemetry::RequestId;

/// The prefix of every problem `type`; the rest is the kind's slug (see `docs/rest-api.md`).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:ferrocluster:problem:";

/// What went wrong, one variant per problem `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request is malformed in a way no more specific kind covers (400).
    BadRequest,
    /// The body is not valid JSON or does not fit the expected shape (400).
    MalformedJson,
    /// The body is not valid multipart, tar or zip, or base64 is invalid (400).
    MalformedBody,
    /// No API key, or one that is not recognised (401).
    Unauthorized,
    /// The key is valid but its role may not do this (403).
    Forbidden,
    /// The resource or route does not exist (404).
    NotFound,
    /// The path exists but not with this method (405, with `Allow`).
    MethodNotAllowed,
    /// The resource is in a state that forbids this (409), e.g. deleting a dataset in training.
    Conflict,
    /// The body is over the route's limit (413).
    PayloadTooLarge,
    /// The body's content type is not one the route accepts (415).
    UnsupportedMediaType,
    /// An uploaded image cannot be decoded: corrupt, truncated, unsupported or too large (422).
    InvalidImage,
    /// A parameter is out of its allowed range (422).
    InvalidParameter,
    /// The input is well-formed but unusable (422), e.g. fewer images than clusters.
    InvalidInput,
    /// Too many requests in flight; retry after the `Retry-After` seconds (503).
    Overloaded,
    /// A dependency (Redis) is unreachable or the service is not ready (503).
    Unavailable,
    /// A fault of the service itself (500).
    Internal,
}

impl ProblemKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> Status {
        match self {
            ProblemKind::BadRequest | ProblemKind::MalformedJson | ProblemKind::MalformedBody => Status::BadRequest,
            ProblemKind::Unauthorized => Status::Unauthorized,
            ProblemKind::Forbidden => Status::Forbidden,
            ProblemKind::NotFound => Status::NotFound,
            ProblemKind::MethodNotAllowed => Status::MethodNotAllowed,
            ProblemKind::Conflict => Status::Conflict,
            ProblemKind::PayloadTooLarge => Status::PayloadTooLarge,
            ProblemKind::UnsupportedMediaType => Status::UnsupportedMediaType,
            ProblemKind::InvalidImage | ProblemKind::InvalidParameter | ProblemKind::InvalidInput => {
                Status::UnprocessableEntity
            }
            ProblemKind::Overloaded | ProblemKind::Unavailable => Status::ServiceUnavailable,
            ProblemKind::Internal => Status::InternalServerError,
        }
    }

    /// The stable last part of the problem `type`.
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::BadRequest => "bad-request",
            ProblemKind::MalformedJson => "malformed-json",
            ProblemKind::MalformedBody => "malformed-body",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::NotFound => "not-found",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
            ProblemKind::Conflict => "conflict",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
            ProblemKind::InvalidImage => "invalid-image",
            ProblemKind::InvalidParameter => "invalid-parameter",
            ProblemKind::InvalidInput => "invalid-input",
            ProblemKind::Overloaded => "overloaded",
            ProblemKind::Unavailable => "unavailable",
            ProblemKind::Internal => "internal",
        }
    }

    /// The kind a catcher reports for a bare status (no handler said more).
    fn of_status(status: Status) -> Self {
        match status.code {
            401 => ProblemKind::Unauthorized,
            403 => ProblemKind::Forbidden,
            404 => ProblemKind::NotFound,
            405 => ProblemKind::MethodNotAllowed,
            409 => ProblemKind::Conflict,
            413 => ProblemKind::PayloadTooLarge,
            415 => ProblemKind::UnsupportedMediaType,
            422 => ProblemKind::InvalidParameter,
            503 => ProblemKind::Unavailable,
            400..=499 => ProblemKind::BadRequest,
            _ => ProblemKind::Internal,
        }
    }
}

/// An error answered to the client as a problem document.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Which problem it is.
    pub kind: ProblemKind,
    /// What exactly is wrong, for a human.
    pub detail: String,
    /// Seconds for `Retry-After` (503s).
    pub retry_after: Option<u64>,
    /// The methods for `Allow` (405s).
    pub allow: Option<String>,
}

/// The service's result type.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error of `kind` saying `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        ApiError { kind, detail: detail.into(), retry_after: None, allow: None }
    }

    /// A 404 for `what` (e.g. "dataset") with `id`.
    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(ProblemKind::NotFound, format!("no {what} with id `{id}`"))
    }

    /// A 500 for a fault of the service; the cause is logged, not sent.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::Internal, detail)
    }
}

impl From<ferrocluster_core::Error> for ApiError {
    fn from(e: ferrocluster_core::Error) -> Self {
        use ferrocluster_core::Error as E;
        let kind = match &e {
            E::Image { .. } => ProblemKind::InvalidImage,
            E::InvalidParameter { .. } => ProblemKind::InvalidParameter,
            E::InvalidInput(_) => ProblemKind::InvalidInput,
            E::Model { .. } | E::NotFitted | E::Io { .. } | E::Cancelled => ProblemKind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(format!("storage: {e}"))
    }
}

/// The body of every error response (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem: `urn:ferrocluster:problem:<slug>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:ferrocluster:problem:[a-z-]+$", example = "urn:ferrocluster:problem:not-found")]
    pub type_: String,
    /// Short summary of the kind (the status's reason phrase).
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What exactly is wrong with this request.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// The request id (also in the `X-Request-Id` header and the server log).
    pub request_id: String,
}

/// The problem responses the routes declare, one per status a handler or guard answers (see
/// [`ProblemKind::status`]); each is a `Problem` document.
pub mod responses {
    use utoipa::ToResponse;

    use super::Problem;

    /// Malformed: invalid JSON, multipart, tar, zip or base64, or a body of the wrong shape.
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct BadRequest(pub Problem);

    /// No API key, or one not recognised.
    #[derive(Debug, ToResponse)]
    #[response(
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    )]
    pub struct Unauthorized(pub Problem);

    /// The key's role may not do this (a `read` key on an admin route).
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Forbidden(pub Problem);

    /// No resource with this id.
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct NotFound(pub Problem);

    /// The resource is in a state that forbids this.
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Conflict(pub Problem);

    /// The body is over the route's limit, or an archive inflates past `archive_limits`.
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct PayloadTooLarge(pub Problem);

    /// The route does not take this content type (or the request has none).
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct UnsupportedMediaType(pub Problem);

    /// Well-formed but unusable: an image that does not decode, a parameter out of range, no images.
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Unprocessable(pub Problem);

    /// Too many requests in flight: retry after `Retry-After` seconds.
    #[derive(Debug, ToResponse)]
    #[response(
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    pub struct Overloaded(pub Problem);

    /// Not ready: the data directory is missing, or Redis or its workers are not there.
    #[derive(Debug, ToResponse)]
    #[response(content_type = "application/problem+json")]
    pub struct Unavailable(pub Problem);
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.kind.status();
        let request_id = RequestId::of(req).to_owned();
        let (method, path) = (req.method(), req.uri().path());
        // The one place an error is logged, with the id the client sees.
        if status.code >= 500 {
            tracing::error!(%request_id, %method, %path, status = status.code, kind = self.kind.slug(), "{}", self.detail);
        } else {
            tracing::info!(%request_id, %method, %path, status = status.code, kind = self.kind.slug(), "{}", self.detail);
        }
        let detail = if status.code >= 500 && self.kind == ProblemKind::Internal {
            "the service failed; the request id identifies the cause in the server log".to_owned()
        } else {
            self.detail
        };
        let problem = Problem {
            type_: format!("{PROBLEM_TYPE_PREFIX}{}", self.kind.slug()),
            title: status.reason_lossy().to_owned(),
            status: status.code,
            detail,
            instance: path.to_string(),
            request_id,
        };
        let body = serde_json::to_vec(&problem).map_err(|_| Status::InternalServerError)?;
        let mut response = Response::build();
        response
            .status(status)
            .header(ContentType::new("application", "problem+json"))
            .sized_body(body.len(), Cursor::new(body));
        if let Some(seconds) = self.retry_after {
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        if let Some(methods) = self.allow {
            response.header(Header::new("Allow", methods));
        }
        if status == Status::Unauthorized {
            response.header(Header::new("WWW-Authenticate", "Bearer"));
        }
        response.ok()
    }
}

/// The reason a request guard refused a request, kept for the catcher to report.
#[derive(Debug, Default)]
pub struct GuardFailure(std::sync::Mutex<Option<ApiError>>);

impl GuardFailure {
    /// Records why a guard refused `req`.
    pub fn set(req: &Request<'_>, error: ApiError) {
        let slot = req.local_cache(GuardFailure::default);
        *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    fn take(req: &Request<'_>) -> Option<ApiError> {
        req.local_cache(GuardFailure::default).0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Whether a route's path template (`/v1/models/<id>/predict`) matches a request path.
fn template_matches(template: &str, path: &str) -> bool {
    let mut segments = path.split('/');
    for part in template.split('/') {
        if part.starts_with('<') && part.ends_with("..>") {
            return true;
        }
        match segments.next() {
            Some(segment) if part.starts_with('<') => {
                if segment.is_empty() {
                    return false;
                }
            }
            Some(segment) if segment == part => {}
            _ => return false,
        }
    }
    segments.next().is_none()
}

/// The methods some route answers at `req`'s path (GET implying HEAD), or none if no route has it.
fn allowed_methods(req: &Request<'_>) -> Option<String> {
    let path = req.uri().path();
    let mut methods: Vec<&str> = req
        .rocket()
        .routes()
        .filter(|route| template_matches(route.uri.path(), path.as_str()))
        .map(|route| route.method.as_str())
        .collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.sort_unstable();
    methods.dedup();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// Every status Rocket answers without a handler's own error gets the same problem shape.
#[rocket::catch(default)]
pub fn default_catcher(status: Status, req: &Request<'_>) -> ApiError {
    if let Some(error) = GuardFailure::take(req) {
        return error;
    }
    // No route matched a path that routes do serve: the method is the problem. Rocket answers a
    // method it does not know (e.g. QUERY) with a bare 400 on the same path, so that is one too.
    if matches!(status.code, 400 | 404) && req.route().is_none() {
        if let Some(allow) = allowed_methods(req) {
            let detail = format!("{} answers {allow} only", req.uri().path());
            return ApiError { allow: Some(allow), ..ApiError::new(ProblemKind::MethodNotAllowed, detail) };
        }
    }
    let kind = ProblemKind::of_status(status);
    let detail = match status.code {
        404 => format!("no route for {} {}", req.method(), req.uri().path()),
        413 => "the request body is over this route's limit".to_owned(),
        415 => "this route does not accept that content type".to_owned(),
        422 => "a path or query parameter is not valid".to_owned(),
        _ => status.reason_lossy().to_owned(),
    };
    ApiError::new(kind, detail)
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates_match_whole_paths_segment_by_segment() {
        assert!(template_matches("/v1/models/<id>/predict", "/v1/models/m_1/predict"));
        assert!(!template_matches("/v1/datasets", "/v1/datasets/"));
        assert!(template_matches("/files/<path..>", "/files/a/b"));
        assert!(!template_matches("/v1/models/<id>/predict", "/v1/models/m_1"));
        assert!(!template_matches("/v1/models/<id>", "/v1/models/m_1/predict"));
        assert!(!template_matches("/v1/models/<id>", "/v1/models/"));
        assert!(!template_matches("/v1/jobs", "/v1/datasets"));
    }
}
