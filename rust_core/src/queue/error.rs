//! The queue's error type, kept apart from the engine's: it concerns Redis and tasks, not data.

/// Everything the queue can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis refused the credentials (AUTH/ACL): the user, password or ACL rules are wrong.
    #[error(
        "Redis refused authentication: {0} (check the user and password in the URL: redis://user:pass@host:port/db)"
    )]
    Auth(String),
    /// The ACL user may not run a command the queue needs.
    #[error("Redis denied a command to this user: {0} (the ACL user needs the stream, hash, sorted-set and scripting commands on the queue's keys)")]
    Permission(String),
    /// Redis could not be reached within the reconnect timeout.
    #[error("Redis unreachable for {seconds:.1} s: {reason}")]
    Unavailable { seconds: f64, reason: String },
    /// Redis answered with an error the queue does not expect.
    #[error("Redis error: {0}")]
    Redis(String),
    /// A task envelope was malformed, of an unknown version, or not valid JSON.
    #[error("malformed task envelope: {0}")]
    Envelope(String),
    /// An envelope or result is larger than the configured cap.
    #[error("{what} is {size} bytes, over the {limit}-byte cap: pass large data by reference (a Redis key or a file path), not inline")]
    TooLarge { what: &'static str, size: usize, limit: usize },
    /// A task spec or configuration value is not allowed.
    #[error("invalid {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// No task has this id (never enqueued, or its result expired).
    #[error("no task with id `{0}` (never enqueued, or its record expired)")]
    NoSuchTask(String),
    /// Reading or writing data passed by reference failed.
    #[error("{0}")]
    Data(String),
}

/// The queue's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid { name, reason: reason.into() }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        match e.kind() {
            ErrorKind::AuthenticationFailed => Error::Auth(e.to_string()),
            ErrorKind::Server(ServerErrorKind::NoPerm) => Error::Permission(e.to_string()),
            ErrorKind::InvalidClientConfig => Error::Url(e.to_string()),
            _ if e.code() == Some("WRONGPASS") || e.code() == Some("NOAUTH") => Error::Auth(e.to_string()),
            _ => Error::Redis(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Envelope(e.to_string())
    }
}
