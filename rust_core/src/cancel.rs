//! [`CancelToken`]: how a caller asks a long computation (a fit, a training) to stop. The
//! computation checks the token at its own safe points (after each iteration, between
//! k-means++ steps, between chunks of images) and returns [`crate::Error::Cancelled`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{Error, Result};

/// A shared stop flag: clones share it; once cancelled it stays cancelled.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Asks every holder of the token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether someone asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once cancelled, for `?` at a safe point.
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_every_clone() {
        let token = CancelToken::new();
        let held = token.clone();
        assert!(held.check().is_ok());
        token.cancel();
        assert!(held.is_cancelled());
        assert!(matches!(held.check(), Err(Error::Cancelled)));
    }
}
