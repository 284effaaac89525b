//! Fault tests of the queue with real `ferrocluster-worker` processes and a real Redis:
//! crashes, pauses past the lease, poison tasks, Redis restarts, cut connections, SIGTERM,
//! restarts by the hundred. Leases are 1 s so each fault resolves in seconds.

mod support;

use std::time::Duration;

use ferrocluster_core::queue::{Queue, QueueConfig, TaskSpec, TaskState};
use serde_json::json;
use support::proxy::CuttingProxy;
use support::redis::{counter, fast_config, wait_all, wait_for, RedisServer, WorkerProcess};

async fn queue(server: &RedisServer, config: &QueueConfig) -> Queue {
    Queue::connect(&server.url(), config.clone()).await.unwrap()
}

fn sleep_task(id: &str, ms: u64) -> TaskSpec {
    TaskSpec { id: Some(id.to_owned()), ..TaskSpec::new("default", "sleep", json!({ "ms": ms })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_task_is_reclaimed_after_the_lease_and_recorded_once() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let victim = WorkerProcess::start(&server.url(), &config, "default", &["--name", "victim"]);
    let id = q.enqueue(&sleep_task("long", 1500)).await.unwrap();
    let running = wait_for(&q, &id, Duration::from_secs(10), |s| s.state == TaskState::Running).await;
    assert!(running.worker.as_deref().unwrap().starts_with("victim"));
    victim.signal("KILL");
    let _survivor = WorkerProcess::start(&server.url(), &config, "default", &["--name", "survivor"]);
    let done = wait_all(&q, &[id], Duration::from_secs(15)).await;
    assert_eq!(done[0].state, TaskState::Succeeded, "{done:?}");
    assert_eq!(done[0].deliveries, 2, "started by the victim, then by the survivor");
    assert_eq!(counter(&q, "succeeded").await, 1);
    assert_eq!(counter(&q, "reclaimed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_has_its_late_completion_refused() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let paused = WorkerProcess::start(&server.url(), &config, "default", &["--name", "paused"]);
    let id = q.enqueue(&sleep_task("paused-task", 800)).await.unwrap();
    wait_for(&q, &id, Duration::from_secs(10), |s| s.state == TaskState::Running).await;
    paused.signal("STOP");
    let other = WorkerProcess::start(&server.url(), &config, "default", &["--name", "other"]);
    let done = wait_all(&q, std::slice::from_ref(&id), Duration::from_secs(15)).await;
    let result = done[0].result.clone().unwrap();
    assert_eq!(result["pid"], json!(other.pid()), "the other worker's result is recorded");
    paused.signal("CONT");
    // The paused worker wakes mid-task; it finishes and tries to record (or hears of the lost lease).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !paused.log_text().contains("outcome refused") && !paused.log_text().contains("lease lost") {
        assert!(std::time::Instant::now() < deadline, "paused worker log:\n{}", paused.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = q.status(&id).await.unwrap();
    assert_eq!(after.result.unwrap(), result, "the late completion never overwrites");
    assert_eq!(counter(&q, "succeeded").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_kills_its_worker_is_dead_lettered_after_the_cap_and_others_flow() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let poison = q
        .enqueue(&TaskSpec { id: Some("poison".into()), ..TaskSpec::new("default", "test.crash", json!({})) })
        .await
        .unwrap();
    let mut ids: Vec<String> = Vec::new();
    for i in 0..20 {
        ids.push(q.enqueue(&sleep_task(&format!("ok-{i}"), 10)).await.unwrap());
    }
    // A supervisor that restarts crashed workers, as systemd or Kubernetes would.
    let mut workers: Vec<WorkerProcess> =
        (0..2).map(|_| WorkerProcess::start(&server.url(), &config, "default", &[])).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for w in &mut workers {
            if w.exited() {
                *w = WorkerProcess::start(&server.url(), &config, "default", &[]);
            }
        }
        let status = q.status(&poison).await.unwrap();
        let others = q.wait(&ids, Duration::ZERO).await.unwrap();
        if status.state == TaskState::Dead && others.iter().all(|s| s.state.is_terminal()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "poison: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = q.status(&poison).await.unwrap();
    assert_eq!(status.deliveries, config.max_deliveries);
    assert!(status.error.as_deref().unwrap().contains("worker lost 3 times"), "{status:?}");
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id.as_deref(), Some("poison"));
    assert_eq!(counter(&q, "succeeded").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_job_loses_and_doubles_nothing() {
    let mut server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(q.enqueue(&sleep_task(&format!("t{i}"), 50)).await.unwrap());
        }
        ids
    };
    let _workers: Vec<WorkerProcess> =
        (0..2).map(|_| WorkerProcess::start(&server.url(), &config, "default", &["--concurrency", "2"])).collect();
    // Let the job get going, then crash Redis and bring it back from its AOF.
    while counter(&q, "succeeded").await < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // appendfsync everysec: what Redis acknowledged is in the AOF file once it is written,
    // which happens before the reply; a process crash (unlike an OS crash) loses none of it.
    server.restart();
    let statuses = wait_all(&q, &ids, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s.state == TaskState::Succeeded), "{statuses:?}");
    assert_eq!(counter(&q, "succeeded").await, 40, "each task recorded exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_during_acks_and_result_writes_loses_and_doubles_nothing() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(q.enqueue(&sleep_task(&format!("c{i}"), 5)).await.unwrap());
    }
    let _workers: Vec<WorkerProcess> =
        (0..2).map(|_| WorkerProcess::start(&server.url(), &config, "default", &["--concurrency", "4"])).collect();
    // Cut every client connection (ours included) every 30 ms while tasks complete.
    let mut admin = server.sync();
    let mut cuts = 0;
    while counter(&q, "succeeded").await < 60 && cuts < 300 {
        let _: redis::RedisResult<i64> = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut admin);
        admin = server.sync();
        cuts += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let statuses = wait_all(&q, &ids, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s.state == TaskState::Succeeded), "{statuses:?}");
    assert_eq!(counter(&q, "succeeded").await, 60, "each task recorded exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_lost_after_every_other_result_write_neither_lose_nor_double_nor_delay_a_task() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let mut ids = Vec::new();
    // Each task outlasts the worker's batch hold (20 ms), so every completion is its own
    // write and half of the 30 are cut, however the machine's load times them.
    for i in 0..30 {
        ids.push(q.enqueue(&sleep_task(&format!("lost-reply-{i}"), 25)).await.unwrap());
    }
    // Every second completion (fenced ack + result write) reaches Redis and is applied, but
    // its connection is cut before the reply: the worker cannot know, so it retries it.
    let proxy = CuttingProxy::start(server.port, b"succeeded", 2);
    let _workers: Vec<WorkerProcess> =
        (0..2).map(|_| WorkerProcess::start(&proxy.url(), &config, "default", &["--concurrency", "3"])).collect();
    let statuses = wait_all(&q, &ids, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s.state == TaskState::Succeeded && s.deliveries == 1), "{statuses:?}");
    assert!(proxy.cuts() >= 10, "only {} replies were lost", proxy.cuts());
    assert_eq!(counter(&q, "succeeded").await, 30, "each result recorded exactly once");
    assert_eq!(counter(&q, "refused").await, 0, "a retried completion is recognised as its own");
    assert_eq!(counter(&q, "reclaimed").await, 0, "no task waited for its lease to expire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_long_task_back_at_once_and_finishes_a_short_one() {
    let server = RedisServer::start();
    // A long lease: a hand-back that waited for it would take 30 s, so fast means handed back.
    let config = QueueConfig { lease: Duration::from_secs(30), ..fast_config() };
    let q = queue(&server, &config).await;
    let mut first = WorkerProcess::start(&server.url(), &config, "default", &["--grace-ms", "300"]);
    let long = q.enqueue(&sleep_task("long", 3000)).await.unwrap();
    wait_for(&q, &long, Duration::from_secs(10), |s| s.state == TaskState::Running).await;
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(5)).expect("exits within the grace").success());
    assert_eq!(q.status(&long).await.unwrap().state, TaskState::Pending, "handed back, not lost");
    let mut second = WorkerProcess::start(&server.url(), &config, "default", &["--grace-ms", "5000"]);
    wait_for(&q, &long, Duration::from_secs(10), |s| s.state == TaskState::Running).await;
    // This time the task ends within the grace period: the worker finishes it, then exits.
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(10)).unwrap().success());
    let status = q.status(&long).await.unwrap();
    assert_eq!(status.state, TaskState::Succeeded);
    assert_eq!(status.result.unwrap()["pid"], json!(second.pid()));
    assert_eq!(status.deliveries, 1, "a hand-back does not count as a lost worker");
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.queues[0].consumers, 0, "leaving workers delete their consumers");
    assert!(stats.workers.is_empty(), "and their worker records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_worker_restarts_keep_pending_and_consumer_lists_bounded() {
    let server = RedisServer::start();
    let config = QueueConfig { block: Duration::from_millis(50), ..fast_config() };
    let q = queue(&server, &config).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(q.enqueue(&sleep_task(&format!("r{i}"), 5)).await.unwrap());
        let mut worker = WorkerProcess::start(&server.url(), &config, "default", &["--grace-ms", "0"]);
        // Every tenth is killed outright; the others are stopped politely, possibly mid-task.
        tokio::time::sleep(Duration::from_millis(if i % 10 == 0 { 60 } else { 20 })).await;
        worker.signal(if i % 10 == 0 { "KILL" } else { "TERM" });
        worker.wait_exit(Duration::from_secs(5)).expect("worker exits");
    }
    let _finisher = WorkerProcess::start(&server.url(), &config, "default", &["--concurrency", "4"]);
    wait_all(&q, &ids, Duration::from_secs(30)).await;
    assert_eq!(counter(&q, "succeeded").await, 100);
    // Dead consumers are pruned once idle for 5 leases.
    tokio::time::sleep(config.lease * 6).await;
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.queues[0].pending, 0);
    assert!(stats.queues[0].consumers <= 3, "consumers: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_are_dead_lettered_with_a_clear_reason() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = queue(&server, &config).await;
    let _worker = WorkerProcess::start(&server.url(), &config, "default", &[]);
    let id = q.enqueue(&TaskSpec::new("default", "no.such.kind", json!({}))).await.unwrap();
    let ok = q.enqueue(&sleep_task("fine", 1)).await.unwrap();
    let statuses = wait_all(&q, &[id, ok], Duration::from_secs(10)).await;
    assert_eq!(statuses[0].state, TaskState::Dead);
    assert!(statuses[0].error.as_deref().unwrap().contains("unknown task kind `no.such.kind`"), "{statuses:?}");
    assert_eq!(statuses[1].state, TaskState::Succeeded);
}
