//! Group metrics through the `metrics` facade (a no-op until the binary installs a
//! recorder; `weft serve` installs the Prometheus one). Labels are bounded: group ids and
//! fixed sets, never member ids.
//!
//! - `weft_group_members{group,protocol}`: members of each group (`protocol`: `classic` or
//!   `consumer`, the KIP-848 protocol), refreshed every second by the group ticker; 0 once
//!   the group is gone.
//! - `weft_group_state{group,protocol,state}`: 1 for the group's current state (classic:
//!   `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`; consumer: `Empty`,
//!   `Assigning`, `Reconciling`, `Stable`), 0 for the state it left; refreshed with the
//!   member gauge.
//! - `weft_group_rebalances_total{group,protocol}`: classic: generations completed with
//!   members (every JoinGroup round); consumer: target assignments computed (group epoch
//!   bumps).
//! - `weft_group_rebalance_duration_seconds{protocol}`: classic: from the start of
//!   PreparingRebalance to Stable (the leader's SyncGroup); consumer: from the group leaving
//!   Stable to every member having reconciled. Rebalances that end with the group empty are
//!   not observed. Time is the coordinator's clock.

use std::collections::HashMap;

use metrics::{counter, gauge, histogram};

pub(crate) const CLASSIC: &str = "classic";
pub(crate) const CONSUMER: &str = "consumer";

pub(crate) fn rebalanced(group: &str, protocol: &'static str) {
    counter!("weft_group_rebalances_total", "group" => group.to_owned(), "protocol" => protocol)
        .increment(1);
}

pub(crate) fn rebalance_took(protocol: &'static str, ms: i64) {
    histogram!("weft_group_rebalance_duration_seconds", "protocol" => protocol)
        .record(ms.max(0) as f64 / 1000.0);
}

/// One group as the gauges show it: (group id, protocol, state, members).
pub(crate) type Sample = (String, &'static str, &'static str, usize);

/// What the gauges last showed, so a state left or a group gone is set back to 0.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    shown: HashMap<String, (&'static str, &'static str)>,
}

impl Gauges {
    pub(crate) fn update(&mut self, samples: Vec<Sample>) {
        let mut next = HashMap::with_capacity(samples.len());
        for (group, protocol, state, members) in samples {
            gauge!("weft_group_members", "group" => group.clone(), "protocol" => protocol)
                .set(members as f64);
            let before = self.shown.remove(&group);
            if before != Some((protocol, state)) {
                if let Some((p, s)) = before {
                    state_gauge(&group, p, s, 0.0);
                }
                state_gauge(&group, protocol, state, 1.0);
            }
            next.insert(group, (protocol, state));
        }
        for (group, (protocol, state)) in self.shown.drain() {
            gauge!("weft_group_members", "group" => group.clone(), "protocol" => protocol).set(0.0);
            state_gauge(&group, protocol, state, 0.0);
        }
        self.shown = next;
    }
}

fn state_gauge(group: &str, protocol: &'static str, state: &'static str, v: f64) {
    gauge!(
        "weft_group_state",
        "group" => group.to_owned(),
        "protocol" => protocol,
        "state" => state
    )
    .set(v);
}
