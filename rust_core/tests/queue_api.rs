//! The queue's API against a real Redis, driven through [`Consumer`] so each transition is
//! explicit: de-duplication, bad input, auth, fencing, retries, cancel, priorities, and a
//! randomised model test of enqueue/fetch/ack/kill/reclaim.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ferrocluster_core::queue::{
    CancelOutcome, Consumer, DataRef, Delivery, Error, FileRange, Lease, Priority, Queue, QueueConfig, TaskSpec,
    TaskState, Transition,
};
use proptest::prelude::*;
use serde_json::json;
use support::proxy::CuttingProxy;
use support::redis::{counter, fast_config, RedisServer};

const NO_WAIT: Duration = Duration::from_millis(1);

async fn connect(server: &RedisServer, config: QueueConfig) -> Queue {
    Queue::connect(&server.url(), config).await.unwrap()
}

async fn join(q: &Queue, name: &str) -> Consumer {
    Consumer::join(q, name, &["default".to_owned()]).await.unwrap()
}

fn spec(id: &str) -> TaskSpec {
    TaskSpec { id: Some(id.to_owned()), ..TaskSpec::new("default", "noop", json!({ "id": id })) }
}

#[tokio::test]
async fn duplicate_enqueues_are_one_task() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    assert_eq!(q.enqueue_new(&spec("a")).await.unwrap(), ("a".to_owned(), true));
    assert_eq!(q.enqueue_new(&spec("a")).await.unwrap(), ("a".to_owned(), false));
    // Without an id, the same kind and payload hash to the same id.
    let content = TaskSpec::new("default", "noop", json!({ "x": 1, "y": [1, 2] }));
    let (first, new) = q.enqueue_new(&content).await.unwrap();
    assert!(new);
    assert_eq!(q.enqueue_new(&content).await.unwrap(), (first, false));
    let c = join(&q, "c").await;
    assert_eq!(c.fetch(10, NO_WAIT).await.unwrap().len(), 2);
}

#[tokio::test]
async fn oversize_payloads_are_refused_at_enqueue() {
    let server = RedisServer::start();
    let q = connect(&server, QueueConfig { max_envelope_bytes: 1000, ..fast_config() }).await;
    let big = TaskSpec::new("default", "noop", json!({ "data": "x".repeat(2000) }));
    let err = q.enqueue(&big).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 1000, .. }), "{err}");
    assert!(err.to_string().contains("by reference"), "{err}");
    assert_eq!(q.stats().await.unwrap().queues.len(), 0, "nothing was written");
}

#[tokio::test]
async fn malformed_entries_are_dead_lettered_with_a_reason_and_others_flow() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    q.enqueue(&spec("good")).await.unwrap();
    let mut raw = server.sync();
    let stream = "fc:q:default:normal";
    let bad: [&[(&str, &str)]; 4] = [
        &[("id", "x"), ("task", "not json")],
        &[("id", "y"), ("task", r#"{"v": 99, "id": "y"}"#)],
        &[("other", "field")],
        &[(
            "task",
            r#"{"v": 1, "id": "ghost", "kind": "noop", "payload": null, "max_retries": 0, "retry_on_error": false, "priority": "normal", "result_ttl_s": 0}"#,
        )],
    ];
    for fields in bad {
        let _: String = redis::cmd("XADD").arg(stream).arg("*").arg(fields).query(&mut raw).unwrap();
    }
    let c = join(&q, "c").await;
    let fetched = c.fetch(10, NO_WAIT).await.unwrap();
    assert_eq!(fetched.iter().map(|d| d.envelope.id.as_str()).collect::<Vec<_>>(), ["good"]);
    let dead = q.dead_letters(10).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("version 99"), "{reasons:?}");
    assert!(reasons[2].contains("no `task` field"), "{reasons:?}");
    assert!(reasons[3].contains("no task record"), "{reasons:?}");
    assert_eq!(q.stats().await.unwrap().queues[0].pending, 1, "only the good task is held");
}

