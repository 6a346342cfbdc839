//! The SDK side of event sourcing: an [`Aggregate`] folds its events (`apply`) and decides on
//! commands (`handle`); a [`Repository`] loads it (latest snapshot, then the events after it),
//! runs a command and saves the new events with the revision it loaded as the expected
//! version, reloading and retrying when another writer got there first.
//!
//! Events are a serde enum, externally tagged: the variant name is the event type and its
//! content is the event data (`OrderPlaced { … }` is stored as type `OrderPlaced`, data
//! `{…}`).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::types::{Direction, EventData, EventMetadata, ExpectedVersion, RecordedEvent};
use crate::{Error, EventStore, WriteResult};

/// A consistency boundary whose state is a fold of its events.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync {
    /// Streams are `<CATEGORY>-<id>`.
    const CATEGORY: &'static str;
    type Event: Serialize + DeserializeOwned + Send + Sync;
    type Command: Send + Sync;
    type Error: fmt::Display + Send;

    fn apply(&mut self, event: &Self::Event);
    /// The events a command produces, or why it is refused (validated against the current
    /// state only; nothing is stored for a refusal).
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}

/// An aggregate as loaded: its state and the revision it reflects.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    /// The last revision applied; `None` for a stream without events.
    pub revision: Option<u64>,
    /// Events applied on top of the snapshot (for tests and metrics).
    pub replayed: u64,
    pub from_snapshot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError<E: fmt::Display> {
    #[error("command refused: {0}")]
    Rejected(E),
    #[error("still conflicting after {attempts} attempts: {source}")]
    Conflict {
        attempts: u32,
        #[source]
        source: Error,
    },
    #[error(transparent)]
    Store(#[from] Error),
}

/// Loads and saves aggregates of one type.
pub struct Repository<A: Aggregate> {
    store: EventStore,
    /// Take a snapshot when a save crosses a multiple of this many revisions (0: never).
    pub snapshot_every: u64,
    /// Attempts of a command under concurrent writers.
    pub max_attempts: u32,
    _a: std::marker::PhantomData<fn() -> A>,
}

/// `(event type, data)` of an externally tagged enum value.
pub fn split_event<E: Serialize>(event: &E) -> Result<(String, Value), Error> {
    match serde_json::to_value(event) {
        Ok(Value::Object(m)) if m.len() == 1 => {
            let (k, v) = m
                .into_iter()
                .next()
                .ok_or_else(|| Error::InvalidEvent("empty".into()))?;
            Ok((k, v))
        }
        Ok(Value::String(s)) => Ok((s, Value::Null)),
        Ok(other) => Err(Error::InvalidEvent(format!(
            "aggregate events must be an externally tagged enum, got {other}"
        ))),
        Err(e) => Err(Error::InvalidEvent(e.to_string())),
    }
}

/// The enum value of a recorded event.
pub fn join_event<E: DeserializeOwned>(e: &RecordedEvent) -> Result<E, Error> {
    let v = if e.data.is_null() {
        Value::String(e.event_type.clone())
    } else {
        let mut m = serde_json::Map::new();
        m.insert(e.event_type.clone(), e.data.clone());
        Value::Object(m)
    };
    serde_json::from_value(v).map_err(|err| {
        Error::Corrupt(format!(
            "event {} at {}@{} does not decode as {}: {err}",
            e.event_type,
            e.stream,
            e.revision,
            std::any::type_name::<E>()
        ))
    })
}

impl<A: Aggregate> Repository<A> {
    pub fn new(store: EventStore) -> Repository<A> {
        Repository {
            store,
            snapshot_every: 100,
            max_attempts: 10,
            _a: std::marker::PhantomData,
        }
    }

    pub fn stream(id: &str) -> String {
        format!("{}-{id}", A::CATEGORY)
    }

    /// The current state.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, Error> {
        self.load_until(id, None, None).await
    }

    /// The state as of a revision and/or a recorded time (audit, time travel). Snapshots are
    /// only used when they are not newer than the bound.
    pub async fn load_until(
        &self,
        id: &str,
        until_revision: Option<u64>,
        until_ms: Option<i64>,
    ) -> Result<Loaded<A>, Error> {
        let stream = Self::stream(id);
        let mut loaded = Loaded {
            state: A::default(),
            revision: None,
            replayed: 0,
            from_snapshot: false,
        };
        if until_ms.is_none()
            && let Some((rev, state)) = self.store.load_snapshot(&stream).await?
            && until_revision.is_none_or(|u| rev <= u)
            && let Ok(state) = serde_json::from_value::<A>(state)
        {
            // A snapshot that no longer decodes (the state type changed) is ignored: the
            // events are the truth.
            loaded.state = state;
            loaded.revision = Some(rev);
            loaded.from_snapshot = true;
        }
        loop {
            let from = loaded.revision.map_or(0, |r| r + 1);
            let page = self
                .store
                .read_stream(&stream, from, Direction::Forwards, 1024)
                .await?;
            let n = page.len();
            for e in &page {
                if until_revision.is_some_and(|u| e.revision > u)
                    || until_ms.is_some_and(|t| e.recorded_ms > t)
                {
                    return Ok(loaded);
                }
                let event: A::Event = join_event(e)?;
                loaded.state.apply(&event);
                loaded.revision = Some(e.revision);
                loaded.replayed += 1;
            }
            if n < 1024 {
                return Ok(loaded);
            }
        }
    }

    /// Runs `command` on aggregate `id` and saves what it produced.
    pub async fn execute(
        &self,
        id: &str,
        command: &A::Command,
        metadata: EventMetadata,
    ) -> Result<Option<WriteResult>, RepositoryError<A::Error>> {
        let stream = Self::stream(id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let loaded = self.load(id).await?;
            let events = loaded
                .state
                .handle(command)
                .map_err(RepositoryError::Rejected)?;
            if events.is_empty() {
                return Ok(None);
            }
            let mut state = loaded.state;
            let mut data = Vec::with_capacity(events.len());
            for e in &events {
                let (t, d) = split_event(e)?;
                data.push(EventData::new(t, d).with_metadata(metadata.clone()));
                state.apply(e);
            }
            let expected = match loaded.revision {
                Some(r) => ExpectedVersion::Exact(r),
                None => ExpectedVersion::NoStream,
            };
            match self.store.append(&stream, expected, data).await {
                Ok(w) => {
                    let before = loaded.revision.map_or(0, |r| r + 1);
                    if self.snapshot_every > 0
                        && (w.next_expected + 1) / self.snapshot_every
                            > before / self.snapshot_every
                    {
                        let snapshot = serde_json::to_value(&state)
                            .map_err(|e| Error::Invalid(format!("snapshot: {e}")))?;
                        self.store
                            .save_snapshot(&stream, w.next_expected, &snapshot)
                            .await?;
                    }
                    return Ok(Some(w));
                }
                Err(e @ Error::WrongExpectedVersion { .. }) => {
                    if attempt >= self.max_attempts {
                        return Err(RepositoryError::Conflict {
                            attempts: attempt,
                            source: e,
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
