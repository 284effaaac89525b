//! Every route and error path through Rocket's local client, on a real data directory.

mod support;

use std::time::{Duration, Instant};

use ferrocluster_api::api::routes;
use ferrocluster_api::memory::Need;
use ferrocluster_api::service::Service;
use ferrocluster_core::cluster::kmeans::KMeans;
use ferrocluster_core::cluster::Clusterer;
use ferrocluster_core::features::{BlockNorm, FeatureConfig, Hog, LbpMethod};
use ferrocluster_core::image::{decode, DecodeLimits};
use ferrocluster_core::pipeline::extract_images;
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::{Client, LocalResponse};
use serde_json::{json, Value};
use support::{api_keys, json_images, labelled, multipart, ADMIN_KEY, READ_KEY};

/// The test settings: data in `dir`, the test keys, and `extra` settings.
fn figment(dir: &std::path::Path, extra: Value) -> rocket::figment::Figment {
    let mut figment =
        rocket::Config::figment().merge(("log_level", "off")).merge(("data_dir", dir)).merge(("api_keys", api_keys()));
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            figment = figment.merge((key, value));
        }
    }
    figment
}

/// A service on the data directory `dir`, with `extra` settings.
fn client_with(dir: &std::path::Path, extra: Value) -> Client {
    Client::tracked(ferrocluster_api::build(figment(dir, extra)).unwrap()).unwrap()
}

fn admin() -> Header<'static> {
    Header::new("Authorization", format!("Bearer {ADMIN_KEY}"))
}

fn reader() -> Header<'static> {
    Header::new("X-API-Key", READ_KEY)
}

fn json_of(response: LocalResponse<'_>) -> Value {
    serde_json::from_str(&response.into_string().unwrap()).unwrap()
}

/// Asserts a problem+json answer of `status` and `slug`, and gives the problem.
fn problem(response: LocalResponse<'_>, status: Status, slug: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.content_type().unwrap().to_string(), "application/problem+json");
    let header_id = response.headers().get_one("X-Request-Id").unwrap().to_owned();
    let doc = json_of(response);
    assert_eq!(doc["type"], format!("urn:ferrocluster:problem:{slug}"), "{doc}");
    assert_eq!(doc["status"], status.code);
    assert_eq!(doc["request_id"], header_id);
    assert!(!doc["detail"].as_str().unwrap().is_empty());
    doc
}

fn files(n: usize) -> Vec<(String, Vec<u8>)> {
    labelled(n, 32).into_iter().map(|(name, bytes, _)| (name, bytes)).collect()
}

fn upload(client: &Client, images: &[(String, Vec<u8>)]) -> Value {
    let (ct, body) = multipart(images, &[("name", "test set")]);
    let response = client
        .post("/v1/datasets")
        .header(admin())
        .header(ContentType::parse_flexible(&ct).unwrap())
        .body(body)
        .dispatch();
    assert_eq!(response.status(), Status::Created);
    json_of(response)
}

/// `POST /v1/models/{model_id}/predict` with a JSON `body`, as a reader.
fn predict_json<'c>(client: &'c Client, model_id: &str, body: impl Into<String>) -> LocalResponse<'c> {
    client
        .post(format!("/v1/models/{model_id}/predict"))
        .header(reader())
        .header(ContentType::JSON)
        .body(body.into())
        .dispatch()
}

fn small_features() -> Value {
    json!({"size": [32, 32], "hog": {"orientations": 9, "pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}})
}

fn wait_for_job(client: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = json_of(client.get(format!("/v1/jobs/{id}")).header(reader()).dispatch());
        if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Uploads `n` images, trains k-means with `k` and waits: (dataset, job, model id).
fn trained(client: &Client, n: usize, k: usize) -> (Value, Value, String) {
    let dataset = upload(client, &files(n));
    let request = json!({"dataset_id": dataset["id"], "k": k, "seed": 3, "features": small_features()});
    let response =
        client.post("/v1/models").header(admin()).header(ContentType::JSON).body(request.to_string()).dispatch();
    assert_eq!(response.status(), Status::Accepted);
    let location = response.headers().get_one("Location").unwrap().to_owned();
    let job = json_of(response);
    assert_eq!(location, format!("/v1/jobs/{}", job["id"].as_str().unwrap()));
    let job = wait_for_job(client, job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let model_id = job["model_id"].as_str().unwrap().to_owned();
    (dataset, job, model_id)
}

#[test]
fn open_routes_answer_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    assert_eq!(json_of(client.get("/healthz").dispatch())["status"], "ok");
    let ready = json_of(client.get("/readyz").dispatch());
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["redis"], "not configured");
    let metrics = client.get("/metrics").dispatch();
    assert_eq!(metrics.status(), Status::Ok);
    assert!(metrics
        .into_string()
        .unwrap()
        .contains("ferrocluster_http_responses_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 1"));
    let docs = client.get("/docs").dispatch();
    assert_eq!(docs.content_type(), Some(ContentType::HTML));
    let page = docs.into_string().unwrap();
    assert!(page.contains("openapi.json") && !page.contains("http://") && !page.contains("https://"));
    let openapi = json_of(client.get("/openapi.json").dispatch());
    assert!(openapi["paths"]["/v1/models/{id}/predict"]["post"].is_object());
}

#[test]
fn readiness_fails_when_redis_is_configured_but_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({"redis_url": "redis://127.0.0.1:1/"}));
    problem(client.get("/readyz").dispatch(), Status::ServiceUnavailable, "unavailable");
}

#[test]
fn every_protected_route_refuses_missing_wrong_and_underprivileged_keys() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let open = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"];
    let admin_only = [
        ("POST", "/v1/datasets"),
        ("DELETE", "/v1/datasets/x"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models/x"),
        ("DELETE", "/v1/jobs/x"),
    ];
    let mut protected = 0;
    for route in routes() {
        let path = route.uri.path().replace("<id>", "x").replace("<c>", "0");
        if open.contains(&path.as_str()) {
            continue;
        }
        protected += 1;
        let request = |key: Option<Header<'static>>| {
            let mut r = client.req(route.method, path.clone());
            if let Some(key) = key {
                r.add_header(key);
            }
            r.dispatch()
        };
        let doc = problem(request(None), Status::Unauthorized, "unauthorized");
        assert!(doc["detail"].as_str().unwrap().contains("needs an API key"), "{path}: {doc}");
        let response = request(Some(Header::new("Authorization", "Bearer wrong")));
        assert_eq!(response.headers().get_one("WWW-Authenticate"), Some("Bearer"));
        problem(response, Status::Unauthorized, "unauthorized");
        if admin_only.contains(&(route.method.as_str(), path.as_str())) {
            problem(request(Some(reader())), Status::Forbidden, "forbidden");
        }
    }
    assert_eq!(protected, 14);
}