#[tokio::test]
async fn a_redis_that_refuses_auth_is_a_clear_error() {
    let server = RedisServer::start_with(&[
        "--requirepass",
        "s3cret",
        "--user",
        "alice",
        "on",
        ">wonderland",
        "~*",
        "&*",
        "+@all",
    ]);
    let url = |auth: &str| format!("redis://{auth}@127.0.0.1:{}/0", server.port);
    for bad in ["", ":wrong", "alice:wrong", "bob:wonderland"] {
        let err = Queue::connect(&url(bad), fast_config()).await.unwrap_err();
        assert!(matches!(err, Error::Auth(_)), "{bad}: {err}");
        assert!(err.to_string().contains("refused authentication"), "{err}");
    }
    let q = Queue::connect(&url("alice:wonderland"), fast_config()).await.unwrap();
    q.enqueue(&spec("authed")).await.unwrap();
    Queue::connect(&url(":s3cret"), fast_config()).await.unwrap();
}

#[tokio::test]
async fn completion_is_fenced_a_late_owner_is_refused_and_a_retried_call_is_not_applied_twice() {
    let server = RedisServer::start();
    let config = QueueConfig { lease: Duration::from_millis(200), ..fast_config() };
    let q = connect(&server, config).await;
    let id = q.enqueue(&spec("t")).await.unwrap();
    let (late, fresh) = (join(&q, "late").await, join(&q, "fresh").await);
    let first = late.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(q.sweep().await.unwrap().reclaimed, 1);
    let second = fresh.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    assert_eq!(second.deliveries, 2);
    assert_eq!(late.heartbeat(&first, (0, 0)).await.unwrap(), Lease::Lost);
    assert_eq!(fresh.complete(&second, &json!("fresh")).await.unwrap(), Transition::Applied);
    assert_eq!(late.complete(&first, &json!("late")).await.unwrap(), Transition::Refused);
    // The same call again (as after a lost reply) is recognised, and writes nothing new.
    assert_eq!(fresh.complete(&second, &json!("again")).await.unwrap(), Transition::Applied);
    assert_eq!(q.result(&id).await.unwrap(), Some(json!("fresh")));
    assert_eq!(counter(&q, "succeeded").await, 1);
    assert_eq!(counter(&q, "refused").await, 1);
}

#[tokio::test]
async fn errors_are_retried_with_backoff_then_fail() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    let id = q.enqueue(&TaskSpec { max_retries: 2, ..spec("flaky") }).await.unwrap();
    let no_retry = q.enqueue(&TaskSpec { retry_on_error: false, ..spec("once") }).await.unwrap();
    let c = join(&q, "c").await;
    for attempt in 0..3 {
        let mut d = Vec::new();
        while d.is_empty() {
            q.sweep().await.unwrap();
            d = c.fetch(2, NO_WAIT).await.unwrap();
        }
        for delivery in d {
            if delivery.envelope.id == id {
                assert_eq!(delivery.attempts, attempt);
            }
            assert_eq!(c.fail(&delivery, &format!("boom {attempt}"), true).await.unwrap(), Transition::Applied);
        }
        if attempt < 2 {
            let status = q.status(&id).await.unwrap();
            assert_eq!((status.state, status.attempts), (TaskState::Pending, attempt + 1));
            assert!(status.retry_at_ms.is_some());
        }
    }
    let status = q.status(&id).await.unwrap();
    assert_eq!((status.state, status.error.as_deref()), (TaskState::Failed, Some("boom 2")));
    assert_eq!(q.status(&no_retry).await.unwrap().state, TaskState::Failed);
    assert_eq!(counter(&q, "retried").await, 2);
}

