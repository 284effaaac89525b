//! The queue's batched and by-reference paths against a real Redis: pipelined enqueue and
//! status reads, batched fenced completion, finish notifications, blobs, and the worker's
//! batches of small tasks.

mod support;

use std::time::Duration;

use ferrocluster_core::queue::{
    BlobRef, CancelOutcome, Consumer, Lease, Listener, Outcome, Queue, QueueConfig, TaskSpec, TaskState, Transition,
};
use serde_json::json;
use support::redis::{counter, fast_config, wait_all, RedisServer, WorkerProcess};

const NO_WAIT: Duration = Duration::from_millis(1);

async fn connect(server: &RedisServer) -> Queue {
    Queue::connect(&server.url(), fast_config()).await.unwrap()
}

fn spec(id: &str, notify: Option<&str>) -> TaskSpec {
    TaskSpec {
        id: Some(id.to_owned()),
        notify: notify.map(str::to_owned),
        ..TaskSpec::new("default", "noop", json!({ "id": id }))
    }
}

#[tokio::test]
async fn enqueue_many_is_ordered_deduplicated_and_all_or_nothing_on_bad_input() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    q.enqueue(&spec("b", None)).await.unwrap();
    let added = q.enqueue_many(&[spec("a", None), spec("b", None), spec("c", None), spec("a", None)]).await.unwrap();
    let expected = [("a", true), ("b", false), ("c", true), ("a", false)];
    assert_eq!(added, expected.map(|(id, new)| (id.to_owned(), new)));
    let bad = TaskSpec { queue: "has space".to_owned(), ..spec("d", None) };
    assert!(q.enqueue_many(&[spec("e", None), bad]).await.is_err());
    let ids: Vec<String> = ["c", "e", "a", "never"].map(str::to_owned).to_vec();
    let statuses = q.statuses(&ids).await.unwrap();
    assert_eq!(statuses[0].as_ref().unwrap().id, "c");
    assert!(statuses[1].is_none(), "nothing of a refused batch was written");
    assert_eq!(statuses[2].as_ref().unwrap().state, TaskState::Pending);
    assert!(statuses[3].is_none());
    let consumer = Consumer::join(&q, "c", &["default".to_owned()]).await.unwrap();
    let fetched: Vec<String> = consumer.fetch(10, NO_WAIT).await.unwrap().into_iter().map(|d| d.envelope.id).collect();
    assert_eq!(fetched, ["b", "a", "c"]);
}

#[tokio::test]
async fn scripts_flushed_by_a_restart_are_loaded_again_by_pipelines() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    q.enqueue(&spec("first", None)).await.unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut server.sync()).unwrap();
    assert_eq!(q.enqueue_many(&[spec("second", None)]).await.unwrap(), [("second".to_owned(), true)]);
}

#[tokio::test]
async fn complete_many_records_each_result_once_and_refuses_lost_leases() {
    let server = RedisServer::start();
    let config = QueueConfig { lease: Duration::from_millis(200), ..fast_config() };
    let q = Queue::connect(&server.url(), config).await.unwrap();
    q.enqueue_many(&[spec("x", None), spec("y", None)]).await.unwrap();
    let one = Consumer::join(&q, "one", &["default".to_owned()]).await.unwrap();
    let fetched = one.fetch(2, NO_WAIT).await.unwrap();
    assert_eq!(fetched.len(), 2);
    // x's lease is kept and y's lost: the sweeper puts y back for another worker.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(one.heartbeat(&fetched[0], (0, 0)).await.unwrap(), Lease::Held { cancel_requested: false });
    assert_eq!(q.sweep().await.unwrap().reclaimed, 1);
    let (rx, ry) = (json!({"r": "x"}), json!({"r": "y"}));
    let done = one.complete_many(&[(&fetched[0], &rx), (&fetched[1], &ry)]).await.unwrap();
    assert_eq!(done, [Transition::Applied, Transition::Refused]);
    // A retried batch (its reply lost) applies nothing twice.
    let again = one.complete_many(&[(&fetched[0], &rx)]).await.unwrap();
    assert_eq!(again, [Transition::Applied]);
    let statuses = q.statuses(&["x".to_owned(), "y".to_owned()]).await.unwrap();
    let x = statuses[0].as_ref().unwrap();
    assert_eq!((x.state, x.result.clone()), (TaskState::Succeeded, Some(rx)));
    assert_eq!(statuses[1].as_ref().unwrap().state, TaskState::Pending);
    let counters = q.stats().await.unwrap().counters;
    assert_eq!((counters.get("succeeded"), counters.get("refused")), (Some(&1), Some(&1)));
}

