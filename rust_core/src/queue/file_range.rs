//! File paths by reference: a job's files stored once as a listing (at a key or in a file),
//! each task naming a range of it, so that a task carries a few numbers instead of its paths
//! (256 absolute paths were 15 KB an envelope, copied by Redis into the stream, the task
//! record and the append-only file, and parsed by the worker). A process reads a listing once
//! and keeps it for the job's other tasks.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DataRef, Error, Queue, Result};

/// Listings a worker keeps: those of the jobs it serves at once.
const KEPT_LISTINGS: usize = 4;

/// Files `start .. start + count` of a listing of `total` paths stored at `listing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRange {
    /// Where the listing is ([`FileRange::write_listing`]): a Redis key, or a file every
    /// worker reads at the same path.
    pub listing: DataRef,
    /// How many paths the listing holds (checked when it is read).
    pub total: usize,
    /// The first file of the range.
    pub start: usize,
    /// How many files.
    pub count: usize,
}

/// A listing's bytes: each path followed by a NUL byte, which no path contains (any bytes
/// otherwise, so paths that are not UTF-8 pass too).
fn encode(paths: &[PathBuf]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(paths.iter().map(|p| p.as_os_str().len() + 1).sum());
    for path in paths {
        bytes.extend_from_slice(path.as_os_str().as_bytes());
        bytes.push(0);
    }
    bytes
}

fn decode(bytes: &[u8]) -> Vec<PathBuf> {
    let paths = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if paths.is_empty() {
        return Vec::new();
    }
    paths.split(|&b| b == 0).map(|p| Path::new(OsStr::from_bytes(p)).to_path_buf()).collect()
}

/// The listings read lately, most recent last.
type Listings = Mutex<Vec<(DataRef, Arc<Vec<PathBuf>>)>>;

static LISTINGS: Listings = Mutex::new(Vec::new());

impl FileRange {
    /// Stores the listing of `paths` at `at` (a key expiring after `ttl` if given), for
    /// ranges of it to name. Write it once, before the tasks that name it, under a name no
    /// other listing takes: readers keep what they read.
    ///
    /// # Errors
    /// As [`DataRef::write_bytes`].
    pub async fn write_listing(queue: &Queue, at: &DataRef, paths: &[PathBuf], ttl: Option<Duration>) -> Result<()> {
        at.write_bytes(queue, &encode(paths), ttl).await
    }

    /// The paths of the range, from the listing as this process last read it.
    ///
    /// # Errors
    /// [`Error::Data`] when the listing is gone (with its job) or holds another number of
    /// paths than `total`, or the range goes past it; Redis errors.
    pub async fn paths(&self, queue: &Queue) -> Result<Vec<PathBuf>> {
        let listing = self.listing(queue).await?;
        if listing.len() != self.total {
            return Err(Error::Data(format!(
                "the listing {:?} holds {} paths, not the {} the task expects",
                self.listing,
                listing.len(),
                self.total
            )));
        }
        let range = self.start..self.start.saturating_add(self.count);
        let paths = listing.get(range.clone()).map(<[PathBuf]>::to_vec);
        paths.ok_or_else(|| Error::Data(format!("files {range:?} of a listing of {}", listing.len())))
    }

    async fn listing(&self, queue: &Queue) -> Result<Arc<Vec<PathBuf>>> {
        if let Some((_, kept)) = lock(&LISTINGS).iter().find(|(at, _)| *at == self.listing) {
            return Ok(kept.clone());
        }
        let bytes = self.listing.read_bytes(queue).await?;
        let bytes = bytes.ok_or_else(|| Error::Data(format!("no listing at {:?}: is its job over?", self.listing)))?;
        let listing = Arc::new(decode(&bytes));
        let mut kept = lock(&LISTINGS);
        if kept.len() == KEPT_LISTINGS {
            kept.remove(0);
        }
        kept.push((self.listing.clone(), listing.clone()));
        Ok(listing)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_decodes_to_its_paths_any_bytes_included() {
        let paths: Vec<PathBuf> = vec![
            "/data/a b.png".into(),
            Path::new(OsStr::from_bytes(b"/data/\xff\nodd.png")).to_path_buf(),
            "/data/c.png".into(),
        ];
        assert_eq!(decode(&encode(&paths)), paths);
        assert!(decode(&encode(&[])).is_empty());
    }
}
