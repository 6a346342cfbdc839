//! `weft group list|describe|reset-offsets`: classic consumer groups through librdkafka
//! (ListGroups + DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit).
//!
//! The rdkafka crate has no "list the offsets of a group" call, so the committed offsets are
//! looked up with OffsetFetch for every partition of every topic (or of the topic asked for),
//! keeping those that have one. The consumers made here never subscribe, so they never join
//! the group they name; they only send it OffsetFetch and OffsetCommit.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::groups::GroupInfo;
use rdkafka::{Offset, TopicPartitionList};

use super::{ClientArgs, REQUEST_TIMEOUT, describe_code, describe_error};

#[derive(Debug, clap::Args)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Groups with their state and protocol, one per line
    List,
    /// State, members and, per partition, committed offset, log end offset and lag
    Describe { group: String },
    /// Plan (and with --execute, commit) new offsets for a group that has no active members
    ResetOffsets {
        group: String,
        /// Topic whose offsets to reset: `name` (every partition) or `name:0,2`
        #[arg(long)]
        topic: String,
        /// New offset: earliest, latest, offset:<n> (kept within the log) or timestamp:<ms>
        /// (the first record at or after it; the log end when there is none)
        #[arg(long)]
        to: Target,
        /// Commit the plan; without it nothing changes (dry run)
        #[arg(long)]
        execute: bool,
    },
}

use super::Position as Target;

pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<ExitCode> {
    super::blocking(move || {
        match &args.action {
            Action::List => list(&args.client)?,
            Action::Describe { group } => describe(&args.client, group)?,
            Action::ResetOffsets {
                group,
                topic,
                to,
                execute,
            } => reset_offsets(&args.client, group, topic, *to, *execute)?,
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// A consumer bound to `group` that never subscribes (so never joins) nor auto-commits.
fn client_for(client: &ClientArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    client
        .config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ])
        .create()
        .context("creating the group client")
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn list(client: &ClientArgs) -> anyhow::Result<()> {
    let consumer = client_for(client, "weft-cli")?;
    let groups = consumer
        .fetch_group_list(None, REQUEST_TIMEOUT)
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let mut rows: Vec<&GroupInfo> = groups.groups().iter().collect();
    rows.sort_by(|a, b| a.name().cmp(b.name()));
    println!("{:<30}  {:<20}  {:<10}  protocol", "group", "state", "type");
    for g in rows {
        println!(
            "{:<30}  {:<20}  {:<10}  {}",
            g.name(),
            or_dash(g.state()),
            or_dash(g.protocol_type()),
            or_dash(g.protocol())
        );
    }
    Ok(())
}

/// What DescribeGroups says about one group, owned.
struct Group {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
}

struct Member {
    id: String,
    client_id: String,
    host: String,
    /// Topic → partitions, decoded from the consumer protocol's assignment.
    assignment: BTreeMap<String, Vec<i32>>,
}

fn group_info(consumer: &BaseConsumer, client: &ClientArgs, group: &str) -> anyhow::Result<Group> {
    let list = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        // Kafka answers an unknown group with state Dead; say the same when nothing came.
        return Ok(Group {
            state: "Dead".to_owned(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        });
    };
    let consumer_protocol = info.protocol_type() == "consumer";
    let members = info
        .members()
        .iter()
        .map(|m| Member {
            id: m.id().to_owned(),
            client_id: m.client_id().to_owned(),
            host: m.client_host().to_owned(),
            assignment: m
                .assignment()
                .filter(|_| consumer_protocol)
                .and_then(decode_assignment)
                .unwrap_or_default(),
        })
        .collect();
    Ok(Group {
        state: info.state().to_owned(),
        protocol_type: info.protocol_type().to_owned(),
        protocol: info.protocol().to_owned(),
        members,
    })
}

/// The consumer protocol's assignment (version, [topic, [partition]], user data); `None`
/// when it does not parse.
fn decode_assignment(bytes: &[u8]) -> Option<BTreeMap<String, Vec<i32>>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_at_checked(N)?;
            self.0 = rest;
            head.try_into().ok()
        }
        fn i16(&mut self) -> Option<i16> {
            self.take().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take().map(i32::from_be_bytes)
        }
        fn string(&mut self) -> Option<String> {
            let len = usize::try_from(self.i16()?).ok()?;
            let (s, rest) = self.0.split_at_checked(len)?;
            self.0 = rest;
            Some(String::from_utf8_lossy(s).into_owned())
        }
    }
    let mut r = Reader(bytes);
    if bytes.is_empty() {
        return Some(BTreeMap::new());
    }
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = BTreeMap::new();
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let count = r.i32()?;
        let mut partitions = Vec::new();
        for _ in 0..count.max(0) {
            partitions.push(r.i32()?);
        }
        partitions.sort_unstable();
        out.insert(topic, partitions);
    }
    Some(out)
}