#[tokio::test]
async fn every_way_of_finishing_notifies_the_channel_and_nothing_else_does() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let listener = Listener::new(&q, "me").unwrap();
    assert!(Listener::new(&q, "with space").is_err());
    let ids = ["ok", "failed", "cancelled", "dead", "silent"];
    let specs: Vec<TaskSpec> = ids.iter().map(|id| spec(id, (*id != "silent").then_some("me"))).collect();
    q.enqueue_many(&specs).await.unwrap();
    assert_eq!(q.cancel("cancelled").await.unwrap(), CancelOutcome::Cancelled);
    let consumer = Consumer::join(&q, "c", &["default".to_owned()]).await.unwrap();
    let fetched = consumer.fetch(10, NO_WAIT).await.unwrap();
    let by_id = |id: &str| fetched.iter().find(|d| d.envelope.id == id).unwrap();
    assert_eq!(listener.next(10, NO_WAIT).await.unwrap(), ["cancelled"]);
    consumer.complete(by_id("ok"), &json!(1)).await.unwrap();
    consumer.fail(by_id("failed"), "boom", false).await.unwrap();
    consumer.reject(by_id("dead"), "no such kind").await.unwrap();
    consumer.complete(by_id("silent"), &json!(1)).await.unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("fc:notify:me").query(&mut server.sync()).unwrap();
    assert!((1..=86_400).contains(&ttl), "the list expires with the outcomes: {ttl}");
    assert_eq!(listener.next(10, Duration::from_secs(1)).await.unwrap(), ["ok", "failed", "dead"]);
    let started = std::time::Instant::now();
    assert!(listener.next(10, Duration::from_millis(100)).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(90), "it blocked for the timeout");
}

#[tokio::test]
async fn notifications_carry_small_outcomes_and_the_ids_of_the_others() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let listener = Listener::new(&q, "me").unwrap();
    let ids = ["small", "large", "failed", "older"];
    q.enqueue_many(&ids.map(|id| spec(id, Some("me")))).await.unwrap();
    // A task of a submitter that reads ids only (it did not ask for outcomes).
    let _: () = redis::cmd("HDEL").arg("fc:task:older").arg("notify_outcome").query(&mut server.sync()).unwrap();
    let consumer = Consumer::join(&q, "c", &["default".to_owned()]).await.unwrap();
    let fetched = consumer.fetch(10, NO_WAIT).await.unwrap();
    let by_id = |id: &str| fetched.iter().find(|d| d.envelope.id == id).unwrap();
    let (small, large) = (json!({"a": [1, "two words"]}), json!("x".repeat(2000)));
    let done = [(by_id("small"), &small), (by_id("large"), &large), (by_id("older"), &small)];
    consumer.complete_many(&done).await.unwrap();
    consumer.fail(by_id("failed"), "a long error", false).await.unwrap();
    let finished = listener.next_finished(10, Duration::from_secs(1)).await.unwrap();
    let heard: Vec<(&str, Option<&Outcome>)> = finished.iter().map(|f| (f.id.as_str(), f.outcome.as_ref())).collect();
    let succeeded = Outcome { state: TaskState::Succeeded, result: Some(small.clone()), error: None };
    let failed = Outcome { state: TaskState::Failed, result: None, error: Some("a long error".to_owned()) };
    assert_eq!(heard, [("small", Some(&succeeded)), ("large", None), ("older", None), ("failed", Some(&failed))]);
    // What a notification carries is what the record says.
    let records = q.known_statuses(&["small".to_owned(), "failed".to_owned()]).await.unwrap();
    assert_eq!((records[0].state, records[0].result.clone()), (succeeded.state, succeeded.result));
    assert_eq!((records[1].state, records[1].error.clone()), (failed.state, failed.error));
}

#[tokio::test]
async fn batches_larger_than_one_script_call_keep_their_order_and_dedup() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let mut specs: Vec<TaskSpec> = (0..1100).map(|i| spec(&format!("t{i}"), Some("me"))).collect();
    specs.push(spec("t3", Some("me")));
    let added = q.enqueue_many(&specs).await.unwrap();
    assert_eq!(added.len(), 1101);
    assert!(added[..1100].iter().enumerate().all(|(i, (id, new))| *id == format!("t{i}") && *new));
    assert_eq!(added[1100], ("t3".to_owned(), false));
    let consumer = Consumer::join(&q, "c", &["default".to_owned()]).await.unwrap();
    let fetched = consumer.fetch(2000, NO_WAIT).await.unwrap();
    let order: Vec<&str> = fetched.iter().map(|d| d.envelope.id.as_str()).collect();
    assert_eq!(order, specs[..1100].iter().map(|s| s.id.as_deref().unwrap()).collect::<Vec<_>>());
    let result = json!(true);
    let done: Vec<(&ferrocluster_core::queue::Delivery, &serde_json::Value)> =
        fetched.iter().map(|d| (d, &result)).collect();
    let transitions = consumer.complete_many(&done).await.unwrap();
    assert!(transitions.iter().all(|t| *t == Transition::Applied));
    assert_eq!(q.stats().await.unwrap().counters.get("succeeded"), Some(&1100));
    let listener = Listener::new(&q, "me").unwrap();
    assert_eq!(listener.next(2000, NO_WAIT).await.unwrap().len(), 1100);
}

