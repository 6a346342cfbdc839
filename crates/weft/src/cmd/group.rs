//! `weft group list|describe|delete|reset-offsets`: consumer groups through librdkafka
//! (ListGroups + DescribeGroups, OffsetFetch, ListOffsets, Fetch, OffsetCommit,
//! DeleteGroups), so they work against any Kafka-protocol cluster.
//!
//! The rdkafka crate has no "list the offsets of a group" call, so the committed offsets are
//! looked up with OffsetFetch for every partition of every topic (or of the topics asked
//! for), keeping those that have one. The consumers made here never subscribe, so they never
//! join the group they name; they only send it OffsetFetch and OffsetCommit.
//!
//! `describe` is one-shot: committed offset, log end, lag in records and in seconds (the age
//! of the record at the committed offset, read with one small fetch per lagging partition).
//! The OK/WARN/STALL/STOP status needs a window of samples, which only a running server's
//! lag monitor has: `--http <addr>` asks it (`GET /v1/groups/{id}`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
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
    /// State, members and, per partition, committed offset, log end offset, lag in records
    /// and in seconds; with --http, also the lag status from a running server
    Describe {
        group: String,
        /// HTTP address of a running `weft serve` (e.g. 127.0.0.1:8080): adds the OK, WARN,
        /// STALL or STOP status its lag monitor computed over its window of samples
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Delete groups that have no active members (with their committed offsets)
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Plan (and with --execute, commit) new offsets for a group that has no active members
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
    #[command(group(clap::ArgGroup::new("scope").required(true).multiple(false)))]
    ResetOffsets {
        group: String,
        /// Topic to reset: `name` (every partition) or `name:0,2` (repeatable)
        #[arg(long, group = "scope")]
        topic: Vec<String>,
        /// Every topic the group has committed offsets for
        #[arg(long, group = "scope")]
        all_topics: bool,
        /// The log start offset of each partition
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// The log end offset of each partition
        #[arg(long, group = "target")]
        to_latest: bool,
        /// The first record at or after this time (RFC 3339, or YYYY-MM-DDTHH:mm:SS[.sss]
        /// in UTC); the log end where there is none
        #[arg(long, group = "target", value_name = "DATETIME", value_parser = parse_datetime)]
        to_datetime: Option<i64>,
        /// This offset, kept within the log
        #[arg(long, group = "target", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// The committed offset moved by ±n, kept within the log
        #[arg(
            long,
            group = "target",
            value_name = "N",
            allow_negative_numbers = true
        )]
        shift_by: Option<i64>,
        /// Same as the flags above, as one position: earliest, latest, offset:<n>,
        /// timestamp:<ms>
        #[arg(long, group = "target", hide = true)]
        to: Option<super::Position>,
        /// Commit the plan; without it nothing changes (dry run)
        #[arg(long)]
        execute: bool,
    },
}

/// Where `reset-offsets` moves each partition.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Earliest,
    Latest,
    /// First record at or after this time (ms since the epoch).
    Time(i64),
    Offset(i64),
    Shift(i64),
}

pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::List => {
            super::blocking(move || list(&args.client).map(|()| ExitCode::SUCCESS)).await
        }
        Action::Describe { group, http } => {
            super::blocking(move || {
                describe(&args.client, &group, http.as_deref()).map(|()| ExitCode::SUCCESS)
            })
            .await
        }
        Action::Delete { groups } => delete(&args.client, groups).await,
        Action::ResetOffsets {
            group,
            topic,
            all_topics,
            to_earliest,
            to_latest,
            to_datetime,
            to_offset,
            shift_by,
            to,
            execute,
        } => {
            let target = match (to_earliest, to_latest, to_datetime, to_offset, shift_by, to) {
                (true, ..) => Target::Earliest,
                (_, true, ..) => Target::Latest,
                (_, _, Some(ms), ..) => Target::Time(ms),
                (_, _, _, Some(n), ..) => Target::Offset(n),
                (_, _, _, _, Some(n), _) => Target::Shift(n),
                (.., Some(p)) => match p {
                    super::Position::Earliest => Target::Earliest,
                    super::Position::Latest => Target::Latest,
                    super::Position::Offset(n) => Target::Offset(n),
                    super::Position::Timestamp(ms) => Target::Time(ms),
                },
                // clap requires exactly one of the group.
                _ => bail!(
                    "give one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by"
                ),
            };
            let scope = if all_topics {
                None
            } else {
                Some(
                    topic
                        .iter()
                        .map(|t| parse_topic(t).map(|(n, ps)| (n.to_owned(), ps)))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                )
            };
            super::blocking(move || {
                reset_offsets(&args.client, &group, scope, target, execute)
                    .map(|()| ExitCode::SUCCESS)
            })
            .await
        }
    }
}

