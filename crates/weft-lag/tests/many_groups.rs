//! The sampler against a real embedded broker with many groups that have committed offsets
//! and no members: one round reads every group's offsets right.

mod common;

use std::time::Duration;

use common::TestBroker;
use weft_lag::{Config, Lag, SamplerConfig};

const GROUPS: usize = 200;

/// Runs the sampler until its first round is in, then stops it.
fn one_round(b: &TestBroker, lag: &Lag) {
    let config = SamplerConfig::new(
        b.bootstrap(),
        Config {
            interval: Duration::from_millis(200),
            window: 3,
        },
    );
    let watched = lag.clone();
    let done = async move {
        while watched.sampled_at_ms().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    b.rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), lag.run(config, done)).await
    })
    .expect("a round within the limit")
    .expect("sampler");
}

#[test]
fn one_round_reads_the_offsets_of_every_group() {
    let b = TestBroker::start();
    b.produce("lag-a", 300);
    b.produce("lag-b", 10);
    // Group i commits i on lag-a; every third group also commits on lag-b.
    for i in 0..GROUPS {
        let group = format!("many-{i:03}");
        let mut offsets = vec![("lag-a", 0, i as i64)];
        if i % 3 == 0 {
            offsets.push(("lag-b", 0, (i % 10) as i64));
        }
        b.commit(&group, &offsets);
    }

    let lag = Lag::new(Config {
        interval: Duration::from_millis(200),
        window: 3,
    });
    one_round(&b, &lag);

    let groups = lag.groups();
    let ours: Vec<_> = groups
        .iter()
        .filter(|g| g.group.starts_with("many-"))
        .collect();
    assert_eq!(ours.len(), GROUPS, "every group is listed");
    for i in 0..GROUPS {
        let id = format!("many-{i:03}");
        let g = lag.group(&id).unwrap_or_else(|| panic!("{id} sampled"));
        assert_eq!(g.members, 0, "{id}");
        let mut seen: Vec<(String, i32, i64, i64)> = g
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.committed, p.log_end))
            .collect();
        seen.sort();
        let mut want = vec![("lag-a".to_owned(), 0, i as i64, 300)];
        if i % 3 == 0 {
            want.push(("lag-b".to_owned(), 0, (i % 10) as i64, 10));
        }
        assert_eq!(seen, want, "{id}");
        let total: i64 = want.iter().map(|(_, _, c, e)| e - c).sum();
        assert_eq!(g.total_lag, total, "{id}");
    }
}
