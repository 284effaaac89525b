//! `ferrocluster queue stats|dead-letters|retry`: what the Redis queue holds, and putting
//! dead-lettered tasks back.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::{Args, Subcommand};
use ferrocluster_core::queue::{DeadLetter, Error, Queue, QueueConfig, Stats};
use serde_json::json;

use crate::worker::RedisArgs;
use crate::Failure;

/// How long a command of this CLI keeps retrying an unreachable Redis: long enough to ride
/// over a restart, short enough that a wrong URL is a prompt error rather than a hang.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters shown per queue, in this order.
const COUNTERS: [&str; 7] = ["succeeded", "failed", "cancelled", "dead", "retried", "reclaimed", "refused"];

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Per queue: length, pending, consumers, live workers and outcomes; the workers with
    /// their state and heartbeat age; dead letters and retries waiting.
    Stats,
    /// The dead letters: task id, kind, queue, deliveries and reason.
    DeadLetters {
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Puts dead-lettered tasks back on their queue with a fresh delivery count. A task that
    /// has since finished otherwise keeps its outcome: it is not run again.
    Retry {
        /// Task ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every task in the dead letters.
        #[arg(long)]
        all: bool,
    },
}

/// Connects to the queue of `url` under `namespace`.
pub async fn connect(url: &str, namespace: &str) -> Result<Queue, Error> {
    let config =
        QueueConfig { namespace: namespace.to_owned(), reconnect_timeout: RECONNECT_TIMEOUT, ..QueueConfig::default() };
    Queue::connect(url, config).await
}

pub fn run(args: QueueArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::Job(format!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        let queue = connect(&args.redis.redis, &args.redis.namespace).await?;
        match args.action {
            Action::Stats => {
                let stats = queue.stats().await?;
                print(args.json, &stats, || stats_tables(&stats));
            }
            Action::DeadLetters { limit } => {
                let dead = queue.dead_letters(limit).await?;
                print(args.json, &dead, || dead_letter_table(&dead));
            }
            Action::Retry { ids, all } => {
                let ids = if all { dead_ids(&queue).await? } else { ids };
                let outcomes = retry(&queue, &ids).await?;
                print(args.json, &outcomes, || {
                    let line = |o: &serde_json::Value| {
                        format!(
                            "{}: {}\n",
                            o["id"].as_str().unwrap_or_default(),
                            o["outcome"].as_str().unwrap_or_default()
                        )
                    };
                    outcomes.iter().map(line).collect()
                });
                let refused = outcomes.iter().filter(|o| o["retried"] == false).count();
                if refused > 0 && !all {
                    return Err(Failure::Job(format!("{refused} of {} tasks were not retried", ids.len())));
                }
            }
        }
        Ok(())
    })
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("queue records serialize"));
    } else {
        print!("{}", text());
    }
}

/// The ids of every dead letter there is now (later ones are not chased: retried tasks that
/// die again must not loop).
async fn dead_ids(queue: &Queue) -> Result<Vec<String>, Error> {
    let mut ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = queue.dead_letters_after(after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.entry.clone());
        ids.extend(page.into_iter().filter_map(|d| d.id));
    }
    Ok(ids.into_iter().collect())
}

async fn retry(queue: &Queue, ids: &[String]) -> Result<Vec<serde_json::Value>, Error> {
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        let outcome = match queue.retry_dead(id).await {
            Ok(()) => json!({"id": id, "retried": true, "outcome": "retried"}),
            Err(e @ (Error::Invalid { .. } | Error::NoSuchTask(_))) => {
                json!({"id": id, "retried": false, "outcome": format!("not retried: {e}")})
            }
            Err(e) => return Err(e),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn stats_tables(stats: &Stats) -> String {
    let mut headers = vec!["queue", "length", "pending", "consumers", "workers"];
    headers.extend(COUNTERS);
    let queues = stats.queues.iter().map(|q| {
        let mut row = vec![q.name.clone(), q.length.to_string(), q.pending.to_string(), q.consumers.to_string()];
        row.push(q.workers.to_string());
        row.extend(COUNTERS.iter().map(|c| q.counters.get(*c).copied().unwrap_or(0).to_string()));
        row
    });
    let mut text = table(&headers, queues.collect());
    let field = |w: &ferrocluster_core::queue::WorkerInfo, name: &str| w.fields.get(name).cloned().unwrap_or_default();
    let workers = stats.workers.iter().map(|w| {
        let running = field(w, "current").split(',').filter(|t| !t.is_empty()).count();
        vec![
            w.consumer.clone(),
            field(w, "state"),
            field(w, "queues"),
            format!("{running}/{}", field(w, "concurrency")),
            field(w, "completed"),
            w.heartbeat_age_ms.map_or_else(|| "?".to_owned(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0)),
        ]
    });
    text.push('\n');
    if stats.workers.is_empty() {
        text.push_str("no live workers\n");
    } else {
        text.push_str(&table(&["worker", "state", "queues", "running", "completed", "heartbeat"], workers.collect()));
    }
    text.push_str(&format!("\ndead letters: {}   retries waiting: {}\n", stats.dead_letters, stats.delayed));
    text
}

fn dead_letter_table(dead: &[DeadLetter]) -> String {
    if dead.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_owned());
    let rows = dead.iter().map(|d| {
        let deliveries = d.deliveries.map_or_else(|| "?".to_owned(), |n| n.to_string());
        vec![text(&d.id), text(&d.kind), text(&d.queue), deliveries, d.reason.clone()]
    });
    table(&["task", "kind", "queue", "deliveries", "reason"], rows.collect())
}

/// Left-aligned columns as wide as their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(headers.to_vec());
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}