#[test]
fn unknown_routes_and_ids_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    problem(client.get("/v2/nothing").dispatch(), Status::NotFound, "not-found");
    for (method, path, allow) in [
        (rocket::http::Method::Put, "/v1/datasets", "GET, HEAD, POST"),
        (rocket::http::Method::Patch, "/v1/models/m_1", "DELETE, GET, HEAD"),
        (rocket::http::Method::Get, "/v1/models/m_1/predict", "POST"),
        (rocket::http::Method::Post, "/healthz", "GET, HEAD"),
    ] {
        let response = client.req(method, path).header(admin()).dispatch();
        assert_eq!(response.headers().get_one("Allow"), Some(allow), "{method} {path}");
        problem(response, Status::MethodNotAllowed, "method-not-allowed");
    }
    for path in ["/v1/datasets/ds_0000", "/v1/models/m_0000", "/v1/jobs/job_0000", "/v1/datasets/..", "/v1/models/a.b"]
    {
        problem(client.get(path).header(reader()).dispatch(), Status::NotFound, "not-found");
    }
    problem(client.delete("/v1/datasets/ds_0000").header(admin()).dispatch(), Status::NotFound, "not-found");
    problem(client.delete("/v1/jobs/job_0000").header(admin()).dispatch(), Status::NotFound, "not-found");
    problem(
        client.get("/v1/models/m_1/clusters/notanumber/examples").header(reader()).dispatch(),
        Status::UnprocessableEntity,
        "invalid-parameter",
    );
}

#[test]
fn request_ids_are_echoed_or_made() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let response = client.get("/healthz").header(Header::new("X-Request-Id", "trace-42")).dispatch();
    assert_eq!(response.headers().get_one("X-Request-Id"), Some("trace-42"));
    let response = client.get("/healthz").header(Header::new("X-Request-Id", "bad id\twith spaces")).dispatch();
    assert_eq!(response.headers().get_one("X-Request-Id").unwrap().len(), 32);
}

/// The oracle for feature vectors: the core's own decode + extract on the same bytes.
fn core_features(images: &[(String, Vec<u8>)], config: &FeatureConfig) -> Vec<Vec<f32>> {
    let decoded: Vec<_> =
        images.iter().map(|(n, b)| decode(b, n, Some(config.size), &DecodeLimits::default()).unwrap()).collect();
    let views: Vec<_> = decoded.iter().map(|i| i.view()).collect();
    extract_images(&views, config, &|_| {}).unwrap().features.outer_iter().map(|r| r.to_vec()).collect()
}