/// Partitions of `topic` (or of every topic), from metadata.
fn partitions_of(
    consumer: &BaseConsumer,
    client: &ClientArgs,
    topic: Option<&str>,
) -> anyhow::Result<Vec<(String, i32)>> {
    let metadata = consumer
        .fetch_metadata(topic, REQUEST_TIMEOUT)
        .map_err(|e| super::no_answer(e, &client.bootstrap))?;
    let mut out = Vec::new();
    for t in metadata.topics() {
        if topic.is_some_and(|want| want != t.name()) {
            continue;
        }
        if let Some(err) = t.error() {
            if topic.is_some() {
                bail!(
                    "cannot read topic {:?}: {}",
                    t.name(),
                    describe_code(RDKafkaErrorCode::from(err))
                );
            }
            continue;
        }
        out.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
    }
    if let Some(want) = topic
        && out.is_empty()
    {
        bail!("topic {want:?} not found");
    }
    out.sort();
    Ok(out)
}

/// Committed offsets of the group for `partitions`; partitions without one are left out.
fn committed(
    consumer: &BaseConsumer,
    group: &str,
    partitions: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in partitions {
        tpl.add_partition(topic, *p);
    }
    let tpl = consumer
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot fetch the committed offsets of group {group:?}: {}",
                describe_error(&e)
            )
        })?;
    let mut out = BTreeMap::new();
    for e in tpl.elements() {
        if let Offset::Offset(n) = e.offset() {
            out.insert((e.topic().to_owned(), e.partition()), n);
        }
    }
    Ok(out)
}

fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
    consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the watermarks of {topic}/{partition}: {}",
                describe_error(&e)
            )
        })
}

fn describe(client: &ClientArgs, group: &str) -> anyhow::Result<()> {
    let consumer = client_for(client, group)?;
    let info = group_info(&consumer, client, group)?;
    let all = partitions_of(&consumer, client, None)?;
    let offsets = committed(&consumer, group, &all)?;
    if info.state == "Dead" && info.members.is_empty() && offsets.is_empty() {
        bail!("consumer group {group:?} does not exist");
    }

    // Partition → owning member: assigned partitions show even before their first commit.
    let mut owners: BTreeMap<(String, i32), &Member> = BTreeMap::new();
    for m in &info.members {
        for (topic, partitions) in &m.assignment {
            for p in partitions {
                owners.insert((topic.clone(), *p), m);
            }
        }
    }
    let mut keys: Vec<(String, i32)> = offsets.keys().chain(owners.keys()).cloned().collect();
    keys.sort();
    keys.dedup();

    println!("group: {group}");
    println!("state: {}", info.state);
    println!(
        "protocol: {}/{}",
        or_dash(&info.protocol_type),
        or_dash(&info.protocol)
    );
    println!("members: {}", info.members.len());
    for m in &info.members {
        let assigned = m
            .assignment
            .iter()
            .map(|(t, ps)| {
                let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                format!("{t}:{}", ps.join(","))
            })
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "  {} client-id={} host={} assignment=[{assigned}]",
            m.id,
            or_dash(&m.client_id),
            or_dash(&m.host)
        );
    }
    println!(
        "{:<24}  {:>9}  {:>12}  {:>12}  {:>8}  member",
        "topic", "partition", "committed", "log-end", "lag"
    );
    for key in &keys {
        let (topic, p) = key;
        let (_, high) = watermarks(&consumer, topic, *p)?;
        let current = offsets.get(key).copied();
        let lag = current.map_or_else(|| "-".to_owned(), |c| (high - c).max(0).to_string());
        let current = current.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let member = owners.get(key).map_or("-", |m| m.id.as_str());
        println!("{topic:<24}  {p:>9}  {current:>12}  {high:>12}  {lag:>8}  {member}");
    }
    Ok(())
}

