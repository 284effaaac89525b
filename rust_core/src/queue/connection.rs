//! A Redis connection that survives Redis restarts: a command that hits a broken connection
//! is retried on a fresh one, with capped exponential backoff, until `reconnect_timeout`.
//! (The `redis` crate's ConnectionManager reconnects but still fails the command that hit
//! the break.) Every command the queue retries is idempotent: reads, or scripts fenced so a
//! second copy of an applied call is recognised.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind};
use tokio::sync::Mutex;

use super::{Error, Result};

/// Backoff between reconnect attempts: 50 ms doubling to 2 s.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A shared, self-healing multiplexed connection.
#[derive(Clone)]
pub(crate) struct Connection {
    client: Client,
    config: AsyncConnectionConfig,
    current: Arc<Mutex<Option<MultiplexedConnection>>>,
    reconnect_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("server", &self.client.get_connection_info().addr()).finish()
    }
}

impl Connection {
    /// A connection whose replies time out after `response_timeout`. Nothing is opened
    /// until the first command.
    pub(crate) fn new(client: Client, response_timeout: Duration, reconnect_timeout: Duration) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(response_timeout));
        Connection { client, config, current: Arc::new(Mutex::new(None)), reconnect_timeout }
    }

    /// Runs `op` on the connection, reconnecting and retrying while the failure is one of
    /// the connection (I/O, timeout, Redis still loading its AOF).
    pub(crate) async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let mut backoff = BACKOFF_MIN;
        loop {
            let outcome = match self.connection().await {
                Ok(conn) => op(conn).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(e) if is_connection_error(&e) => {
                    *self.current.lock().await = None;
                    if started.elapsed() >= self.reconnect_timeout {
                        return Err(Error::Unavailable {
                            seconds: started.elapsed().as_secs_f64(),
                            reason: e.to_string(),
                        });
                    }
                    tracing::debug!(error = %e, "Redis connection lost; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Runs a pipeline (retried whole: use it for reads and idempotent writes only).
    pub(crate) async fn pipeline<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        self.run(|mut conn| async move { pipe.query_async(&mut conn).await }).await
    }

    /// Runs one script (loading it again after a Redis restart emptied the script cache).
    pub(crate) async fn invoke<T: FromRedisValue>(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<T> {
        self.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// Runs a pipeline of calls of one script (each made by [`eval_cmd`]) in one round trip,
    /// loading the script first when Redis lost it (a restart empties the script cache).
    pub(crate) async fn invoke_all<T: FromRedisValue>(
        &self,
        script: &Script,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<T>> {
        self.run(|mut conn| async move {
            match pipe.query_async(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.prepare_invoke().load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.client.get_multiplexed_async_connection_with_config(&self.config).await?;
        *current = Some(conn.clone());
        Ok(conn)
    }
}

/// An `EVALSHA` of `script` on `keys`, for [`Connection::invoke_all`]; add the arguments.
pub(crate) fn eval_cmd(script: &Script, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// Failures of the connection rather than of the command.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown))
}
