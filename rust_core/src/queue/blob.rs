//! Bytes too large for an envelope, kept in Redis under the queue's namespace: task arguments
//! and results passed by reference. A blob has a random id, is split into chunks of at most
//! [`CHUNK_BYTES`] (Redis strings are capped at 512 MB, and one huge value stalls Redis while
//! it is copied), and expires with the outcome of the task that uses it, unless its reader
//! deletes it first, once it has no more use for it.

use serde::{Deserialize, Serialize};

use super::{Queue, Result};

/// Largest chunk of a blob.
pub const CHUNK_BYTES: usize = 16 << 20;

/// Where a blob lives and how big it is: what an envelope carries instead of the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Its id (32 hex digits); chunk `i` is the key `{namespace}:blob:{id}:{i}`.
    pub id: String,
    /// Its length in bytes.
    pub size: usize,
}

impl BlobRef {
    fn chunks(&self) -> usize {
        self.size.div_ceil(CHUNK_BYTES).max(1)
    }
}

impl Queue {
    /// Stores `bytes` (one round trip), expiring after `ttl_s` seconds (0: kept until deleted).
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn put_blob(&self, bytes: &[u8], ttl_s: u64) -> Result<BlobRef> {
        let blob = BlobRef { id: format!("{:032x}", rand::random::<u128>()), size: bytes.len() };
        let mut pipe = redis::pipe();
        for index in 0..blob.chunks() {
            let start = index * CHUNK_BYTES;
            let chunk = &bytes[start..(start + CHUNK_BYTES).min(bytes.len())];
            let set = pipe.cmd("SET").arg(self.keys.blob_chunk(&blob.id, index)).arg(chunk);
            if ttl_s > 0 {
                set.arg("EX").arg(ttl_s);
            }
            set.ignore();
        }
        self.conn
            .run(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async::<()>(&mut conn).await }
            })
            .await?;
        Ok(blob)
    }

    /// The bytes of a blob (one round trip); `None` when any chunk is gone (expired or deleted)
    /// or of the wrong length.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn get_blob(&self, blob: &BlobRef) -> Result<Option<Vec<u8>>> {
        let keys: Vec<String> = self.chunk_keys(blob).collect();
        let chunks: Vec<Option<Vec<u8>>> = self.conn.query(redis::cmd("MGET").arg(&keys)).await?;
        let mut bytes = Vec::with_capacity(blob.size);
        for chunk in chunks {
            let Some(chunk) = chunk else { return Ok(None) };
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes.len() == blob.size).then_some(bytes))
    }

    /// Deletes blobs (one round trip); blobs already gone are no error.
    ///
    /// # Errors
    /// Redis errors only.
    pub async fn delete_blobs(&self, blobs: &[&BlobRef]) -> Result<()> {
        let keys: Vec<String> = blobs.iter().flat_map(|blob| self.chunk_keys(blob)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let _deleted: u64 = self.conn.query(redis::cmd("DEL").arg(&keys)).await?;
        Ok(())
    }

    /// The Redis keys of a blob's chunks, in order.
    fn chunk_keys<'a>(&'a self, blob: &'a BlobRef) -> impl Iterator<Item = String> + 'a {
        (0..blob.chunks()).map(|index| self.keys.blob_chunk(&blob.id, index))
    }
}