/// `name` or `name:0,2`.
fn parse_topic(s: &str) -> anyhow::Result<(&str, Option<Vec<i32>>)> {
    match s.split_once(':') {
        None => Ok((s, None)),
        Some((name, list)) => {
            let partitions = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .with_context(|| format!("bad partition {p:?} in --topic {s:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((name, Some(partitions)))
        }
    }
}

fn reset_offsets(
    client: &ClientArgs,
    group: &str,
    topic: &str,
    to: Target,
    execute: bool,
) -> anyhow::Result<()> {
    let (topic, only) = parse_topic(topic)?;
    let consumer = client_for(client, group)?;
    let info = group_info(&consumer, client, group)?;
    // Kafka's tool resets only an inactive group: committing under an active generation
    // would be overwritten by (or fence) the members.
    let active = !info.members.is_empty() || !matches!(info.state.as_str(), "Empty" | "Dead");
    if execute && active {
        bail!(
            "offsets can only be reset while group {group:?} is inactive, but its state is {} \
             with {} member(s); stop its consumers first",
            info.state,
            info.members.len()
        );
    }
    let mut partitions = partitions_of(&consumer, client, Some(topic))?;
    if let Some(only) = &only {
        for p in only {
            if !partitions.iter().any(|(_, q)| q == p) {
                bail!("topic {topic:?} has no partition {p}");
            }
        }
        partitions.retain(|(_, p)| only.contains(p));
    }
    let current = committed(&consumer, group, &partitions)?;

    let mut by_time = BTreeMap::new();
    if let Target::Timestamp(ms) = to {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &partitions {
            tpl.add_partition_offset(t, *p, Offset::Offset(ms))
                .map_err(|e| anyhow::anyhow!("bad partition {p}: {}", describe_error(&e)))?;
        }
        let found = consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| {
                anyhow::anyhow!("cannot look offsets up by time: {}", describe_error(&e))
            })?;
        for e in found.elements() {
            by_time.insert(e.partition(), e.offset());
        }
    }

    let mut plan = TopicPartitionList::new();
    println!(
        "{:<24}  {:>9}  {:>12}  {:>12}",
        "topic", "partition", "committed", "new"
    );
    for key in &partitions {
        let (t, p) = key;
        let (low, high) = watermarks(&consumer, t, *p)?;
        let new = match to {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Offset(n) => n.clamp(low, high),
            // No record that late: the log end, as Kafka's tool does.
            Target::Timestamp(_) => match by_time.get(p) {
                Some(Offset::Offset(n)) => *n,
                _ => high,
            },
        };
        let old = current
            .get(key)
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        println!("{t:<24}  {p:>9}  {old:>12}  {new:>12}");
        plan.add_partition_offset(t, *p, Offset::Offset(new))
            .map_err(|e| anyhow::anyhow!("bad partition {p}: {}", describe_error(&e)))?;
    }

    if !execute {
        if active {
            eprintln!(
                "note: group {group:?} is {} with {} member(s); --execute would be refused",
                info.state,
                info.members.len()
            );
        }
        eprintln!("dry run: nothing committed; add --execute to commit these offsets");
        return Ok(());
    }
    consumer.commit(&plan, CommitMode::Sync).map_err(|e| {
        anyhow::anyhow!(
            "cannot commit offsets for group {group:?}: {}",
            describe_error(&e)
        )
    })?;
    eprintln!(
        "committed {} offset(s) for group {group:?} on topic {topic:?}",
        plan.count()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let cases = [
            ("earliest", Ok(Target::Earliest)),
            ("latest", Ok(Target::Latest)),
            ("offset:7", Ok(Target::Offset(7))),
            (
                "timestamp:1700000000000",
                Ok(Target::Timestamp(1_700_000_000_000)),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Target>(), expected, "{input}");
        }
        assert!("offset:x".parse::<Target>().is_err());
        assert!("yesterday".parse::<Target>().is_err());
    }

    #[test]
    fn assignments_decode() {
        // version 3, topics [("ab", [1, 0])], empty user data.
        let mut bytes = vec![0, 3, 0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 2];
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        let expected = BTreeMap::from([("ab".to_owned(), vec![0, 1])]);
        assert_eq!(decode_assignment(&bytes), Some(expected));
        assert_eq!(decode_assignment(&[]), Some(BTreeMap::new()));
        assert_eq!(decode_assignment(&[0, 3, 0, 0, 0, 1, 0]), None);
    }

    #[test]
    fn topic_arguments() {
        assert_eq!(parse_topic("t").ok(), Some(("t", None)));
        assert_eq!(parse_topic("t:0,2").ok(), Some(("t", Some(vec![0, 2]))));
        assert!(parse_topic("t:x").is_err());
    }
}
