//! The real `ferrocluster-api` binary over real HTTP: upload → train → predict, and a kill
//! mid-training followed by a restart that finishes the job and serves the model.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::server::{get_json, images, job_state, post_json, start, wait_succeeded};
use support::{json_images, ADMIN_KEY, READ_KEY};

#[test]
fn upload_train_predict_then_survive_a_kill_mid_training() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::server::free_port();
    let server = start(dir.path(), port, &[]);

    // Upload → train → predict.
    let small = images(12, 32);
    let (status, dataset) = post_json(&server, "/v1/datasets", ADMIN_KEY, &json_images(&small, json!({})));
    assert_eq!(status, 201, "{dataset}");
    let features = json!({"size": [32, 32], "hog": {"cells_per_block": [2, 2]}});
    let request = json!({"dataset_id": dataset["id"], "k": 3, "features": features});
    let (status, job) = post_json(&server, "/v1/models", ADMIN_KEY, &request.to_string());
    assert_eq!(status, 202, "{job}");
    let job = wait_succeeded(&server, job["id"].as_str().unwrap(), Duration::from_secs(60));
    let path = format!("/v1/models/{}/predict", job["model_id"].as_str().unwrap());
    let (status, predicted) = post_json(&server, &path, READ_KEY, &json_images(&small[..3], json!({})));
    assert_eq!(status, 200, "{predicted}");
    assert_eq!(predicted["predictions"].as_array().unwrap().len(), 3);

    // A long job: kill the server (SIGKILL, no grace) while it runs, then start it again.
    let big = images(900, 64);
    let (status, dataset) = post_json(&server, "/v1/datasets", ADMIN_KEY, &json_images(&big, json!({})));
    assert_eq!(status, 201, "{dataset}");
    let request = json!({"dataset_id": dataset["id"], "k": 3, "features": {"size": [64, 64], "hog": {"cells_per_block": [2, 2]}, "lbp": {}}});
    let (_, job) = post_json(&server, "/v1/models", ADMIN_KEY, &request.to_string());
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_state(&server, &id)["state"] != "running" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server);
    let stored = std::fs::read_to_string(dir.path().join(format!("jobs/{id}.json"))).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["state"], "running", "the kill came after the job finished: make the job longer");

    let server = start(dir.path(), port, &[]);
    let job = wait_succeeded(&server, &id, Duration::from_secs(120));
    assert_eq!(job["attempts"], 2);
    let path = format!("/v1/models/{}/predict", job["model_id"].as_str().unwrap());
    let (status, predicted) = post_json(&server, &path, READ_KEY, &json_images(&big[..2], json!({})));
    assert_eq!(status, 200, "{predicted}");
    let (_, first) = get_json(&server, &format!("/v1/datasets/{}", dataset["id"].as_str().unwrap()));
    assert_eq!(first["n_images"], 900);

    // SIGTERM: Rocket drains and the process exits on its own, successfully.
    let mut server = server;
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