#[test]
fn features_from_json_and_multipart_equal_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let images = files(4);
    let config: FeatureConfig = serde_json::from_value(small_features()).unwrap();
    let expected = core_features(&images, &config);

    // Integers written with a fraction of zero or an exponent are integers too (as JSON Schema
    // has it), in a JSON body and in a multipart field.
    let integral = r#"{"size": [32.0, 3.2e1], "hog": {"orientations": 9.0, "pixels_per_cell": [8, 8.0], "cells_per_block": [2e0, 2]}}"#;
    for features in [small_features().to_string(), integral.to_owned()] {
        let body = json_images(&images, json!({})).replacen('{', &format!(r#"{{"features": {features}, "#), 1);
        let doc = json_of(client.post("/v1/features").header(reader()).header(ContentType::JSON).body(body).dispatch());
        assert_eq!(doc["dim"], config.dim());
        assert_eq!(doc["names"], json!(["img-0.png", "img-1.png", "img-2.png", "img-3.png"]));
        let got: Vec<Vec<f32>> = serde_json::from_value(doc["features"].clone()).unwrap();
        assert_eq!(got, expected);

        let (ct, body) = multipart(&images, &[("features", &features)]);
        let response = client
            .post("/v1/features")
            .header(reader())
            .header(ContentType::parse_flexible(&ct).unwrap())
            .body(body)
            .dispatch();
        let got: Vec<Vec<f32>> = serde_json::from_value(json_of(response)["features"].clone()).unwrap();
        assert_eq!(got, expected);
    }
    // A fraction is no integer.
    let fraction = json_images(&images, json!({"features": {"size": [32.5, 32]}}));
    let response = client.post("/v1/features").header(reader()).header(ContentType::JSON).body(fraction).dispatch();
    problem(response, Status::UnprocessableEntity, "invalid-parameter");

    // Without `features` the default configuration (64×64 RGB HOG) applies.
    let doc = json_of(
        client
            .post("/v1/features")
            .header(reader())
            .header(ContentType::JSON)
            .body(json_images(&images[..1], json!({})))
            .dispatch(),
    );
    assert_eq!(doc["dim"], FeatureConfig::default().dim());
}

#[test]
fn bad_feature_requests_are_4xx_problems() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({"limits": {"features": "4 KiB"}}));
    let post =
        |ct: ContentType, body: Vec<u8>| client.post("/v1/features").header(reader()).header(ct).body(body).dispatch();
    let small = files(1);
    problem(post(ContentType::JSON, b"{\"images\": [".to_vec()), Status::BadRequest, "malformed-json");
    problem(post(ContentType::JSON, b"{\"pictures\": []}".to_vec()), Status::BadRequest, "malformed-json");
    problem(
        post(ContentType::JSON, br#"{"images": [{"data": "***"}]}"#.to_vec()),
        Status::BadRequest,
        "malformed-body",
    );
    problem(post(ContentType::JSON, br#"{"images": []}"#.to_vec()), Status::UnprocessableEntity, "invalid-input");
    problem(post(ContentType::Plain, b"hello".to_vec()), Status::UnsupportedMediaType, "unsupported-media-type");
    problem(
        post(ContentType::new("application", "zip"), b"PK".to_vec()),
        Status::UnsupportedMediaType,
        "unsupported-media-type",
    );
    let big = labelled(1, 256).remove(0).1;
    let doc = problem(
        post(ContentType::JSON, json_images(&[("big.png".into(), big)], json!({})).into_bytes()),
        Status::PayloadTooLarge,
        "payload-too-large",
    );
    assert!(doc["detail"].as_str().unwrap().contains("4KiB"), "{doc}");
    let corrupt = vec![("broken.png".to_owned(), small[0].1[..60].to_vec())];
    let doc = problem(
        post(ContentType::JSON, json_images(&corrupt, json!({})).into_bytes()),
        Status::UnprocessableEntity,
        "invalid-image",
    );
    assert!(doc["detail"].as_str().unwrap().contains("broken.png"), "{doc}");
    let bad_config = json_images(&small, json!({"features": {"size": [0, 0]}}));
    problem(post(ContentType::JSON, bad_config.into_bytes()), Status::UnprocessableEntity, "invalid-parameter");
    let unknown_field = json_images(&small, json!({"features": {"hogg": {}}}));
    problem(post(ContentType::JSON, unknown_field.into_bytes()), Status::UnprocessableEntity, "invalid-parameter");
    let no_boundary = ContentType::new("multipart", "form-data");
    problem(post(no_boundary, b"x".to_vec()), Status::BadRequest, "malformed-body");
}

#[test]
fn datasets_upload_in_every_form_list_get_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let images = files(5);
    let from_multipart = upload(&client, &images);
    assert_eq!(from_multipart["name"], "test set");
    assert_eq!(from_multipart["n_images"], 5);
    assert_eq!(from_multipart["images"][2], json!({"name": "img-2.png", "width": 32, "height": 32}));

    let post = |ct: ContentType, body: Vec<u8>| {
        let response = client.post("/v1/datasets?name=archive").header(admin()).header(ct).body(body).dispatch();
        assert_eq!(response.status(), Status::Created);
        json_of(response)
    };
    let from_tar = post(ContentType::new("application", "x-tar"), support::tar(&images));
    assert_eq!(from_tar["images"][0]["name"], "set/img-0.png");
    let from_zip = post(ContentType::new("application", "zip"), support::zip(&images));
    assert_eq!(from_zip["n_images"], 5);
    let from_json = post(ContentType::JSON, json_images(&images, json!({})).into_bytes());
    assert_eq!(from_json["name"], "archive");

    let list = json_of(client.get("/v1/datasets").header(reader()).dispatch());
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(list[0].get("images").is_none());
    let id = from_tar["id"].as_str().unwrap();
    assert_eq!(json_of(client.get(format!("/v1/datasets/{id}")).header(reader()).dispatch()), from_tar);
    assert_eq!(client.delete(format!("/v1/datasets/{id}")).header(admin()).dispatch().status(), Status::NoContent);
    problem(client.get(format!("/v1/datasets/{id}")).header(reader()).dispatch(), Status::NotFound, "not-found");
    assert_eq!(json_of(client.get("/v1/datasets").header(reader()).dispatch()).as_array().unwrap().len(), 3);
}

#[test]
fn a_bad_upload_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({"limits": {"datasets": "64 KiB"}}));
    upload(&client, &files(2));
    let mut images = files(3);
    images[1].1.truncate(100);
    let (ct, body) = multipart(&images, &[]);
    let doc = problem(
        client
            .post("/v1/datasets")
            .header(admin())
            .header(ContentType::parse_flexible(&ct).unwrap())
            .body(body)
            .dispatch(),
        Status::UnprocessableEntity,
        "invalid-image",
    );
    assert!(doc["detail"].as_str().unwrap().contains("img-1.png"), "{doc}");
    problem(
        client
            .post("/v1/datasets")
            .header(admin())
            .header(ContentType::new("application", "zip"))
            .body(b"PK\x03\x04junk")
            .dispatch(),
        Status::BadRequest,
        "malformed-body",
    );
    problem(
        client
            .post("/v1/datasets")
            .header(admin())
            .header(ContentType::new("application", "x-tar"))
            .body(vec![7u8; 1024])
            .dispatch(),
        Status::BadRequest,
        "malformed-body",
    );
    let (ct, body) = multipart(&files(40), &[]);
    problem(
        client
            .post("/v1/datasets")
            .header(admin())
            .header(ContentType::parse_flexible(&ct).unwrap())
            .body(body)
            .dispatch(),
        Status::PayloadTooLarge,
        "payload-too-large",
    );
    assert_eq!(json_of(client.get("/v1/datasets").header(reader()).dispatch()).as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(dir.path().join("datasets")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

/// A zip of `members` files of `bytes` zeros each, deflated (a few KiB on the wire).
fn zeros_zip(members: usize, bytes: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..members {
        writer.start_file(format!("zero-{i}.png"), options).unwrap();
        writer.write_all(&vec![0u8; bytes]).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn an_archive_inflating_past_its_limits_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = json!({"archive_limits": {"max_member_bytes": 300_000, "max_total_bytes": 1_000_000}});
    let client = client_with(dir.path(), limits);
    let post =
        |ct: ContentType, body: Vec<u8>| client.post("/v1/datasets").header(admin()).header(ct).body(body).dispatch();
    let zip_type = || ContentType::new("application", "zip");

    // Five members of 250 kB: each under the member limit, 1.25 MB in all.
    let bomb = zeros_zip(5, 250_000);
    assert!(bomb.len() < 20_000, "the crafted zip is {} bytes", bomb.len());
    let doc = problem(post(zip_type(), bomb), Status::PayloadTooLarge, "payload-too-large");
    assert!(doc["detail"].as_str().unwrap().contains("in all"), "{doc}");
    let doc = problem(post(zip_type(), zeros_zip(1, 400_000)), Status::PayloadTooLarge, "payload-too-large");
    assert!(doc["detail"].as_str().unwrap().contains("zero-0.png"), "{doc}");
    // A tar is bounded the same way (its sparse members inflate too).
    let big: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("big-{i}.png"), vec![0u8; 250_000])).collect();
    let doc = problem(
        post(ContentType::new("application", "x-tar"), support::tar(&big)),
        Status::PayloadTooLarge,
        "payload-too-large",
    );
    assert!(doc["detail"].as_str().unwrap().contains("set/big-4.png"), "{doc}");

    // Under both limits the images are read (and these decode).
    let created = post(zip_type(), support::zip(&files(3)));
    assert_eq!(created.status(), Status::Created);
    assert_eq!(json_of(client.get("/v1/datasets").header(reader()).dispatch()).as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

/// The CORS headers of a response, by name.
fn cors_headers(response: &LocalResponse<'_>) -> Vec<(String, String)> {
    response
        .headers()
        .iter()
        .filter(|h| h.name().as_str().to_ascii_lowercase().starts_with("access-control-"))
        .map(|h| (h.name().to_string(), h.value().to_owned()))
        .collect()
}

fn preflight<'c>(client: &'c Client, origin: &str) -> LocalResponse<'c> {
    client
        .req(rocket::http::Method::Options, "/v1/models/m_1/predict")
        .header(Header::new("Origin", origin.to_owned()))
        .header(Header::new("Access-Control-Request-Method", "POST"))
        .header(Header::new("Access-Control-Request-Headers", "authorization, content-type"))
        .dispatch()
}

#[test]
fn cors_is_off_unless_origins_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let response =
        client.get("/v1/datasets").header(reader()).header(Header::new("Origin", "https://app.example")).dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert!(cors_headers(&response).is_empty());
    let response = preflight(&client, "https://app.example");
    assert!(cors_headers(&response).is_empty());
    assert_eq!(response.headers().get_one("Allow"), Some("POST"));
    problem(response, Status::MethodNotAllowed, "method-not-allowed");
}

