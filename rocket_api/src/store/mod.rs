//! Everything the service keeps, as files under the data directory: each record is written
//! to a temporary name and renamed into place, so a crash leaves the old version or the new
//! one, never half of either, and a restart finds all of it.
//!
//! ```text
//! data/datasets/<id>/{meta.json, images/<n>}
//! data/models/<id>/{meta.json, model.json, train.f32}
//! data/jobs/<id>.json
//! data/tmp/              staging for directories before their rename
//! ```

pub mod datasets;
pub mod jobs;
pub mod models;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// The data directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating) the data directory and clears staging left by a crash. Paths are
    /// absolute, so that queue workers are given paths that do not depend on our directory.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let store = Store { root: std::fs::canonicalize(root)? };
        let tmp = store.tmp_dir();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        for dir in [store.root.join("datasets"), store.root.join("models"), store.root.join("jobs"), tmp] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(store)
    }

    /// The directory of kind `kind` ("datasets", "models", "jobs").
    fn dir(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh directory under staging, to fill and then [`Store::publish`].
    fn staging(&self, id: &str) -> std::io::Result<PathBuf> {
        let path = self.tmp_dir().join(format!("{id}-{:08x}", rand::rng().random::<u32>()));
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// Moves a filled staging directory to `dest` in one rename.
    fn publish(staged: &Path, dest: &Path) -> std::io::Result<()> {
        sync_dir(staged)?;
        std::fs::rename(staged, dest)?;
        sync_dir(dest.parent().unwrap_or(dest))
    }

    /// Removes a published directory: renamed away first, so readers see it whole or gone.
    fn unpublish(&self, dir: &Path) -> std::io::Result<()> {
        let doomed = self.tmp_dir().join(format!("deleted-{:016x}", rand::rng().random::<u64>()));
        std::fs::rename(dir, &doomed)?;
        std::fs::remove_dir_all(doomed)
    }
}

/// Writes `bytes` to `path` atomically (a synced temporary file renamed over it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::rng().random::<u32>()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Writes a record as JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Reads a JSON record.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A new random id: 16 hex digits behind a prefix that says what it names (`ds_`, `m_`, `job_`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::rng().random::<u64>())
}

/// The OpenAPI schema of the ids [`new_id`] makes behind `prefix`, naming a `what`.
fn id_schema(prefix: &str, what: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{prefix}[0-9a-f]{{16}}$")))
        .description(Some(format!("A {what} id: `{prefix}` and 16 hex digits.")))
        .examples([serde_json::json!(format!("{prefix}0123456789abcdef"))])
        .into()
}

/// Schema-only types for the ids, with the prefix each is made with.
macro_rules! id_types {
    ($($name:ident = $prefix:literal, $what:literal;)+) => {$(
        #[doc = concat!("The id of a ", $what, " (`", $prefix, "` and 16 hex digits), for the OpenAPI document.")]
        #[derive(Debug)]
        pub struct $name;

        impl $name {
            /// What [`new_id`] is given for this kind of id.
            pub const PREFIX: &'static str = $prefix;
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                id_schema(Self::PREFIX, $what)
            }
        }

        impl utoipa::ToSchema for $name {}
    )+};
}

id_types! {
    DatasetId = "ds_", "dataset";
    ModelId = "m_", "model";
    JobId = "job_", "job";
}

/// Whether `id` could be one of ours (so it is safe as a path component).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
