//! Prometheus series of the event store, recorded through the `metrics` facade (a no-op when
//! no recorder is installed; weft-observe renders them at `/metrics` in `weft serve`):
//!
//! - `weft_eventstore_appends_total{outcome}`: appends by outcome — `ok`, `duplicate`
//!   (idempotent retry), `wrong_expected_version`, `refused` (other refusals), `error`;
//! - `weft_eventstore_events_appended_total`: events stored;
//! - `weft_eventstore_group_commit_appends`: appends per group-commit transaction (histogram);
//! - `weft_eventstore_head_position`: the last committed global position seen by this process;
//! - `weft_eventstore_projection_position{projection}`: a projection's checkpoint after each
//!   committed batch;
//! - `weft_eventstore_parked_total{group}`: events parked by persistent groups;
//! - `weft_eventstore_scavenged_events_total`: events deleted by the scavenger.
//!
//! Labels are outcomes and the names of projections and groups the user created: bounded.

use crate::{Error, Result, WriteResult};

pub(crate) fn append_outcome(r: &Result<Vec<WriteResult>>) {
    let outcome = match r {
        Ok(w) if w.iter().all(|w| w.duplicate) => "duplicate",
        Ok(w) => {
            let events: u64 = w
                .iter()
                .filter(|w| !w.duplicate)
                .map(|w| w.position - w.first_position + 1)
                .sum();
            metrics::counter!("weft_eventstore_events_appended_total").increment(events);
            "ok"
        }
        Err(Error::WrongExpectedVersion { .. }) => "wrong_expected_version",
        Err(Error::Store(_) | Error::Corrupt(_)) => "error",
        Err(_) => "refused",
    };
    metrics::counter!("weft_eventstore_appends_total", "outcome" => outcome).increment(1);
}

pub(crate) fn group_commit(appends: usize) {
    metrics::histogram!("weft_eventstore_group_commit_appends").record(appends as f64);
}

pub(crate) fn head(position: u64) {
    metrics::gauge!("weft_eventstore_head_position").set(position as f64);
}

pub(crate) fn projection(name: &str, position: u64) {
    metrics::gauge!("weft_eventstore_projection_position", "projection" => name.to_owned())
        .set(position as f64);
}

pub(crate) fn parked(group: &str) {
    metrics::counter!("weft_eventstore_parked_total", "group" => group.to_owned()).increment(1);
}

pub(crate) fn scavenged(events: u64) {
    metrics::counter!("weft_eventstore_scavenged_events_total").increment(events);
}