#[tokio::test]
async fn blobs_round_trip_in_chunks_expire_and_report_loss() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let big: Vec<u8> = (0..17 * 1024 * 1024 + 5).map(|i| (i % 251) as u8).collect();
    let blob = q.put_blob(&big, 60).await.unwrap();
    assert_eq!(blob.size, big.len());
    assert_eq!(q.get_blob(&blob).await.unwrap().as_deref(), Some(big.as_slice()));
    let mut raw = server.sync();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("fc:blob:{}:*", blob.id)).query(&mut raw).unwrap();
    assert_eq!(keys.len(), 2, "17 MiB is two chunks of at most 16 MiB");
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query(&mut raw).unwrap();
    assert!((1..=60).contains(&ttl), "{ttl}");
    let empty = q.put_blob(&[], 0).await.unwrap();
    assert_eq!(q.get_blob(&empty).await.unwrap(), Some(Vec::new()));
    let _: () = redis::cmd("DEL").arg(format!("fc:blob:{}:1", blob.id)).query(&mut raw).unwrap();
    assert_eq!(q.get_blob(&blob).await.unwrap(), None, "a missing chunk is a lost blob");
    let wrong_size = BlobRef { size: 3, ..empty };
    assert_eq!(q.get_blob(&wrong_size).await.unwrap(), None);
}

#[tokio::test]
async fn sweep_passes_over_queues_whose_other_priority_streams_do_not_exist_yet() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    // Queue "aaa" (swept first) has only its normal stream: no worker joined it.
    q.enqueue(&TaskSpec { queue: "aaa".to_owned(), ..spec("waiting", None) }).await.unwrap();
    q.enqueue(&spec("lost", None)).await.unwrap();
    let gone = Consumer::join(&q, "gone", &["default".to_owned()]).await.unwrap();
    assert_eq!(gone.fetch(1, NO_WAIT).await.unwrap().len(), 1);
    tokio::time::sleep(q.config().lease + Duration::from_millis(100)).await;
    assert_eq!(q.sweep().await.unwrap().reclaimed, 1, "the lost task of the later queue is reclaimed");
    assert_eq!(q.status("lost").await.unwrap().state, TaskState::Pending);
}

/// How many XREADGROUP Redis ran (from scripts too), from INFO commandstats.
fn xreadgroup_calls(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut server.sync()).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_xreadgroup:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_takes_small_tasks_in_batches_and_records_each_once() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let specs: Vec<TaskSpec> = (0..400).map(|i| spec(&format!("small-{i}"), None)).collect();
    let ids: Vec<String> = q.enqueue_many(&specs).await.unwrap().into_iter().map(|(id, _)| id).collect();
    let _worker = WorkerProcess::start(&server.url(), q.config(), "default", &[]);
    let statuses = wait_all(&q, &ids, Duration::from_secs(60)).await;
    assert!(statuses.iter().all(|s| s.state == TaskState::Succeeded && s.deliveries == 1), "{statuses:?}");
    assert_eq!(counter(&q, "succeeded").await, 400);
    assert_eq!(counter(&q, "refused").await, 0);
    // One task per fetch would read three streams per task (the inbox, high, normal).
    let reads = xreadgroup_calls(&server);
    assert!(reads < 400, "{reads} stream reads for 400 tasks: not batched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_task_in_a_batch_holds_up_neither_the_results_before_it_nor_the_tasks_after_it() {
    let server = RedisServer::start();
    let q = connect(&server).await;
    let sleep =
        |id: String, ms: u64| TaskSpec { id: Some(id), ..TaskSpec::new("default", "sleep", json!({ "ms": ms })) };
    let mut specs: Vec<TaskSpec> = (0..60).map(|i| sleep(format!("before-{i}"), 0)).collect();
    specs.push(sleep("long".to_owned(), 4000));
    specs.extend((0..60).map(|i| sleep(format!("after-{i}"), 0)));
    let ids: Vec<String> = q.enqueue_many(&specs).await.unwrap().into_iter().map(|(id, _)| id).collect();
    let _worker = WorkerProcess::start(&server.url(), q.config(), "default", &["--concurrency", "2"]);
    let short: Vec<String> = ids.iter().filter(|id| *id != "long").cloned().collect();
    let statuses = wait_all(&q, &short, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s.state == TaskState::Succeeded), "{statuses:?}");
    // Batches had grown past one task by then: the long one shared its batch with others.
    assert_eq!(q.status("long").await.unwrap().state, TaskState::Running, "the short tasks did not wait for it");
    let long = wait_all(&q, &["long".to_owned()], Duration::from_secs(30)).await;
    assert_eq!((long[0].state, long[0].deliveries), (TaskState::Succeeded, 1), "its lease was kept while it ran");
    assert_eq!(counter(&q, "succeeded").await, 121);
}
