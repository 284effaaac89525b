//! The one error type of the engine; adapters (Python, REST) map it once.

use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image could not be decoded: corrupt, truncated, unsupported or too large.
    #[error("{source_name}: {reason}")]
    Image { source_name: String, reason: String },
    /// Input data has the wrong shape, size or values (NaN, n < k, empty, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A parameter is out of its allowed range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    /// A saved model could not be read.
    #[error("model file {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// The computation was stopped through its [`crate::CancelToken`].
    #[error("cancelled")]
    Cancelled,
    /// A model was used before `fit`.
    #[error("model is not fitted yet: call fit first")]
    NotFitted,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn parameter(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter { name, reason: reason.into() }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn input(reason: impl Into<String>) -> Self {
        Error::InvalidInput(reason.into())
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