#[test]
fn configured_origins_get_cors_headers_and_preflights_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let client =
        client_with(dir.path(), json!({"cors_allowed_origins": ["https://app.example", "http://localhost:3000"]}));
    let allowed = "https://app.example";

    let response = client.get("/v1/datasets").header(reader()).header(Header::new("Origin", allowed)).dispatch();
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.headers().get_one("Access-Control-Allow-Origin"), Some(allowed));
    assert_eq!(response.headers().get_one("Vary"), Some("Origin"));
    assert!(response.headers().get_one("Access-Control-Expose-Headers").unwrap().contains("X-Request-Id"));
    // Errors carry them too, so a browser script can read the problem.
    let response = client.get("/v1/datasets").header(Header::new("Origin", allowed)).dispatch();
    assert_eq!(response.headers().get_one("Access-Control-Allow-Origin"), Some(allowed));
    problem(response, Status::Unauthorized, "unauthorized");

    let response = preflight(&client, "http://localhost:3000");
    assert_eq!(response.status(), Status::NoContent);
    assert_eq!(response.headers().get_one("Access-Control-Allow-Origin"), Some("http://localhost:3000"));
    let methods = response.headers().get_one("Access-Control-Allow-Methods").unwrap().to_owned();
    assert!(methods.contains("POST") && methods.contains("DELETE"), "{methods}");
    let headers = response.headers().get_one("Access-Control-Allow-Headers").unwrap().to_ascii_lowercase();
    assert!(["authorization", "x-api-key", "content-type"].iter().all(|h| headers.contains(h)), "{headers}");
    assert!(response.content_type().is_none());
    assert!(response.into_bytes().unwrap_or_default().is_empty());

    for other in ["https://evil.example", "https://app.example.evil", "null"] {
        let response = client.get("/v1/datasets").header(reader()).header(Header::new("Origin", other)).dispatch();
        assert_eq!(response.status(), Status::Ok);
        assert!(cors_headers(&response).is_empty(), "{other}");
        let response = preflight(&client, other);
        assert!(cors_headers(&response).is_empty(), "{other}");
        assert_eq!(response.status(), Status::MethodNotAllowed);
    }

    let any = tempfile::tempdir().unwrap();
    let client = client_with(any.path(), json!({"cors_allowed_origins": ["*"]}));
    let response = preflight(&client, "https://anywhere.example");
    assert_eq!(response.status(), Status::NoContent);
    assert_eq!(response.headers().get_one("Access-Control-Allow-Origin"), Some("https://anywhere.example"));
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let build = |extra: Value| ferrocluster_api::build(figment(dir.path(), extra)).err();
    let error = build(json!({"cors_allowed_origins": ["app.example"]})).unwrap();
    assert!(error.contains("app.example"), "{error}");
    assert!(build(json!({"cors_allowed_origins": ["https://app.example"]})).is_none());
    let error = build(json!({"max_concurrent_batches": 0})).unwrap();
    assert!(error.contains("max_concurrent_batches"), "{error}");
}