#[tokio::test]
async fn cancel_stops_pending_tasks_and_flags_running_ones() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    let running = q.enqueue(&spec("running")).await.unwrap();
    let c = join(&q, "c").await;
    let d = c.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    let pending = q.enqueue(&spec("pending")).await.unwrap();
    assert_eq!(q.cancel(&pending).await.unwrap(), CancelOutcome::Cancelled);
    assert!(c.fetch(1, NO_WAIT).await.unwrap().is_empty(), "a cancelled task is never fetched");
    assert_eq!(q.cancel(&running).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(c.heartbeat(&d, (3, 10)).await.unwrap(), Lease::Held { cancel_requested: true });
    assert_eq!(q.status(&running).await.unwrap().progress, Some((3, 10)));
    c.cancelled(&d).await.unwrap();
    assert_eq!(q.status(&running).await.unwrap().state, TaskState::Cancelled);
    assert_eq!(q.cancel(&running).await.unwrap(), CancelOutcome::AlreadyFinished(TaskState::Cancelled));
    assert!(matches!(q.cancel("nope").await, Err(Error::NoSuchTask(_))));
}

#[tokio::test]
async fn higher_priorities_are_fetched_first_and_dead_letters_can_be_retried() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    for (id, priority) in [("low", Priority::Low), ("normal", Priority::Normal), ("high", Priority::High)] {
        q.enqueue(&TaskSpec { priority, ..spec(id) }).await.unwrap();
    }
    let c = join(&q, "c").await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let d = c.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
        order.push(d.envelope.id.clone());
        c.reject(&d, "rejected on purpose").await.unwrap();
    }
    assert_eq!(order, ["high", "normal", "low"]);
    assert_eq!(q.status("low").await.unwrap().state, TaskState::Dead);
    q.retry_dead("low").await.unwrap();
    assert_eq!(q.dead_letters(10).await.unwrap().len(), 2);
    let d = c.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    assert_eq!((d.envelope.id.as_str(), d.deliveries), ("low", 1));
    assert!(q.retry_dead("low").await.is_err(), "it is running, not dead");
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(u8),
    Fetch(usize),
    Complete(usize),
    Fail(usize),
    /// The consumer dies: its deliveries are abandoned.
    Kill(usize),
    /// Time passes beyond the lease and a sweeper runs.
    Reclaim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..4).prop_map(Op::Enqueue),
        3 => (0usize..3).prop_map(Op::Fetch),
        3 => (0usize..3).prop_map(Op::Complete),
        1 => (0usize..3).prop_map(Op::Fail),
        1 => (0usize..3).prop_map(Op::Kill),
        1 => Just(Op::Reclaim),
    ]
}

const LEASE: Duration = Duration::from_millis(150);

async fn run_model(server: &RedisServer, case: u32, ops: Vec<Op>) {
    let config = QueueConfig { namespace: format!("model{case}"), lease: LEASE, max_deliveries: 2, ..fast_config() };
    let q = connect(server, config).await;
    let mut consumers = Vec::new();
    let mut held: Vec<Vec<Delivery>> = vec![Vec::new(); 3];
    for i in 0..3 {
        consumers.push(join(&q, &format!("c{i}-gen0")).await);
    }
    let mut generation = 0;
    let mut ids = Vec::new();
    for op in ops {
        match op {
            Op::Enqueue(n) => {
                for _ in 0..n {
                    let id = format!("t{}", ids.len());
                    q.enqueue(&TaskSpec { max_retries: 1, ..spec(&id) }).await.unwrap();
                    ids.push(id);
                }
            }
            Op::Fetch(c) => held[c].extend(consumers[c].fetch(2, NO_WAIT).await.unwrap()),
            Op::Complete(c) => {
                if let Some(d) = held[c].pop() {
                    consumers[c].complete(&d, &json!(d.envelope.id)).await.unwrap();
                }
            }
            Op::Fail(c) => {
                if let Some(d) = held[c].pop() {
                    consumers[c].fail(&d, "model failure", true).await.unwrap();
                }
            }
            Op::Kill(c) => {
                held[c].clear();
                generation += 1;
                consumers[c] = join(&q, &format!("c{c}-gen{generation}")).await;
            }
            Op::Reclaim => {
                tokio::time::sleep(LEASE + Duration::from_millis(30)).await;
                q.sweep().await.unwrap();
            }
        }
    }
    // Drain: the surviving deliveries are abandoned too, then a healthy consumer finishes all.
    let finisher = join(&q, "finisher").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        q.sweep().await.unwrap();
        for d in finisher.fetch(10, NO_WAIT).await.unwrap() {
            finisher.complete(&d, &json!(d.envelope.id)).await.unwrap();
        }
        let statuses = q.wait(&ids, Duration::ZERO).await.unwrap();
        if statuses.iter().all(|s| s.state.is_terminal()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "stuck: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Every task ends in exactly one of: a result (its own id), a recorded failure, a dead letter.
    let statuses = q.wait(&ids, Duration::ZERO).await.unwrap();
    let dead = q.dead_letters(1000).await.unwrap();
    let mut dead_count: HashMap<String, usize> = HashMap::new();
    for d in &dead {
        *dead_count.entry(d.id.clone().unwrap()).or_default() += 1;
    }
    for s in &statuses {
        let in_dead = dead_count.get(&s.id).copied().unwrap_or(0);
        match s.state {
            TaskState::Succeeded => {
                assert_eq!(s.result, Some(json!(s.id)));
                assert_eq!(in_dead, 0);
            }
            TaskState::Failed => assert_eq!(in_dead, 0),
            TaskState::Dead => assert_eq!(in_dead, 1, "{s:?}"),
            other => panic!("{} ended {other:?}", s.id),
        }
    }
    let count = |state| statuses.iter().filter(|s| s.state == state).count() as u64;
    assert_eq!(counter(&q, "succeeded").await, count(TaskState::Succeeded), "results recorded exactly once");
    assert_eq!(counter(&q, "failed").await, count(TaskState::Failed));
    assert_eq!(dead.len() as u64, count(TaskState::Dead));
}

#[test]
fn model_every_task_ends_in_exactly_one_of_results_or_dead_letters() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Each case gets its own namespace on the one server.
    let case = std::sync::atomic::AtomicU32::new(0);
    let config = ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..25))| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(run_model(&server, n, ops));
    });
}

