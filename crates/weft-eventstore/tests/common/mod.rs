//! A fresh event store on either backend.

#![allow(dead_code)] // each test file uses a subset

use std::time::Duration;

use serde_json::json;
use weft_eventstore::{EventData, EventStore, Options};
use weft_store::Backend;
use weft_store::testing::TestDb;

pub(crate) const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// Safety limit against hangs, never an assertion about speed.
pub(crate) const SAFETY: Duration = Duration::from_secs(60);

pub(crate) async fn open(backend: Backend) -> (TestDb, EventStore) {
    let db = TestDb::new(backend).await;
    let es = reopen(&db).await;
    (db, es)
}

pub(crate) async fn reopen(db: &TestDb) -> EventStore {
    let options = Options {
        poll_interval: Duration::from_millis(50),
        ..Options::default()
    };
    EventStore::open_with(db.open().await, options)
        .await
        .expect("event store opens")
}

pub(crate) fn ev(t: &str, n: i64) -> EventData {
    EventData::new(t, json!({ "n": n }))
}

pub(crate) async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(SAFETY, f)
        .await
        .expect("finished within the safety limit")
}
