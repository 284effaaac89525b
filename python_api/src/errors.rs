//! The one mapping from the core's errors to Python exceptions.

use ferrocluster_core::distributed::kmeans::Error as DistributedError;
use ferrocluster_core::queue::Error as QueueError;
use ferrocluster_core::Error;
use pyo3::exceptions::{
    PyConnectionError, PyFileNotFoundError, PyKeyError, PyKeyboardInterrupt, PyOSError, PyPermissionError,
    PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::PyErr;

pyo3::create_exception!(
    ferrocluster,
    ImageError,
    PyValueError,
    "An image could not be decoded: corrupt, truncated, unsupported or too large."
);
pyo3::create_exception!(ferrocluster, ModelFileError, PyValueError, "A saved model file could not be read.");

/// Converts a core error into the Python exception a user would expect.
pub fn to_py(err: Error) -> PyErr {
    match err {
        Error::Image { .. } => ImageError::new_err(err.to_string()),
        Error::Model { .. } => ModelFileError::new_err(err.to_string()),
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(err.to_string())
        }
        Error::Io { .. } => PyOSError::new_err(err.to_string()),
        // Nothing in the bindings cancels a computation; should one be, it is an interruption.
        Error::Cancelled => PyKeyboardInterrupt::new_err(err.to_string()),
        Error::InvalidInput(_) | Error::InvalidParameter { .. } | Error::NotFitted => {
            PyValueError::new_err(err.to_string())
        }
    }
}

/// Converts a parameter document the Python layer built into a ValueError naming the problem.
pub fn json_error(what: &str, err: serde_json::Error) -> PyErr {
    PyValueError::new_err(format!("invalid {what}: {err}"))
}

/// Converts a queue error into the Python exception a user would expect.
pub fn queue_to_py(err: QueueError) -> PyErr {
    match err {
        QueueError::NoSuchTask(_) => PyKeyError::new_err(err.to_string()),
        QueueError::Auth(_) | QueueError::Permission(_) => PyPermissionError::new_err(err.to_string()),
        QueueError::Unavailable { .. } => PyConnectionError::new_err(err.to_string()),
        QueueError::Url(_) | QueueError::Envelope(_) | QueueError::TooLarge { .. } | QueueError::Invalid { .. } => {
            PyValueError::new_err(err.to_string())
        }
        QueueError::Redis(_) | QueueError::Data(_) => PyOSError::new_err(err.to_string()),
    }
}

/// Converts the error of a distributed fit: bad data as `to_py`, queue failures as
/// `queue_to_py`, a cluster without workers or a failed shard as RuntimeError.
pub fn distributed_to_py(err: DistributedError) -> PyErr {
    match err {
        DistributedError::Engine(e) => to_py(e),
        DistributedError::Queue(e) => queue_to_py(e),
        DistributedError::Timeout(_) => PyTimeoutError::new_err(err.to_string()),
        DistributedError::NoWorkers | DistributedError::Shard { .. } | DistributedError::Interrupted => {
            PyRuntimeError::new_err(err.to_string())
        }
    }
}