#[tokio::test]
async fn a_start_failing_mid_batch_neither_loses_nor_delays_the_other_deliveries() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    for id in ["a", "b", "c"] {
        q.enqueue(&spec(id)).await.unwrap();
    }
    let mut raw = server.sync();
    // b's record is not a hash: starting it fails in Redis itself, after a was started.
    let _: () = redis::cmd("SET").arg("fc:task:b").arg("not a hash").query(&mut raw).unwrap();
    let c = join(&q, "c").await;
    let ids = |ds: &[Delivery]| ds.iter().map(|d| d.envelope.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&c.fetch(3, NO_WAIT).await.unwrap()), ["a", "c"]);
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("WRONGTYPE") && dead[0].raw.contains("\"id\":\"b\""), "{dead:?}");

    // Now the dead-letter stream cannot be written either: e can be neither started nor
    // dead-lettered. d, before it, is returned; f, after it, is kept for the next fetch.
    for id in ["d", "e", "f"] {
        q.enqueue(&spec(id)).await.unwrap();
    }
    let _: () = redis::cmd("SET").arg("fc:task:e").arg("not a hash").query(&mut raw).unwrap();
    let _: () = redis::cmd("RENAME").arg("fc:dead").arg("fc:dead-aside").query(&mut raw).unwrap();
    let _: () = redis::cmd("SET").arg("fc:dead").arg("not a stream").query(&mut raw).unwrap();
    assert_eq!(ids(&c.fetch(3, NO_WAIT).await.unwrap()), ["d"]);
    // The refused pipelined start may have marked f running already; either way it is held
    // by this consumer, not ended.
    let f = q.status("f").await.unwrap().state;
    assert!(matches!(f, TaskState::Pending | TaskState::Running), "{f:?}");
    assert!(c.fetch(3, NO_WAIT).await.is_err(), "nothing could be started: the error is reported");
    let _: () = redis::cmd("DEL").arg("fc:dead").query(&mut raw).unwrap();
    let _: () = redis::cmd("RENAME").arg("fc:dead-aside").arg("fc:dead").query(&mut raw).unwrap();
    // No lease has passed and nothing is new on the stream: f comes from the kept entries.
    let next = c.fetch(3, NO_WAIT).await.unwrap();
    assert_eq!((ids(&next), next[0].deliveries), (vec!["f".to_owned()], 1));
    assert_eq!(q.dead_letters(10).await.unwrap().len(), 2);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.queues[0].pending, 4, "a, c, d and f are held, nothing else: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_failing_after_kept_entries_were_taken_still_starts_them() {
    let server = RedisServer::start();
    // Reads of new entries name the high-priority stream (starts of normal tasks do not):
    // once armed, the proxy lets each reach Redis and cuts its connection before the reply.
    let proxy = CuttingProxy::start(server.port, b"fc:q:default:high", 1);
    proxy.arm(false);
    let config = QueueConfig { reconnect_timeout: Duration::from_millis(500), ..fast_config() };
    let q = Queue::connect(&proxy.url(), config).await.unwrap();
    for id in ["d", "e", "f"] {
        q.enqueue(&spec(id)).await.unwrap();
    }
    let mut raw = server.sync();
    // e can be neither started nor dead-lettered: d is returned, e and f are kept.
    let _: () = redis::cmd("SET").arg("fc:task:e").arg("not a hash").query(&mut raw).unwrap();
    let _: () = redis::cmd("SET").arg("fc:dead").arg("not a stream").query(&mut raw).unwrap();
    let c = join(&q, "c").await;
    let ids = |ds: &[Delivery]| ds.iter().map(|d| d.envelope.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&c.fetch(3, NO_WAIT).await.unwrap()), ["d"]);
    let _: () = redis::cmd("DEL").arg("fc:dead").query(&mut raw).unwrap();

    // The next fetch takes e and f back, then its read of new entries fails for good: the
    // kept entries are started all the same (e dead-lettered, f returned), not dropped.
    proxy.arm(true);
    let next = c.fetch(3, NO_WAIT).await.unwrap();
    assert!(proxy.cuts() >= 1, "the read was cut");
    proxy.arm(false);
    assert_eq!((ids(&next), next[0].deliveries), (vec!["f".to_owned()], 1));
    assert_eq!(q.status("f").await.unwrap().state, TaskState::Running);
    let dead = q.dead_letters(10).await.unwrap();
    assert!(dead.len() == 1 && dead[0].reason.contains("WRONGTYPE"), "{dead:?}");
    assert_eq!(q.stats().await.unwrap().queues[0].pending, 2, "d and f are held, nothing else");
    assert!(c.fetch(3, NO_WAIT).await.unwrap().is_empty(), "nothing is left over");
}

