//! `--shared-dir`: a folder this process and every worker reach at the same path. The
//! `extract` tasks of a run write their matrices there as .npy files, so the rows never pass
//! through Redis; each run has a folder of its own there, removed when the run ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Failure;

/// Tries at removing a run's folder: a task stopped late may add a file while it goes.
const REMOVE_TRIES: usize = 5;

/// A run's folder under the shared folder, removed with everything in it when dropped.
#[derive(Debug)]
pub struct RunFolder {
    path: PathBuf,
}

impl RunFolder {
    /// Creates `dir/name` (absolute, as the workers get it), with the permissions of `dir`:
    /// workers running as other users write there if `dir` lets them.
    pub fn create(dir: &Path, name: &str) -> Result<Self, Failure> {
        let unusable = |why: String| {
            Failure::Job(format!(
                "--shared-dir {}: {why} (give a folder this process and every worker can write, at the same path)",
                dir.display()
            ))
        };
        let absolute = std::path::absolute(dir).map_err(|e| unusable(e.to_string()))?;
        let meta = std::fs::metadata(&absolute).map_err(|e| unusable(e.to_string()))?;
        if !meta.is_dir() {
            return Err(unusable("not a folder".to_owned()));
        }
        let path = absolute.join(name);
        std::fs::create_dir(&path).map_err(|e| unusable(e.to_string()))?;
        let folder = RunFolder { path };
        std::fs::set_permissions(&folder.path, meta.permissions()).map_err(|e| unusable(e.to_string()))?;
        Ok(folder)
    }

    /// Where the listing of the run's files goes.
    pub fn listing(&self) -> PathBuf {
        self.path.join("files.list")
    }

    /// Where the matrix of task `i` goes.
    pub fn file(&self, i: usize) -> PathBuf {
        self.path.join(format!("{i}.npy"))
    }
}

impl Drop for RunFolder {
    fn drop(&mut self) {
        let mut last = None;
        for _ in 0..REMOVE_TRIES {
            match std::fs::remove_dir_all(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(e) = last {
            eprintln!("warning: could not remove the run's folder {}: {e}", self.path.display());
        }
    }
}
