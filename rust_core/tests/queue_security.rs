//! The queue over TLS (`rediss://`) and as a restricted ACL user, against a real Redis and
//! real worker processes. The certificates come from a CA made at test time.

mod support;

use std::time::Duration;

use ferrocluster_core::queue::{CancelOutcome, Error, Queue, QueueConfig, TaskSpec, TaskState, TlsFiles};
use serde_json::json;
use support::redis::{fast_config, wait_all, RedisServer, TestCertificates, WorkerCommand, WorkerProcess};

fn noop(i: usize) -> TaskSpec {
    TaskSpec { id: Some(format!("t{i}")), ..TaskSpec::new("default", "sleep", json!({ "ms": 1 })) }
}

/// A config whose failed connections give up soon.
fn impatient(tls: TlsFiles) -> QueueConfig {
    QueueConfig { reconnect_timeout: Duration::from_millis(500), tls, ..fast_config() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_over_tls_and_clients_without_tls_or_trust_are_refused() {
    let certs = TestCertificates::generate();
    let server = RedisServer::start_tls(&certs);
    let config = QueueConfig { tls: certs.client_files(), ..fast_config() };
    let q = Queue::connect(&server.tls_url(), config.clone()).await.unwrap();
    // The worker takes its certificates from the environment, as every command does.
    let worker = WorkerProcess::start_env(
        WorkerCommand::Standalone,
        &server.tls_url(),
        &config,
        "default",
        &["--enable-test-tasks", "--concurrency", "2"],
        &certs.client_env(),
    );
    let specs: Vec<TaskSpec> = (0..40).map(noop).collect();
    let ids: Vec<String> = q.enqueue_many(&specs).await.unwrap().into_iter().map(|(id, _)| id).collect();
    let statuses = wait_all(&q, &ids, Duration::from_secs(30)).await;
    for status in &statuses {
        assert_eq!(status.state, TaskState::Succeeded, "{status:?}\n{}", worker.log_text());
        assert_eq!(status.result.as_ref().unwrap()["pid"], json!(worker.pid()));
    }

    // Plain text to the TLS port: Redis never answers it.
    let plain = format!("redis://127.0.0.1:{}/0", server.port);
    let err = Queue::connect(&plain, impatient(TlsFiles::default())).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    // Certificates with a redis:// URL: refused before anything goes out in clear.
    let err = Queue::connect(&plain, impatient(certs.client_files())).await.unwrap_err();
    assert!(matches!(err, Error::Url(_)) && err.to_string().contains("rediss://"), "{err}");
    // TLS without trusting the test CA: the server's certificate does not verify.
    let err = Queue::connect(&server.tls_url(), impatient(TlsFiles::default())).await.unwrap_err();
    assert!(err.to_string().contains("certificate verify failed"), "{err}");
    // Trusting the CA but without a client certificate: this Redis requires one.
    let ca_only = TlsFiles { ca: Some(certs.path("ca.crt")), ..TlsFiles::default() };
    let err = Queue::connect(&server.tls_url(), impatient(ca_only)).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    // A certificate without its key is a configuration error.
    let no_key = TlsFiles { key: None, ..certs.client_files() };
    assert!(matches!(Queue::connect(&server.tls_url(), impatient(no_key)).await, Err(Error::Invalid { .. })));

    // Nothing was lost or doubled by the refused clients.
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.counters.get("succeeded"), Some(&40));
    assert_eq!(stats.queues[0].pending, 0);
}

/// The ACL rule docs/queue.md gives for the queue's user.
const QUEUE_USER_RULES: &[&str] = &[
    "on",
    ">s3cret",
    "resetkeys",
    "~fc:*",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@connection",
    "-@dangerous",
    "+info",
    "+time",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_user_runs_everything_and_a_narrower_one_gets_a_clear_error() {
    let server = RedisServer::start();
    let mut admin = server.sync();
    let _: () = redis::cmd("ACL").arg("SETUSER").arg("queue").arg(QUEUE_USER_RULES).query(&mut admin).unwrap();
    // Lacks the scripting commands every state change uses.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg(&["on", ">s3cret", "~fc:*", "+@read", "+@connection"][..])
        .query(&mut admin)
        .unwrap();
    let url = |user: &str| format!("redis://{user}:s3cret@127.0.0.1:{}/0", server.port);
    let config = fast_config();

    let q = Queue::connect(&url("queue"), config.clone()).await.unwrap();
    let worker = WorkerProcess::start(&url("queue"), &config, "default", &[]);
    let specs: Vec<TaskSpec> = (0..10).map(noop).collect();
    q.enqueue_many(&specs).await.unwrap();
    let ids: Vec<String> = specs.iter().filter_map(|s| s.id.clone()).collect();
    let statuses = wait_all(&q, &ids, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s.state == TaskState::Succeeded), "{statuses:?}");
    let held = q.enqueue(&TaskSpec::new("other", "sleep", json!({ "ms": 1 }))).await.unwrap();
    assert_eq!(q.cancel(&held).await.unwrap(), CancelOutcome::Cancelled);
    q.sweep().await.unwrap();
    assert_eq!(q.stats().await.unwrap().counters.get("succeeded"), Some(&10));
    // The user lacks pub/sub: the worker says so once, not at each resubscription (every lease).
    tokio::time::sleep(config.lease * 4).await;
    let log = worker.log_text();
    assert_eq!(log.matches("may not subscribe to the cancel channel").count(), 1, "{log}");

    // A user that may read but not run scripts: a clear error, and nothing written.
    let narrow = Queue::connect(&url("reader"), config).await.unwrap();
    let err = narrow.enqueue(&noop(99)).await.unwrap_err();
    assert!(matches!(err, Error::Permission(_)), "{err}");
    assert!(err.to_string().contains("denied a command"), "{err}");
    assert!(matches!(q.status("t99").await, Err(Error::NoSuchTask(_))));
    assert_eq!(narrow.status("t0").await.unwrap().state, TaskState::Succeeded, "reads are allowed");
}