#[tokio::test]
async fn file_ranges_read_their_paths_and_refuse_a_missing_short_or_overrun_listing() {
    let server = RedisServer::start();
    let q = connect(&server, fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<std::path::PathBuf> = (0..10).map(|i| dir.path().join(format!("img {i}.png"))).collect();
    for at in [DataRef::Key("test:listing".to_owned()), DataRef::Path(dir.path().join("files.list"))] {
        FileRange::write_listing(&q, &at, &paths, Some(Duration::from_secs(60))).await.unwrap();
        let range = |start, count| FileRange { listing: at.clone(), total: paths.len(), start, count };
        assert_eq!(range(3, 4).paths(&q).await.unwrap(), paths[3..7]);
        assert_eq!(range(10, 0).paths(&q).await.unwrap(), Vec::<std::path::PathBuf>::new());
        let past = range(8, 3).paths(&q).await.unwrap_err();
        assert!(matches!(&past, Error::Data(m) if m.contains("8..11")), "{past}");
        let wrong_total = FileRange { total: 11, ..range(0, 1) }.paths(&q).await.unwrap_err();
        assert!(matches!(&wrong_total, Error::Data(m) if m.contains("10 paths, not the 11")), "{wrong_total}");
    }
    // A listing never written (its job over, its key expired): a clear error, not an empty range.
    for gone in [DataRef::Key("test:listing:gone".to_owned()), DataRef::Path(dir.path().join("gone.list"))] {
        let error = FileRange { listing: gone, total: 1, start: 0, count: 1 }.paths(&q).await.unwrap_err();
        assert!(matches!(&error, Error::Data(_)), "{error}");
    }
}