/// A consumer bound to `group` that never subscribes (so never joins) nor auto-commits.
fn client_for(client: &ClientArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    client
        .config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // Log end offsets as Kafka's tools show them: the high watermark.
            ("isolation.level", "read_uncommitted"),
            ("auto.offset.reset", "earliest"),
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

impl Group {
    /// Kafka's tools change a group only when it is Empty (or Dead: unknown).
    fn active(&self) -> bool {
        !self.members.is_empty() || !matches!(self.state.as_str(), "Empty" | "Dead")
    }
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Lag in seconds as the table shows it.
fn seconds(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

fn describe(client: &ClientArgs, group: &str, http: Option<&str>) -> anyhow::Result<()> {
    let consumer = client_for(client, group)?;
    let info = group_info(&consumer, client, group)?;
    let all = partitions_of(&consumer, client, None)?;
    let offsets = committed(&consumer, group, &all)?;
    if info.state == "Dead" && info.members.is_empty() && offsets.is_empty() {
        bail!("consumer group {group:?} does not exist");
    }
    let server = match http {
        Some(addr) => Some(server_view(addr, group)?),
        None => None,
    };

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
    let mut ends = BTreeMap::new();
    for key in &keys {
        let (_, high) = watermarks(&consumer, &key.0, key.1)?;
        ends.insert(key.clone(), high);
    }
    // The oldest unconsumed record of each lagging partition, read by a consumer that only
    // assigns, under a group id of its own so nothing is ever done in the group's name.
    let lagging: BTreeMap<(String, i32), i64> = offsets
        .iter()
        .filter(|(k, c)| ends.get(*k).is_some_and(|end| end > *c))
        .map(|(k, c)| (k.clone(), *c))
        .collect();
    let reader = client_for(client, "weft-cli")?;
    let oldest = weft_lag::oldest_unconsumed(&reader, &lagging, Instant::now() + REQUEST_TIMEOUT);
    let now = now_ms();

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
    if let Some(view) = &server {
        println!("status: {}", view.status.as_deref().unwrap_or("-"));
    }
    println!(
        "{:<24}  {:>9}  {:>12}  {:>12}  {:>8}  {:>10}  {:<6}  member",
        "topic", "partition", "committed", "log-end", "lag", "lag-sec", "status"
    );
    for key in &keys {
        let (topic, p) = key;
        let high = ends.get(key).copied().unwrap_or_default();
        let current = offsets.get(key).copied();
        let lag = current.map(|c| (high - c).max(0));
        let lag_sec = match (lag, oldest.get(key)) {
            (Some(0), _) => seconds(0),
            (Some(_), Some(ts)) => seconds((now - ts).max(0)),
            _ => "-".to_owned(),
        };
        let lag = lag.map_or_else(|| "-".to_owned(), |l| l.to_string());
        let current = current.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let status = server
            .as_ref()
            .and_then(|v| v.partitions.get(key))
            .map_or("-", String::as_str);
        let member = owners.get(key).map_or("-", |m| m.id.as_str());
        println!(
            "{topic:<24}  {p:>9}  {current:>12}  {high:>12}  {lag:>8}  {lag_sec:>10}  {status:<6}  {member}"
        );
    }
    Ok(())
}

/// What a running server's lag monitor says about a group.
struct ServerView {
    status: Option<String>,
    partitions: HashMap<(String, i32), String>,
}

fn server_view(addr: &str, group: &str) -> anyhow::Result<ServerView> {
    let path = format!("/v1/groups/{}", percent_encode(group));
    let (code, body) = http_get(addr, &path)?;
    let json: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("the server at {addr} answered {code} with no JSON: {body}"))?;
    if code != 200 {
        // Not seen by the monitor yet (a new group, or a server that just started).
        let message = json["message"].as_str().unwrap_or("no message");
        eprintln!("note: no lag status from {addr}: {message}");
        return Ok(ServerView {
            status: None,
            partitions: HashMap::new(),
        });
    }
    let mut partitions = HashMap::new();
    for p in json["partitions"].as_array().into_iter().flatten() {
        if let (Some(t), Some(n), Some(s)) = (
            p["topic"].as_str(),
            p["partition"].as_i64().and_then(|n| i32::try_from(n).ok()),
            p["status"].as_str(),
        ) {
            partitions.insert((t.to_owned(), n), s.to_owned());
        }
    }
    Ok(ServerView {
        status: json["status"].as_str().map(str::to_owned),
        partitions,
    })
}

/// `GET path` over HTTP/1.0 (one request per connection, no chunked bodies): the status
/// code and body. Enough for the server's own JSON endpoints; not a general client.
fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let host = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let target = host
        .to_socket_addrs()
        .with_context(|| format!("bad --http address {addr:?}"))?
        .next()
        .with_context(|| format!("--http address {addr:?} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to the weft HTTP listener at {addr}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP answer from {addr}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("malformed HTTP status line from {addr}"))?;
    Ok((code, body.to_owned()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn delete(client: &ClientArgs, groups: Vec<String>) -> anyhow::Result<ExitCode> {
    // Refuse up front with the group's state; the broker refuses too (NON_EMPTY_GROUP) if a
    // member joins in between.
    let checked = {
        let client_args = ClientArgs {
            bootstrap: client.bootstrap.clone(),
            properties: client.properties.clone(),
        };
        let groups = groups.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, Group)>> {
            let consumer = client_for(&client_args, "weft-cli")?;
            groups
                .into_iter()
                .map(|g| group_info(&consumer, &client_args, &g).map(|info| (g, info)))
                .collect()
        })
        .await
        .context("group lookup thread panicked")??
    };
    let mut failed = false;
    let mut deletable = Vec::new();
    for (group, info) in &checked {
        if info.active() {
            eprintln!(
                "cannot delete group {group:?}: it has {} active member(s) (state {}); stop its \
                 consumers first",
                info.members.len(),
                info.state
            );
            failed = true;
        } else {
            deletable.push(group.as_str());
        }
    }
    if !deletable.is_empty() {
        let admin: AdminClient<DefaultClientContext> = client
            .config(&[])
            .create()
            .context("creating the admin client")?;
        let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        let results = admin
            .delete_groups(&deletable, &options)
            .await
            .map_err(|e| super::no_answer(e, &client.bootstrap))?;
        for result in results {
            match result {
                Ok(group) => eprintln!("deleted group {group:?}"),
                Err((group, RDKafkaErrorCode::GroupIdNotFound)) => {
                    eprintln!("cannot delete group {group:?}: it does not exist");
                    failed = true;
                }
                Err((group, RDKafkaErrorCode::NonEmptyGroup)) => {
                    eprintln!(
                        "cannot delete group {group:?}: it has active members; stop its \
                         consumers first"
                    );
                    failed = true;
                }
                Err((group, code)) => {
                    eprintln!("cannot delete group {group:?}: {}", describe_code(code));
                    failed = true;
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `name` or `name:0,2`.
fn parse_topic(s: &str) -> anyhow::Result<(&str, Option<Vec<i32>>)> {
    match s.split_once(':') {
        None if !s.is_empty() => Ok((s, None)),
        None => bail!("empty --topic"),
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

/// The new offset of one partition with log start `low` and log end `high`, given its
/// committed offset and (for a time target) the offset ListOffsets found for the time.
fn new_offset(
    target: Target,
    low: i64,
    high: i64,
    current: Option<i64>,
    by_time: Option<i64>,
) -> Result<i64, String> {
    Ok(match target {
        Target::Earliest => low,
        Target::Latest => high,
        Target::Offset(n) => n.clamp(low, high),
        Target::Shift(n) => match current {
            Some(c) => c.saturating_add(n).clamp(low, high),
            None => return Err("has no committed offset to shift".to_owned()),
        },
        // No record that late: the log end, as Kafka's tool does.
        Target::Time(_) => by_time.unwrap_or(high).clamp(low, high),
    })
}

type Scope = Option<Vec<(String, Option<Vec<i32>>)>>;

fn reset_offsets(
    client: &ClientArgs,
    group: &str,
    scope: Scope,
    target: Target,
    execute: bool,
) -> anyhow::Result<()> {
    let consumer = client_for(client, group)?;
    let info = group_info(&consumer, client, group)?;
    // Kafka's tool resets only an inactive group: committing under an active generation
    // would be overwritten by (or fence) the members.
    if info.active() {
        bail!(
            "offsets can only be reset while group {group:?} is inactive, but its state is {} \
             with {} member(s); stop its consumers first",
            info.state,
            info.members.len()
        );
    }
    let mut partitions: Vec<(String, i32)> = Vec::new();
    let current = match scope {
        None => {
            let all = partitions_of(&consumer, client, None)?;
            let current = committed(&consumer, group, &all)?;
            if current.is_empty() {
                bail!("group {group:?} has no committed offsets; name topics with --topic");
            }
            partitions.extend(current.keys().cloned());
            current
        }
        Some(topics) => {
            for (topic, only) in &topics {
                let mut of_topic = partitions_of(&consumer, client, Some(topic))?;
                if let Some(only) = only {
                    for p in only {
                        if !of_topic.iter().any(|(_, q)| q == p) {
                            bail!("topic {topic:?} has no partition {p}");
                        }
                    }
                    of_topic.retain(|(_, p)| only.contains(p));
                }
                partitions.extend(of_topic);
            }
            partitions.sort();
            partitions.dedup();
            committed(&consumer, group, &partitions)?
        }
    };

    let mut by_time = HashMap::new();
    if let Target::Time(ms) = target {
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
            if let Offset::Offset(n) = e.offset() {
                by_time.insert((e.topic().to_owned(), e.partition()), n);
            }
        }
    }

    let mut plan = TopicPartitionList::new();
    let mut rows = Vec::new();
    for key in &partitions {
        let (t, p) = key;
        let (low, high) = watermarks(&consumer, t, *p)?;
        let old = current.get(key).copied();
        let new = new_offset(target, low, high, old, by_time.get(key).copied())
            .map_err(|why| anyhow::anyhow!("cannot reset {t}/{p}: it {why}"))?;
        rows.push((t.clone(), *p, old, new));
        plan.add_partition_offset(t, *p, Offset::Offset(new))
            .map_err(|e| anyhow::anyhow!("bad partition {p}: {}", describe_error(&e)))?;
    }
    println!(
        "{:<24}  {:>9}  {:>12}  {:>12}",
        "topic", "partition", "committed", "new"
    );
    for (t, p, old, new) in &rows {
        let old = old.map_or_else(|| "-".to_owned(), |c| c.to_string());
        println!("{t:<24}  {p:>9}  {old:>12}  {new:>12}");
    }

    if !execute {
        eprintln!("dry run: nothing committed; add --execute to commit these offsets");
        return Ok(());
    }
    consumer.commit(&plan, CommitMode::Sync).map_err(|e| {
        anyhow::anyhow!(
            "cannot commit offsets for group {group:?}: {}",
            describe_error(&e)
        )
    })?;
    let topics: BTreeSet<&str> = rows.iter().map(|(t, ..)| t.as_str()).collect();
    eprintln!(
        "committed {} offset(s) for group {group:?} on {}",
        plan.count(),
        topics.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// `--to-datetime`: RFC 3339 (`2026-11-28T10:00:00Z`, `…+01:00`) or Kafka's
/// `YYYY-MM-DDTHH:mm:SS.sss` without a zone, read as UTC. Milliseconds since the epoch.
fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "expected RFC 3339 (2026-11-28T10:00:00Z, 2026-11-28T10:00:00.000+01:00) or \
             YYYY-MM-DDTHH:mm:SS.sss (UTC), got {s:?}"
        )
    };
    let (date, rest) = s.split_at_checked(10).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let num = |v: &str, len: usize| -> Result<i64, String> {
        if v.len() != len || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        v.parse().map_err(|_| bad())
    };
    let (y, mo, day) = (num(y, 4)?, num(mo, 2)?, num(day, 2)?);
    let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(bad)?;
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let (h, mi, sec) = (num(h, 2)?, num(mi, 2)?, num(sec, 2)?);
    let ms = if fraction.is_empty() {
        0
    } else {
        if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let padded = format!("{fraction:0<3}");
        padded[..3].parse::<i64>().map_err(|_| bad())?
    };
    let offset_min = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let z = &zone[1..];
            let (zh, zm) = match z.split_once(':') {
                Some((zh, zm)) => (num(zh, 2)?, num(zm, 2)?),
                None if z.len() == 4 => (num(&z[..2], 2)?, num(&z[2..], 2)?),
                None => return Err(bad()),
            };
            if zh > 23 || zm > 59 {
                return Err(bad());
            }
            sign * (zh * 60 + zm)
        }
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || day < 1
        || day > month_days[usize::try_from(mo - 1).map_err(|_| bad())?]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, day);
    let seconds = days * 86_400 + h * 3_600 + mi * 60 + sec.min(59) - offset_min * 60;
    Ok(seconds * 1_000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse_topic("").is_err());
    }

    #[test]
    fn datetimes() {
        let cases = [
            ("1970-01-01T00:00:00Z", Ok(0)),
            ("1970-01-01T00:00:00.000", Ok(0)),
            ("2026-11-28T10:00:00Z", Ok(1_795_860_000_000)),
            ("2026-11-28T10:00:00.5Z", Ok(1_795_860_000_500)),
            ("2026-11-28T10:00:00.123456Z", Ok(1_795_860_000_123)),
            ("2026-11-28T11:00:00+01:00", Ok(1_795_860_000_000)),
            ("2026-11-28T09:30:00-0030", Ok(1_795_860_000_000)),
            ("2026-11-28 10:00:00", Ok(1_795_860_000_000)),
            ("2024-02-29T00:00:00Z", Ok(1_709_164_800_000)),
            ("1969-12-31T23:59:59Z", Ok(-1_000)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_datetime(input), expected, "{input}");
        }
        for bad in [
            "",
            "yesterday",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T10:00Z",
            "2026-11-28T10:00:00+1",
            "2026-11-28T10:00:00.x",
            "26-11-28T10:00:00Z",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn new_offsets_stay_within_the_log() {
        // (target, log start, log end, committed, by-time answer, expected)
        let cases = [
            (Target::Earliest, 5, 20, Some(10), None, Ok(5)),
            (Target::Latest, 5, 20, Some(10), None, Ok(20)),
            (Target::Offset(12), 5, 20, None, None, Ok(12)),
            (Target::Offset(99), 5, 20, None, None, Ok(20)),
            (Target::Offset(0), 5, 20, None, None, Ok(5)),
            (Target::Shift(3), 5, 20, Some(10), None, Ok(13)),
            (Target::Shift(-3), 5, 20, Some(10), None, Ok(7)),
            (Target::Shift(-30), 5, 20, Some(10), None, Ok(5)),
            (Target::Shift(30), 5, 20, Some(10), None, Ok(20)),
            (Target::Shift(i64::MAX), 5, 20, Some(10), None, Ok(20)),
            (Target::Time(1), 5, 20, None, Some(8), Ok(8)),
            (Target::Time(1), 5, 20, None, None, Ok(20)),
        ];
        for (target, low, high, current, by_time, expected) in cases {
            assert_eq!(
                new_offset(target, low, high, current, by_time),
                expected,
                "{target:?} {low}..{high} from {current:?}"
            );
        }
        assert!(new_offset(Target::Shift(1), 0, 9, None, None).is_err());
    }

    #[test]
    fn group_ids_are_percent_encoded() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
    }
}