#[test]
fn training_gives_the_cores_model_and_predict_labels_like_it() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let (dataset, job, model_id) = trained(&client, 30, 3);
    assert_eq!(job["attempts"], 1);
    for stage in ["features", "fit", "metrics", "store"] {
        assert!(job["timings_ms"][stage].is_u64(), "{job}");
    }

    // Oracle: the core's k-means on the core's features, same seed.
    let images = files(30);
    let config: FeatureConfig = serde_json::from_value(small_features()).unwrap();
    let x = core_features(&images, &config);
    let x = ndarray::Array2::from_shape_vec((30, config.dim()), x.concat()).unwrap();
    let expected = KMeans { n_clusters: 3, random_state: 3, ..KMeans::default() }.fit(x.view(), None).unwrap();

    let model = json_of(client.get(format!("/v1/models/{model_id}")).header(reader()).dispatch());
    assert_eq!(model["dataset_id"], dataset["id"]);
    let centroids: Vec<Vec<f32>> = serde_json::from_value(model["centroids"].clone()).unwrap();
    assert_eq!(centroids, expected.centres.outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>());
    assert_eq!(model["metrics"]["inertia"].as_f64().unwrap(), expected.inertia);
    assert!(model["metrics"]["silhouette"].as_f64().unwrap() > 0.3, "{model}");
    assert_eq!(model["cluster_sizes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 30);
    let listed = json_of(client.get("/v1/models").header(reader()).dispatch());
    assert_eq!(listed[0]["id"], model_id.as_str());

    // Predicting the training images gives their training labels, each its own nearest example.
    let body = json_images(&images[..6], json!({}));
    let doc = json_of(predict_json(&client, &model_id, body));
    assert_eq!(doc["model_id"], model_id.as_str());
    for (i, p) in doc["predictions"].as_array().unwrap().iter().enumerate() {
        assert_eq!(p["name"], format!("img-{i}.png"));
        assert_eq!(p["cluster"].as_i64().unwrap(), expected.labels[i]);
        assert_eq!(p["distances"].as_array().unwrap().len(), 3);
        assert_eq!(p["nearest"][0]["index"], i);
        assert_eq!(p["nearest"][0]["distance"].as_f64().unwrap(), 0.0);
        assert!(p["nearest"].as_array().unwrap().len() <= 5);
    }

    // Thumbnails of a cluster: a PNG one row high.
    let response =
        client.get(format!("/v1/models/{model_id}/clusters/1/examples?n=4&thumb=32")).header(reader()).dispatch();
    assert_eq!(response.content_type(), Some(ContentType::PNG));
    let png = image::load_from_memory(&response.into_bytes().unwrap()).unwrap();
    assert_eq!(png.height(), 32 + 2 * 4);
    problem(
        client.get(format!("/v1/models/{model_id}/clusters/3/examples")).header(reader()).dispatch(),
        Status::NotFound,
        "not-found",
    );
    // Out of range, not a number, or given twice: refused, never taken as absent.
    for query in ["n=0", "thumb=null", "thumb=64&thumb=64", "n=-1"] {
        problem(
            client.get(format!("/v1/models/{model_id}/clusters/0/examples?{query}")).header(reader()).dispatch(),
            Status::UnprocessableEntity,
            "invalid-parameter",
        );
    }

    // A job that has finished cannot be cancelled; a deleted model is gone from the cache too.
    problem(
        client.delete(format!("/v1/jobs/{}", job["id"].as_str().unwrap())).header(admin()).dispatch(),
        Status::Conflict,
        "conflict",
    );
    assert_eq!(client.delete(format!("/v1/models/{model_id}")).header(admin()).dispatch().status(), Status::NoContent);
    problem(predict_json(&client, &model_id, json_images(&images[..1], json!({}))), Status::NotFound, "not-found");
}

#[test]
fn work_past_max_working_bytes_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _, model_id) = trained(&client_with(dir.path(), json!({})), 9, 3);
    let config: FeatureConfig = serde_json::from_value(small_features()).unwrap();
    // The same data, served with room for exactly `need`.
    let limited = |need: Need| client_with(dir.path(), json!({"max_working_bytes": need.bytes}));
    let refused = |response: LocalResponse<'_>| {
        let doc = problem(response, Status::UnprocessableEntity, "invalid-input");
        assert!(doc["detail"].as_str().unwrap().contains("max_working_bytes"), "{doc}");
    };

    let client = limited(Need::features(3, &config));
    let features = |n: usize| {
        let body = json_images(&files(n), json!({"features": small_features()}));
        client.post("/v1/features").header(reader()).header(ContentType::JSON).body(body).dispatch()
    };
    assert_eq!(features(3).status(), Status::Ok);
    refused(features(4));

    let client = limited(Need::predict(3, &config));
    let predict = |n: usize| predict_json(&client, &model_id, json_images(&files(n), json!({})));
    assert_eq!(predict(3).status(), Status::Ok);
    refused(predict(4));

    // Training on the nine images fits; with raw pixels as well (3·32·32 more values a row) not.
    let client = limited(Need::training(9, &config));
    let train = |features: Value| {
        let request = json!({"dataset_id": dataset["id"], "k": 3, "features": features});
        client.post("/v1/models").header(admin()).header(ContentType::JSON).body(request.to_string()).dispatch()
    };
    let mut wide = small_features();
    wide["pixels"] = json!({});
    refused(train(wide));
    let job = json_of(train(small_features()));
    assert_eq!(wait_for_job(&client, job["id"].as_str().unwrap())["state"], "succeeded");
    assert_eq!(
        json_of(client.get("/v1/jobs").header(reader()).dispatch()).as_array().unwrap().len(),
        2,
        "one job made"
    );
}

#[test]
fn work_that_fits_only_beside_less_gets_503_and_training_waits_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let config: FeatureConfig = serde_json::from_value(small_features()).unwrap();
    let limit = Need::features(2, &config).bytes.max(Need::training(9, &config).bytes);
    let client = client_with(dir.path(), json!({"max_working_bytes": limit}));
    let (dataset, _, _) = trained(&client, 9, 3);
    let memory = client.rocket().state::<Service>().unwrap().memory.clone();
    // Other work fills the budget, one image's features at a time.
    let held: Vec<_> = std::iter::from_fn(|| memory.reserve(Need::features(1, &config)).ok()).collect();
    assert!(!held.is_empty());
    let body = json_images(&files(2), json!({"features": small_features()}));
    let busy = client.post("/v1/features").header(reader()).header(ContentType::JSON).body(body.clone()).dispatch();
    assert_eq!(busy.headers().get_one("Retry-After"), Some("1"));
    let doc = problem(busy, Status::ServiceUnavailable, "overloaded");
    assert!(doc["detail"].as_str().unwrap().contains("max_working_bytes"), "{doc}");
    // A training job waits, queued, rather than failing.
    let request = json!({"dataset_id": dataset["id"], "k": 3, "features": small_features()});
    let job = json_of(
        client.post("/v1/models").header(admin()).header(ContentType::JSON).body(request.to_string()).dispatch(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let waiting = json_of(client.get(format!("/v1/jobs/{}", job["id"].as_str().unwrap())).header(reader()).dispatch());
    assert_eq!((&waiting["state"], &waiting["attempts"]), (&json!("queued"), &json!(0)), "{waiting}");
    drop(held);
    assert_eq!(wait_for_job(&client, job["id"].as_str().unwrap())["state"], "succeeded");
    let answer = client.post("/v1/features").header(reader()).header(ContentType::JSON).body(body).dispatch();
    assert_eq!(answer.status(), Status::Ok);
    assert_eq!(memory.in_use(), 0, "every reservation is given back");
}

#[test]
fn bad_training_and_predict_requests_are_4xx_problems() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let (dataset, _, model_id) = trained(&client, 9, 3);
    let train = |body: Value| {
        client.post("/v1/models").header(admin()).header(ContentType::JSON).body(body.to_string()).dispatch()
    };
    let id = dataset["id"].as_str().unwrap();
    problem(train(json!({"dataset_id": id, "k": 0})), Status::UnprocessableEntity, "invalid-parameter");
    problem(train(json!({"dataset_id": id, "k": 10})), Status::UnprocessableEntity, "invalid-parameter");
    problem(train(json!({"dataset_id": id, "k": 2, "max_iter": 0})), Status::UnprocessableEntity, "invalid-parameter");
    problem(
        train(json!({"dataset_id": id, "k": 2, "features": {"size": [64, 64], "hog": null}})),
        Status::UnprocessableEntity,
        "invalid-parameter",
    );
    problem(train(json!({"dataset_id": "ds_ffff", "k": 2})), Status::NotFound, "not-found");
    problem(train(json!({"dataset_id": id, "k": 2, "colour": 1})), Status::BadRequest, "malformed-json");
    problem(train(json!({"dataset_id": id, "k": 2, "algorithm": "magic"})), Status::BadRequest, "malformed-json");
    problem(train(json!({"dataset_id": id, "k": -1})), Status::BadRequest, "malformed-json");
    problem(
        client.post("/v1/models").header(admin()).header(ContentType::Plain).body("{}").dispatch(),
        Status::UnsupportedMediaType,
        "unsupported-media-type",
    );
    assert!(json_of(client.get("/v1/jobs").header(reader()).dispatch()).as_array().unwrap().len() == 1);

    let predict = |body: String| predict_json(&client, &model_id, body);
    let mut images = files(2);
    images[1].1 = b"GIF89a but not really".to_vec();
    let doc = problem(predict(json_images(&images, json!({}))), Status::UnprocessableEntity, "invalid-image");
    assert!(doc["detail"].as_str().unwrap().contains("img-1.png"));
    problem(predict("[1, 2".to_owned()), Status::BadRequest, "malformed-json");
}

