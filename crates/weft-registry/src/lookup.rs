//! Read-only look-ups for components in the same process (the broker's schema validation):
//! a parsed schema by id, and whether a subject uses an id. No HTTP, no JSON.

use std::sync::Arc;

use weft_schema::ParsedSchema;

use crate::{Error, Registry, Result, storage};

impl Registry {
    /// The schema with global id `id`, parsed with its references (from the registry's cache
    /// when it was parsed before); `None` when no schema has that id. Soft-deleted versions
    /// keep their schema readable by id, as over the API.
    pub async fn parsed_schema(&self, id: i64) -> Result<Option<Arc<ParsedSchema>>> {
        match self.parsed(id).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::SchemaNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a live (not soft-deleted) version of `subject` uses schema `id`.
    pub async fn is_registered_under(&self, subject: &str, id: i64) -> Result<bool> {
        let mut c = self.conn().await?;
        Ok(storage::uses_of_schema(&mut c, id)
            .await?
            .iter()
            .any(|(s, _, deleted)| s == subject && !deleted))
    }

    /// Drops the parsed-schema cache, so the next look-up reads and parses from the store
    /// (benchmarks of the uncached path).
    pub fn clear_cache(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }
}
