//! Prometheus series of the lag monitor, recorded through the `metrics` facade after every
//! round (a no-op when no recorder is installed). Cardinality is bounded by the groups and
//! partitions the cluster has: no per-key or per-member labels.
//!
//! - `weft_group_lag_records{group,topic,partition}`: log end − committed offset;
//! - `weft_group_lag_seconds{group,topic,partition}`: age of the oldest unconsumed record
//!   (absent while unknown);
//! - `weft_group_lag_total_records{group}`, `weft_group_lag_members{group}`;
//! - `weft_group_lag_status{group,status}`: 1 for the group's status, 0 for the others, so
//!   `weft_group_lag_status{status!="OK"} == 1` selects the groups in trouble;
//! - `weft_lag_rounds_total{result="ok|error"}`, `weft_lag_round_duration_seconds`.
//!
//! A group or partition that disappears keeps its last value until the process restarts (the
//! facade cannot delete series); its status series are all set to 0 so alerts clear.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::{GroupView, Status};

const STATUSES: [Status; 4] = [Status::Ok, Status::Warn, Status::Stall, Status::Stop];

/// Groups that had series after the previous round, to zero the status of vanished ones.
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Records the gauges of one round's view.
pub(crate) fn record_groups(groups: &[GroupView]) {
    let mut current = BTreeSet::new();
    for g in groups {
        current.insert(g.group.clone());
        let group = g.group.clone();
        metrics::gauge!("weft_group_lag_total_records", "group" => group.clone())
            .set(g.total_lag as f64);
        metrics::gauge!("weft_group_lag_members", "group" => group.clone()).set(g.members as f64);
        for s in STATUSES {
            let v = if s == g.status { 1.0 } else { 0.0 };
            metrics::gauge!("weft_group_lag_status", "group" => group.clone(), "status" => s.as_str())
                .set(v);
        }
        for p in &g.partitions {
            let labels = [
                ("group", group.clone()),
                ("topic", p.topic.clone()),
                ("partition", p.partition.to_string()),
            ];
            metrics::gauge!("weft_group_lag_records", &labels).set(p.lag as f64);
            if let Some(ms) = p.lag_ms {
                metrics::gauge!("weft_group_lag_seconds", &labels).set(ms as f64 / 1000.0);
            }
        }
    }
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for gone in seen.difference(&current) {
        for s in STATUSES {
            metrics::gauge!("weft_group_lag_status", "group" => gone.clone(), "status" => s.as_str())
                .set(0.0);
        }
    }
    *seen = current;
}

/// Counts a sampling round and its duration.
pub(crate) fn record_round(ok: bool, seconds: f64) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!("weft_lag_rounds_total", "result" => result).increment(1);
    metrics::histogram!("weft_lag_round_duration_seconds").record(seconds);
}