#[test]
fn mini_batch_k_means_trains_too() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let dataset = upload(&client, &files(12));
    let request =
        json!({"dataset_id": dataset["id"], "k": 3, "algorithm": "minibatch_kmeans", "features": small_features()});
    let job = json_of(
        client.post("/v1/models").header(admin()).header(ContentType::JSON).body(request.to_string()).dispatch(),
    );
    let job = wait_for_job(&client, job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let model =
        json_of(client.get(format!("/v1/models/{}", job["model_id"].as_str().unwrap())).header(reader()).dispatch());
    assert_eq!(model["algorithm"], "minibatch_kmeans");
}

#[test]
fn everything_survives_a_restart_and_an_interrupted_job_is_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, job, model_id) = {
        let client = client_with(dir.path(), json!({}));
        trained(&client, 9, 3)
    };
    // A job record as a crash mid-training leaves it: running, no model stored.
    let mut interrupted = job.clone();
    interrupted["id"] = json!("job_00000000000000aa");
    interrupted["model_id"] = json!("m_00000000000000aa");
    interrupted["state"] = json!("running");
    interrupted["finished_at_ms"] = Value::Null;
    std::fs::write(dir.path().join("jobs/job_00000000000000aa.json"), interrupted.to_string()).unwrap();

    let client = client_with(dir.path(), json!({}));
    let got =
        json_of(client.get(format!("/v1/datasets/{}", dataset["id"].as_str().unwrap())).header(reader()).dispatch());
    assert_eq!(got, dataset);
    assert_eq!(
        json_of(client.get(format!("/v1/models/{model_id}")).header(reader()).dispatch())["id"],
        model_id.as_str()
    );
    let rerun = wait_for_job(&client, "job_00000000000000aa");
    assert_eq!(rerun["state"], "succeeded", "{rerun}");
    assert_eq!(rerun["attempts"], 2);
    let first = json_of(client.get(format!("/v1/models/{model_id}")).header(reader()).dispatch());
    let second = json_of(client.get("/v1/models/m_00000000000000aa").header(reader()).dispatch());
    assert_eq!(first["centroids"], second["centroids"]);
}

#[test]
fn a_queued_job_can_be_cancelled_and_its_dataset_is_protected_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let big = upload(&client, &labelled(300, 64).into_iter().map(|(n, b, _)| (n, b)).collect::<Vec<_>>());
    let small = upload(&client, &files(6));
    // The first job keeps the one training thread busy, so the second stays queued.
    let first = json!({"dataset_id": big["id"], "k": 3});
    let first =
        json_of(client.post("/v1/models").header(admin()).header(ContentType::JSON).body(first.to_string()).dispatch());
    let second = json!({"dataset_id": small["id"], "k": 2, "features": small_features()});
    let second = json_of(
        client.post("/v1/models").header(admin()).header(ContentType::JSON).body(second.to_string()).dispatch(),
    );
    let busy = format!("/v1/datasets/{}", small["id"].as_str().unwrap());
    problem(client.delete(&busy).header(admin()).dispatch(), Status::Conflict, "conflict");
    let cancelled =
        json_of(client.delete(format!("/v1/jobs/{}", second["id"].as_str().unwrap())).header(admin()).dispatch());
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(client.delete(&busy).header(admin()).dispatch().status(), Status::NoContent);
    assert_eq!(wait_for_job(&client, first["id"].as_str().unwrap())["state"], "succeeded");
    assert_eq!(wait_for_job(&client, second["id"].as_str().unwrap())["state"], "cancelled");
    assert!(!dir.path().join("models").join(second["model_id"].as_str().unwrap()).exists());
}

#[test]
fn a_model_stored_anew_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(dir.path(), json!({}));
    let (_, _, model_id) = trained(&client, 9, 3);
    let body = json_images(&files(1), json!({}));
    let predict = || json_of(predict_json(&client, &model_id, body.clone()));
    let before = predict()["predictions"][0]["cluster"].as_u64().unwrap() as usize;
    // Store a new version: the same centres in reverse order.
    let path = dir.path().join("models").join(&model_id).join("model.json");
    let mut saved = ferrocluster_core::model::SavedModel::load(&path).unwrap();
    let ferrocluster_core::model::Model::KMeans(model) = &mut saved.model;
    model.centres.invert_axis(ndarray::Axis(0));
    model.centres = model.centres.as_standard_layout().into_owned();
    model.labels.iter_mut().for_each(|l| *l = 2 - *l);
    std::thread::sleep(Duration::from_millis(20));
    saved.save(&path).unwrap();
    let after = predict()["predictions"][0]["cluster"].as_u64().unwrap() as usize;
    assert_eq!(after, 2 - before);
}

