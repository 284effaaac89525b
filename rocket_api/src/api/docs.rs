//! `/openapi.json` and `/docs`: the API's contract and a page that renders it, offline.

use rocket::http::ContentType;
use utoipa::OpenApi;

use super::ApiDoc;

/// The docs page: plain HTML and JavaScript that fetch and render `/openapi.json` (no CDN).
const DOCS_PAGE: &str = include_str!("../../static/docs.html");

/// The OpenAPI document, pretty-printed (as checked in at `docs/openapi.json`).
pub fn openapi_text() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises") + "\n"
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
#[rocket::get("/openapi.json")]
pub fn openapi_json() -> (ContentType, String) {
    (ContentType::JSON, openapi_text())
}

/// Human-readable API documentation, self-contained.
#[utoipa::path(get, path = "/docs", tag = "operations", responses((status = 200, description = "HTML page", content_type = "text/html")))]
#[rocket::get("/docs")]
pub fn docs_page() -> (ContentType, &'static str) {
    (ContentType::HTML, DOCS_PAGE)
}
