//! The broker's [`weft_broker::SchemaSource`] over the in-process registry: how topics with
//! `weft.schema.validation` look schemas up without the broker knowing the registry crate.

use std::sync::Arc;

use weft_broker::{SchemaSource, SchemaValidator, SourceError, SourceFuture};
use weft_registry::Registry;
use weft_schema::ParsedSchema;

struct RegistrySource(Registry);

impl SchemaSource for RegistrySource {
    fn schema_by_id(&self, id: u32) -> SourceFuture<'_, Option<Arc<ParsedSchema>>> {
        Box::pin(async move {
            self.0
                .parsed_schema(i64::from(id))
                .await
                .map_err(|e| SourceError(e.to_string()))
        })
    }

    fn is_registered<'a>(&'a self, subject: &'a str, id: u32) -> SourceFuture<'a, bool> {
        Box::pin(async move {
            self.0
                .is_registered_under(subject, i64::from(id))
                .await
                .map_err(|e| SourceError(e.to_string()))
        })
    }
}

/// The validator the embedded broker checks produced records with.
pub(crate) fn validator(registry: Registry) -> SchemaValidator {
    SchemaValidator::new(Arc::new(RegistrySource(registry)))
}