/// Rocket's `<name>` / `<name..>` segments as OpenAPI's `{name}`, and the names so marked.
fn template(rocket_path: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let path = rocket_path
        .split('/')
        .map(|segment| match segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            Some(name) => {
                let name = name.trim_end_matches("..").to_owned();
                names.push(name.clone());
                format!("{{{name}}}")
            }
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/");
    (path, names)
}

fn openapi_document() -> Value {
    serde_json::from_str(&ferrocluster_api::api::docs::openapi_text()).unwrap()
}

/// `node`, or what its local `$ref` names.
fn resolved<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(reference) => doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("{reference}")),
        None => node,
    }
}

#[test]
fn the_openapi_document_describes_every_route_and_response() {
    let doc = openapi_document();
    let mut documented = std::collections::BTreeMap::new();
    let mut by_id = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (code, response) in op["responses"].as_object().unwrap() {
                let response = resolved(&doc, response);
                assert!(response["description"].is_string(), "{method} {path} {code} has no description");
                if code.starts_with('4') || code.starts_with('5') {
                    assert!(response["content"]["application/problem+json"].is_object(), "{method} {path} {code}");
                }
            }
            let open = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"].contains(&path.as_str());
            assert_eq!(op["security"].is_array(), !open, "{method} {path}");
            assert_eq!(op["responses"].get("401").is_some(), !open, "{method} {path}: 401 declared");
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(by_id.insert(id.clone(), op.clone()).is_none(), "operationId {id} is not unique");
            documented.insert((method.to_uppercase(), path.clone()), op.clone());
        }
    }
    // Every link leads to an operation of the document, with parameters it has.
    let mut links = 0;
    for op in documented.values() {
        for response in op["responses"].as_object().unwrap().values() {
            for (name, link) in resolved(&doc, response)["links"].as_object().into_iter().flatten() {
                let target = &by_id[link["operationId"].as_str().unwrap_or_else(|| panic!("{name}: no operationId"))];
                let names: Vec<&str> = target["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                for parameter in link["parameters"].as_object().into_iter().flatten().map(|(name, _)| name) {
                    assert!(
                        names.contains(&parameter.as_str()),
                        "link {name}: {parameter} is not a parameter of its target"
                    );
                }
                if link.get("requestBody").is_some() {
                    assert!(target["requestBody"].is_object(), "link {name} sends a body to an operation without one");
                }
                links += 1;
            }
        }
    }
    assert!(links >= 10, "{links} links");
    // The headers problems come with: `Retry-After` past the in-flight bound, `WWW-Authenticate` on 401.
    let predict = &documented[&("POST".to_owned(), "/v1/models/{id}/predict".to_owned())];
    assert!(resolved(&doc, &predict["responses"]["503"])["headers"]["Retry-After"].is_object());
    assert!(resolved(&doc, &predict["responses"]["401"])["headers"]["WWW-Authenticate"].is_object());
    // Each route Rocket serves is one operation, with the same path and query parameters.
    let mut served = std::collections::BTreeSet::new();
    for route in routes() {
        let (path, path_params) = template(route.uri.path());
        let query_params: Vec<String> = route
            .uri
            .query()
            .map(|q| q.split('&').map(|p| p.trim_matches(['<', '>']).trim_end_matches("..").to_owned()).collect())
            .unwrap_or_default();
        let key = (route.method.as_str().to_owned(), path.clone());
        let op = documented.get(&key).unwrap_or_else(|| panic!("{} {path} is served but not documented", key.0));
        let params = |place: &str| -> std::collections::BTreeSet<String> {
            op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter().filter(|p| p["in"] == place).map(|p| p["name"].as_str().unwrap().to_owned()).collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(params("path"), path_params.into_iter().collect(), "{} {path}: path parameters", key.0);
        assert_eq!(params("query"), query_params.into_iter().collect(), "{} {path}: query parameters", key.0);
        assert!(served.insert(key.clone()), "{} {path} is routed twice", key.0);
    }
    let undocumented: Vec<_> = documented.keys().filter(|k| !served.contains(*k)).collect();
    assert!(undocumented.is_empty(), "documented but not served: {undocumented:?}");
}

/// The document's bounds on the extractors' numeric parameters, and on each item of the pairs
/// (`size`, HOG's `pixels_per_cell` and `cells_per_block`), checked against the core's own
/// validation: each bound is accepted and the next value past it refused.
#[test]
fn the_documented_bounds_of_feature_parameters_are_the_cores() {
    let doc = openapi_document();
    let schemas = &doc["components"]["schemas"];
    for owner in ["TrainRequest", "FeaturesRequest", "ModelMeta"] {
        let features = &schemas[owner]["properties"]["features"];
        assert!(features.to_string().contains("#/components/schemas/FeatureConfig"), "{owner}: {features}");
    }
    type Valid = fn(&Value) -> bool;
    let config_valid: Valid =
        |config| serde_json::from_value::<FeatureConfig>(config.clone()).is_ok_and(|c| c.validate().is_ok());
    // HOG's cells and blocks alone: whether they fit in `size` is a constraint across fields.
    let hog_valid: Valid = |hog| serde_json::from_value::<Hog>(hog.clone()).is_ok_and(|h| h.validate().is_ok());
    let mut checked = 0;
    let cases = [
        ("FeatureConfig", json!({"hog": null, "colour": {}}), "", config_valid),
        ("Hog", json!({}), "", hog_valid),
        ("Lbp", json!({"lbp": {}}), "/lbp", config_valid),
        ("ColourHistogram", json!({"colour": {}}), "/colour", config_valid),
    ];
    for (schema, config, at, valid) in cases {
        assert!(valid(&config), "{config}");
        for (field, property) in schemas[schema]["properties"].as_object().unwrap() {
            // A scalar's bounds, or each item's of a pair (the other item at its default).
            let pair = property["type"] == "array";
            let bounded = if pair { &property["items"] } else { property };
            let items = if pair { 0..2 } else { 0..1 };
            if pair {
                assert_eq!((&property["minItems"], &property["maxItems"]), (&json!(2), &json!(2)), "{schema}.{field}");
            }
            for item in items {
                for (keyword, outward) in [("minimum", -1.0), ("maximum", 1.0)] {
                    let Some(bound) = bounded[keyword].as_f64() else { continue };
                    let with = |value: f64| {
                        let value = if bounded["type"] == "integer" { json!(value as i64) } else { json!(value) };
                        let mut config = config.clone();
                        let owner = config.pointer_mut(at).unwrap();
                        if pair {
                            owner[field] = property["default"].clone();
                            owner[field][item] = value;
                        } else {
                            owner[field] = value;
                        }
                        config
                    };
                    assert!(valid(&with(bound)), "{schema}.{field}[{item}] = {bound} is documented as valid");
                    assert!(
                        !valid(&with(bound + outward)),
                        "{schema}.{field}[{item}] = {} is documented as invalid",
                        bound + outward
                    );
                    checked += 1;
                }
            }
        }
    }
    // Two bounds for each of `orientations`, `points`, `radius`, `bins`, and each item of three pairs.
    assert_eq!(checked, 4 * 2 + 3 * 2 * 2);
    let names = |schema: &str| -> Vec<String> {
        schemas[schema]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names("BlockNorm"), BlockNorm::ALL.map(|n| n.name().to_owned()));
    assert_eq!(names("LbpMethod"), LbpMethod::ALL.map(|m| m.name().to_owned()));
}

#[test]
fn the_checked_in_openapi_document_is_the_generated_one() {
    let generated = ferrocluster_api::api::docs::openapi_text();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p ferrocluster-api --test api`"
    );
}

/// A trained model on a data directory, for tests that then serve it with other settings.
fn model_on_disk(dir: &std::path::Path) -> String {
    let client = client_with(dir, json!({}));
    trained(&client, 9, 3).2
}

async fn async_client(dir: &std::path::Path, extra: Value) -> rocket::local::asynchronous::Client {
    rocket::local::asynchronous::Client::tracked(ferrocluster_api::build(figment(dir, extra)).unwrap()).await.unwrap()
}

/// Sends predict requests of the given numbers of images, all at once: their statuses and the
/// metrics text after.
async fn concurrent_predicts(
    client: &rocket::local::asynchronous::Client,
    model_id: &str,
    images: &[usize],
) -> (Vec<(u16, Option<String>)>, String) {
    let requests = images.iter().map(|&n| {
        client
            .post(format!("/v1/models/{model_id}/predict"))
            .header(reader())
            .header(ContentType::JSON)
            .body(json_images(&files(n), json!({})))
            .dispatch()
    });
    let responses = rocket::futures::future::join_all(requests).await;
    let statuses =
        responses.iter().map(|r| (r.status().code, r.headers().get_one("Retry-After").map(str::to_owned))).collect();
    let metrics = client.get("/metrics").dispatch().await.into_string().await.unwrap();
    (statuses, metrics)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Runs `test` on a fresh multi-threaded runtime (the blocking client of `model_on_disk` cannot run inside one).
fn run_async(test: impl std::future::Future<Output = ()>) {
    rocket::tokio::runtime::Runtime::new().unwrap().block_on(test);
}

#[test]
fn concurrent_predicts_are_batched_and_batching_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let model_id = model_on_disk(dir.path());
    run_async(async {
        // One batch at a time: a long batch (a request of 256 images, a batch of its own) runs
        // first, and the one-image requests that come meanwhile gather into batches instead of
        // each starting at once.
        let settings = json!({"max_batch_size": 8, "batch_wait_timeout_ms": 60_000, "max_concurrent_batches": 1});
        let client = async_client(dir.path(), settings).await;
        let (statuses, metrics) = concurrent_predicts(&client, &model_id, &[256, 1, 1, 1, 1, 1, 1]).await;
        assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
        assert_eq!(metric(&metrics, "ferrocluster_predictions_total"), 262.0);
        assert!(metric(&metrics, "ferrocluster_predict_batch_images_count") < 7.0, "{metrics}");

        let client = async_client(dir.path(), json!({"batching": false})).await;
        let (statuses, metrics) = concurrent_predicts(&client, &model_id, &[256, 1, 1, 1, 1, 1, 1]).await;
        assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
        assert_eq!(metric(&metrics, "ferrocluster_predict_batch_images_count"), 7.0);
    });
}

#[test]
fn a_lone_predict_runs_at_once_whatever_the_batch_wait() {
    let dir = tempfile::tempdir().unwrap();
    let model_id = model_on_disk(dir.path());
    run_async(async {
        // Ten minutes' wait for a batch to fill: a lone request must not pay it.
        let client = async_client(dir.path(), json!({"max_batch_size": 8, "batch_wait_timeout_ms": 600_000})).await;
        for _ in 0..3 {
            let answered = rocket::tokio::time::timeout(
                std::time::Duration::from_secs(120),
                concurrent_predicts(&client, &model_id, &[1]),
            );
            let (statuses, _) = answered.await.expect("a lone request waited for its batch to fill");
            assert_eq!(statuses[0].0, 200);
        }
    });
}

#[test]
fn past_the_in_flight_bound_predict_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let model_id = model_on_disk(dir.path());
    run_async(async {
        let client = async_client(dir.path(), json!({"max_in_flight": 1, "batch_wait_timeout_ms": 300})).await;
        // Requests long enough (64 images each) that the first holds its place while the others come.
        let (statuses, metrics) = concurrent_predicts(&client, &model_id, &[64, 64, 64]).await;
        assert_eq!(statuses.iter().filter(|(s, _)| *s == 200).count(), 1, "{statuses:?}");
        assert!(
            statuses.iter().filter(|(s, _)| *s == 503).all(|(_, retry)| retry.as_deref() == Some("1")),
            "{statuses:?}"
        );
        assert_eq!(metric(&metrics, "ferrocluster_predict_overloaded_total"), 2.0);
    });
}
