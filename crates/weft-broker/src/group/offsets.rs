//! Committed offsets and group metadata, kept as records of the internal compacted topic
//! `__consumer_offsets` (one partition), as Kafka does.
//!
//! Every change is a record whose key names what it is about; the latest record of a key
//! wins and a tombstone (null value) removes it, so compaction keeps the topic at one
//! record per live key. On start the whole partition is read into memory
//! ([`Offsets::open`]); a commit appends one batch and forces it to stable storage before
//! memory changes and the commit is answered, so an acknowledged commit survives a crash.
//!
//! # Record format (version 1, big-endian; `str` = u16 length + UTF-8 bytes)
//!
//! Key:
//! - `u16 version = 1`, `u8 kind`, then
//!   - kind 0, committed offset: `str group`, `str topic`, `i32 partition`;
//!   - kind 1, group metadata: `str group`;
//!   - kind 2, classic group membership: `str group`;
//!   - kind 3, consumer (KIP-848) group: `str group`;
//!   - kind 4, consumer group member: `str group`, `str member id`.
//!
//! Value (absent for a tombstone):
//! - `u16 version = 1`, then
//!   - kind 0: `i64 offset`, `i32 leader epoch`, `i64 commit time ms`, `u32 length` +
//!     UTF-8 metadata;
//!   - kind 1: `str protocol type` (`classic`, `consumer`, or empty for groups known only
//!     by commits from outside a group), `i64 time ms written`;
//!   - kinds 2–4: see [`state`] (`put_classic`, `put_consumer_group`,
//!     `put_consumer_member`).
//!
//! # Group membership
//! Kinds 2–4 let a restarted coordinator resume its groups as they were (Kafka's
//! GroupMetadata and consumer-group records): a classic group is written when it becomes
//! Stable (members, generation, leader, protocol, assignments) or Empty; a consumer group
//! as its epochs, assignor and resolved topics, plus one record per member (subscription,
//! epochs, current and target assignment). The group ticker writes what changed (compared
//! with what was last written) a few times a second, in one batch: a crash loses at most
//! the changes of that interval, whose members are then fenced and rejoin (as without
//! these records). A removed member or group gets a tombstone. Session timers start again
//! from the load.
//!
//! A key or value of an unknown version stops the broker rather than being skipped: a
//! newer Weft wrote it and dropping it would lose commits. Golden bytes are in the tests.
//!
//! # Migration
//! Before this topic, offsets lived in the state file `offsets.v1` (text, see
//! [`read_v1_file`]). At start, if that file exists, its offsets are written to the topic
//! (durably), then the file is renamed to `offsets.v1.migrated`. A crash in between repeats
//! the migration, which rewrites the same values (nothing is served before it completes).
//!
//! # Expiry
//! Offsets of a group with no members expire `offsets.retention.minutes` after both the
//! group was last seen with members (or the broker started) and their commit, whichever is
//! later ([`Offsets::expire_group`], driven by the group ticker); they are tombstoned.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use weft_log::Partition;
use weft_log::batch::{self, BuildOptions, Record};

use crate::error::{Error, Result};
use crate::store::read_state_file;
use crate::topics::Topics;

/// The internal topic.
pub(crate) const TOPIC: &str = "__consumer_offsets";

/// `offset.metadata.max.bytes`.
pub(crate) const MAX_METADATA_BYTES: usize = 4096;

const KEY_VERSION: u16 = 1;
const VALUE_VERSION: u16 = 1;
const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;
const KIND_CLASSIC: u8 = 2;
const KIND_CONSUMER_GROUP: u8 = 3;
const KIND_CONSUMER_MEMBER: u8 = 4;

pub(crate) mod state;

use self::state::{ClassicGroup, ConsumerGroup, ConsumerMember, GroupImage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_ms: i64,
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

/// One decoded record of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<Committed>,
    },
    Group {
        group: String,
        /// (protocol type, written ms)
        value: Option<(String, i64)>,
    },
    Classic {
        group: String,
        value: Option<ClassicGroup>,
    },
    ConsumerGroup {
        group: String,
        value: Option<ConsumerGroup>,
    },
    ConsumerMember {
        group: String,
        member: String,
        value: Option<ConsumerMember>,
    },
}

fn put_str(b: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u16::try_from(s.len()).map_err(|_| Error::Corrupt {
        path: TOPIC.into(),
        reason: format!("a name of {} bytes does not fit a record key", s.len()),
    })?;
    b.put_u16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn encode(e: &Entry) -> Result<(Bytes, Option<Bytes>)> {
    let mut k = Vec::new();
    k.put_u16(KEY_VERSION);
    let mut v = Vec::new();
    v.put_u16(VALUE_VERSION);
    let has_value = match e {
        Entry::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            k.put_u8(KIND_OFFSET);
            put_str(&mut k, group)?;
            put_str(&mut k, topic)?;
            k.put_i32(*partition);
            if let Some(c) = value {
                v.put_i64(c.offset);
                v.put_i32(c.leader_epoch);
                v.put_i64(c.commit_ms);
                v.put_u32(c.metadata.len() as u32);
                v.put_slice(c.metadata.as_bytes());
            }
            value.is_some()
        }
        Entry::Group { group, value } => {
            k.put_u8(KIND_GROUP);
            put_str(&mut k, group)?;
            if let Some((ptype, ms)) = value {
                put_str(&mut v, ptype)?;
                v.put_i64(*ms);
            }
            value.is_some()
        }
        Entry::Classic { group, value } => {
            k.put_u8(KIND_CLASSIC);
            put_str(&mut k, group)?;
            if let Some(g) = value {
                state::put_classic(&mut v, g).map_err(corrupt)?;
            }
            value.is_some()
        }
        Entry::ConsumerGroup { group, value } => {
            k.put_u8(KIND_CONSUMER_GROUP);
            put_str(&mut k, group)?;
            if let Some(g) = value {
                state::put_consumer_group(&mut v, g).map_err(corrupt)?;
            }
            value.is_some()
        }
        Entry::ConsumerMember {
            group,
            member,
            value,
        } => {
            k.put_u8(KIND_CONSUMER_MEMBER);
            put_str(&mut k, group)?;
            put_str(&mut k, member)?;
            if let Some(m) = value {
                state::put_consumer_member(&mut v, m).map_err(corrupt)?;
            }
            value.is_some()
        }
    };
    Ok((Bytes::from(k), has_value.then(|| Bytes::from(v))))
}

fn corrupt(reason: String) -> Error {
    Error::Corrupt {
        path: TOPIC.into(),
        reason,
    }
}

/// Why a record did not decode (the caller adds where it was).
type DecodeError = String;

use self::state::get_str;

fn need(b: &[u8], n: usize) -> Result<(), DecodeError> {
    if b.remaining() < n {
        return Err("truncated record".into());
    }
    Ok(())
}

fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Entry, DecodeError> {
    let mut k = key;
    need(k, 3)?;
    let kv = k.get_u16();
    if kv != KEY_VERSION {
        return Err(format!("unsupported key version {kv}"));
    }
    let kind = k.get_u8();
    let mut v = value;
    if let Some(v) = v.as_mut() {
        need(v, 2)?;
        let vv = v.get_u16();
        if vv != VALUE_VERSION {
            return Err(format!("unsupported value version {vv}"));
        }
    }
    let entry = match kind {
        KIND_OFFSET => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            need(k, 4)?;
            let partition = k.get_i32();
            let value = match v.as_mut() {
                None => None,
                Some(v) => {
                    need(v, 8 + 4 + 8 + 4)?;
                    let offset = v.get_i64();
                    let leader_epoch = v.get_i32();
                    let commit_ms = v.get_i64();
                    let len = v.get_u32() as usize;
                    need(v, len)?;
                    let metadata = std::str::from_utf8(&v[..len])
                        .map_err(|_| "metadata is not UTF-8".to_owned())?
                        .to_owned();
                    v.advance(len);
                    Some(Committed {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_ms,
                    })
                }
            };
            Entry::Offset {
                group,
                topic,
                partition,
                value,
            }
        }
        KIND_GROUP => {
            let group = get_str(&mut k)?;
            let value = match v.as_mut() {
                None => None,
                Some(v) => {
                    let ptype = get_str(v)?;
                    need(v, 8)?;
                    Some((ptype, v.get_i64()))
                }
            };
            Entry::Group { group, value }
        }
        KIND_CLASSIC => {
            let group = get_str(&mut k)?;
            let value = v.as_mut().map(state::get_classic).transpose()?;
            Entry::Classic { group, value }
        }
        KIND_CONSUMER_GROUP => {
            let group = get_str(&mut k)?;
            let value = v.as_mut().map(state::get_consumer_group).transpose()?;
            Entry::ConsumerGroup { group, value }
        }
        KIND_CONSUMER_MEMBER => {
            let group = get_str(&mut k)?;
            let member = get_str(&mut k)?;
            let value = v.as_mut().map(state::get_consumer_member).transpose()?;
            Entry::ConsumerMember {
                group,
                member,
                value,
            }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    Ok(entry)
}

/// Partition 0 of [`TOPIC`], created (compacted, one partition) when missing.
pub(crate) fn internal_partition(topics: &Topics) -> Result<Arc<Partition>> {
    let topic = match topics.get(TOPIC) {
        Some(t) => t,
        None => {
            let configs = BTreeMap::from([
                ("cleanup.policy".to_owned(), "compact".to_owned()),
                ("weft.durability".to_owned(), "batch".to_owned()),
            ]);
            let t = topics
                .create(TOPIC, 1, configs, false)
                .map_err(|r| Error::Corrupt {
                    path: TOPIC.into(),
                    reason: format!("creating the internal topic failed: {}", r.message),
                })?;
            tracing::info!(topic = TOPIC, "internal topic created");
            t
        }
    };
    topic
        .partitions
        .first()
        .map(|p| Arc::clone(&p.log))
        .ok_or_else(|| Error::Corrupt {
            path: TOPIC.into(),
            reason: "the internal topic has no partition".into(),
        })
}

pub(crate) struct Offsets {
    log: Arc<Partition>,
    groups: BTreeMap<String, GroupOffsets>,
    /// Group metadata: protocol type and when it was written.
    meta: BTreeMap<String, (String, i64)>,
    /// Groups seen without members since (ms); expiry counts from here.
    empty_since: HashMap<String, i64>,
    /// Membership of classic groups as last written.
    classic: BTreeMap<String, ClassicGroup>,
    /// Consumer groups as last written (a member record may precede its group's).
    consumer: BTreeMap<String, (Option<ConsumerGroup>, BTreeMap<String, ConsumerMember>)>,
}

impl Offsets {
    /// Loads the offsets from `log` (partition 0 of [`TOPIC`]), migrating `offsets.v1`
    /// from `state_dir` first if it is there.
    pub(crate) fn open(state_dir: &Path, log: Arc<Partition>) -> Result<Offsets> {
        let mut o = Offsets {
            log,
            groups: BTreeMap::new(),
            meta: BTreeMap::new(),
            empty_since: HashMap::new(),
            classic: BTreeMap::new(),
            consumer: BTreeMap::new(),
        };
        o.load()?;
        let v1 = state_dir.join("offsets.v1");
        if let Some(old) = read_v1_file(&v1)? {
            let n: usize = old.values().map(BTreeMap::len).sum();
            for (group, offsets) in old {
                let commits: Vec<_> = offsets.into_iter().collect();
                o.commit(&group, commits)?;
            }
            let done = state_dir.join("offsets.v1.migrated");
            std::fs::rename(&v1, &done).map_err(|source| Error::Io {
                path: v1.clone(),
                source,
            })?;
            crate::store::sync_dir(state_dir)?;
            tracing::info!(offsets = n, "migrated offsets.v1 into __consumer_offsets");
        }
        Ok(o)
    }

    fn load(&mut self) -> Result<()> {
        let mut at = self.log.log_start_offset();
        let end = self.log.log_end_offset();
        while at < end {
            let bytes = self.log.read_bytes(at, 1 << 20)?;
            if bytes.is_empty() {
                break;
            }
            let mut pos = 0;
            while pos < bytes.len() {
                let h = batch::BatchHeader::parse(&bytes[pos..]).map_err(weft_log::Error::from)?;
                let whole = &bytes[pos..pos + h.total_len()];
                for r in batch::records(whole).map_err(weft_log::Error::from)? {
                    let Some(key) = &r.key else {
                        continue;
                    };
                    let entry =
                        decode(key, r.value.as_deref()).map_err(|reason| Error::Corrupt {
                            path: self.log.dir().to_path_buf(),
                            reason: format!("record at offset {}: {reason}", r.offset),
                        })?;
                    self.apply(entry);
                }
                at = h.next_offset();
                pos += h.total_len();
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: Entry) {
        match e {
            Entry::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(c) => {
                    self.groups
                        .entry(group)
                        .or_default()
                        .insert((topic, partition), c);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.remove(&(topic, partition));
                        if g.is_empty() {
                            self.groups.remove(&group);
                        }
                    }
                }
            },
            Entry::Group { group, value } => match value {
                Some(v) => {
                    self.meta.insert(group, v);
                }
                None => {
                    self.meta.remove(&group);
                }
            },
            Entry::Classic { group, value } => match value {
                Some(g) => {
                    self.classic.insert(group, g);
                }
                None => {
                    self.classic.remove(&group);
                }
            },
            Entry::ConsumerGroup { group, value } => {
                let e = self.consumer.entry(group.clone()).or_default();
                e.0 = value;
                if e.0.is_none() && e.1.is_empty() {
                    self.consumer.remove(&group);
                }
            }
            Entry::ConsumerMember {
                group,
                member,
                value,
            } => {
                let e = self.consumer.entry(group.clone()).or_default();
                match value {
                    Some(m) => {
                        e.1.insert(member, m);
                    }
                    None => {
                        e.1.remove(&member);
                    }
                }
                if e.0.is_none() && e.1.is_empty() {
                    self.consumer.remove(&group);
                }
            }
        }
    }

    /// Classic groups as loaded (or last written).
    pub(crate) fn classic_groups(&self) -> impl Iterator<Item = (&str, &ClassicGroup)> {
        self.classic.iter().map(|(g, c)| (g.as_str(), c))
    }

    /// Consumer groups as loaded (or last written); members without a group record are
    /// left out (not written that way; a torn write cannot split a batch).
    pub(crate) fn consumer_groups(
        &self,
    ) -> impl Iterator<Item = (&str, &ConsumerGroup, &BTreeMap<String, ConsumerMember>)> {
        self.consumer
            .iter()
            .filter_map(|(g, (group, members))| Some((g.as_str(), group.as_ref()?, members)))
    }

    /// Makes `images` (group id to what the coordinator holds) durable: the records that
    /// differ from what was last written, tombstones for what is gone, one batch. Returns
    /// how many records were written.
    pub(crate) fn store_groups(&mut self, images: Vec<(String, GroupImage)>) -> Result<usize> {
        let mut entries = Vec::new();
        for (group, image) in images {
            if !image.classic_unchanged {
                let before = self.classic.get(&group);
                if before != image.classic.as_ref() {
                    entries.push(Entry::Classic {
                        group: group.clone(),
                        value: image.classic,
                    });
                }
            }
            let empty = BTreeMap::new();
            let (before_group, before_members) = match self.consumer.get(&group) {
                Some((g, m)) => (g.as_ref(), m),
                None => (None, &empty),
            };
            let (now_group, now_members): (Option<ConsumerGroup>, BTreeMap<_, _>) =
                match image.consumer {
                    Some((g, m)) => (Some(g), m),
                    None => (None, BTreeMap::new()),
                };
            // Members gone first, group last when it goes; a new group's record first.
            for member in before_members.keys() {
                if !now_members.contains_key(member) {
                    entries.push(Entry::ConsumerMember {
                        group: group.clone(),
                        member: member.clone(),
                        value: None,
                    });
                }
            }
            let group_changed = before_group != now_group.as_ref();
            if group_changed && now_group.is_some() {
                entries.push(Entry::ConsumerGroup {
                    group: group.clone(),
                    value: now_group.clone(),
                });
            }
            for (member, m) in now_members {
                if before_members.get(&member) != Some(&m) {
                    entries.push(Entry::ConsumerMember {
                        group: group.clone(),
                        member,
                        value: Some(m),
                    });
                }
            }
            if group_changed && now_group.is_none() {
                entries.push(Entry::ConsumerGroup {
                    group: group.clone(),
                    value: None,
                });
            }
        }
        let n = entries.len();
        self.write(entries)?;
        Ok(n)
    }

    /// Appends `entries` as one batch and forces it to stable storage; memory changes only
    /// after that, so a failed write leaves both as they were.
    fn write(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = crate::server::now_ms();
        let mut records = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let (key, value) = encode(e)?;
            records.push(Record {
                offset: i as u64,
                timestamp: now,
                key: Some(key),
                value,
                headers: Vec::new(),
            });
        }
        let mut b =
            batch::build(BuildOptions::default(), &records).map_err(weft_log::Error::from)?;
        self.log.append(&mut b)?;
        self.log.flush()?;
        for e in entries {
            self.apply(e);
        }
        Ok(())
    }

    /// Stores `commits` of `group` durably.
    pub(crate) fn commit(
        &mut self,
        group: &str,
        commits: impl IntoIterator<Item = ((String, i32), Committed)>,
    ) -> Result<()> {
        let entries = commits
            .into_iter()
            .map(|((topic, partition), c)| Entry::Offset {
                group: group.to_owned(),
                topic,
                partition,
                value: Some(c),
            })
            .collect();
        self.write(entries)
    }

    /// Records that `group` exists with `protocol_type` (written only when it changes).
    pub(crate) fn note_group(&mut self, group: &str, protocol_type: &str, now: i64) -> Result<()> {
        if self
            .meta
            .get(group)
            .is_some_and(|(p, _)| p == protocol_type)
        {
            return Ok(());
        }
        self.write(vec![Entry::Group {
            group: group.to_owned(),
            value: Some((protocol_type.to_owned(), now)),
        }])
    }

    /// The protocol type recorded for `group`.
    pub(crate) fn protocol_type(&self, group: &str) -> Option<&str> {
        self.meta.get(group).map(|(p, _)| p.as_str())
    }

    /// Forgets committed offsets of `group` durably (tombstones): the given partitions, or
    /// all of them and the group's metadata (`None`, DeleteGroups).
    pub(crate) fn delete(
        &mut self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<()> {
        let Some(offsets) = self.groups.get(group) else {
            if partitions.is_none() && self.meta.contains_key(group) {
                return self.write(vec![Entry::Group {
                    group: group.to_owned(),
                    value: None,
                }]);
            }
            return Ok(());
        };
        let doomed: Vec<(String, i32)> = match partitions {
            None => offsets.keys().cloned().collect(),
            Some(ps) => ps
                .iter()
                .filter(|tp| offsets.contains_key(*tp))
                .cloned()
                .collect(),
        };
        let mut entries: Vec<Entry> = doomed
            .into_iter()
            .map(|(topic, partition)| Entry::Offset {
                group: group.to_owned(),
                topic,
                partition,
                value: None,
            })
            .collect();
        if partitions.is_none() && self.meta.contains_key(group) {
            entries.push(Entry::Group {
                group: group.to_owned(),
                value: None,
            });
        }
        self.write(entries)
    }

    /// Expiry of one group's offsets (see the module docs): `has_members` is whether the
    /// group has members now. Returns how many offsets were tombstoned.
    pub(crate) fn expire_group(
        &mut self,
        group: &str,
        now: i64,
        retention_ms: i64,
        has_members: bool,
    ) -> Result<usize> {
        if has_members {
            self.empty_since.insert(group.to_owned(), i64::MAX);
            return Ok(0);
        }
        let since = self.empty_since.entry(group.to_owned()).or_insert(now);
        if *since == i64::MAX {
            *since = now;
        }
        let since = *since;
        let Some(offsets) = self.groups.get(group) else {
            return Ok(0);
        };
        let expired: Vec<(String, i32)> = offsets
            .iter()
            .filter(|(_, c)| now >= since.max(c.commit_ms).saturating_add(retention_ms))
            .map(|(tp, _)| tp.clone())
            .collect();
        let n = expired.len();
        if n == 0 {
            return Ok(0);
        }
        let all = n == offsets.len();
        self.delete(group, Some(&expired))?;
        if all {
            self.empty_since.remove(group);
            if self.meta.contains_key(group) {
                self.write(vec![Entry::Group {
                    group: group.to_owned(),
                    value: None,
                }])?;
            }
        }
        Ok(n)
    }

    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub(crate) fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.groups.get(group)?.get(&(topic.to_owned(), partition))
    }

    /// Every committed offset of `group`, ordered by topic and partition.
    pub(crate) fn all(&self, group: &str) -> Vec<(&str, i32, &Committed)> {
        self.groups
            .get(group)
            .map(|g| g.iter().map(|((t, p), c)| (t.as_str(), *p, c)).collect())
            .unwrap_or_default()
    }

    /// Groups with committed offsets.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

/// Reads the legacy `offsets.v1` state file (`None` when absent). Format (version 1), after
/// the `weft-broker offsets 1` header, one line per partition:
/// `<group> <topic> <partition> <offset> <leader epoch> <commit time ms> <metadata>`, where
/// group, topic and metadata are lowercase hex of their UTF-8 bytes (metadata `-` when
/// empty), then `end`.
pub(crate) fn read_v1_file(path: &Path) -> Result<Option<BTreeMap<String, GroupOffsets>>> {
    let Some(lines) = read_state_file(path, "offsets", 1)? else {
        return Ok(None);
    };
    let mut groups: BTreeMap<String, GroupOffsets> = BTreeMap::new();
    for (n, line) in lines.iter().enumerate() {
        let corrupt = || Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("bad offset line {}", n + 2),
        };
        let f: Vec<&str> = line.split(' ').collect();
        let [g, t, p, o, e, ts, m] = f.as_slice() else {
            return Err(corrupt());
        };
        let group = unhex(g).ok_or_else(corrupt)?;
        let topic = unhex(t).ok_or_else(corrupt)?;
        let c = Committed {
            offset: o.parse().map_err(|_| corrupt())?,
            leader_epoch: e.parse().map_err(|_| corrupt())?,
            commit_ms: ts.parse().map_err(|_| corrupt())?,
            metadata: unhex(m).ok_or_else(corrupt)?,
        };
        let partition = p.parse().map_err(|_| corrupt())?;
        groups
            .entry(group)
            .or_default()
            .insert((topic, partition), c);
    }
    Ok(Some(groups))
}

fn unhex(s: &str) -> Option<String> {
    if s == "-" {
        return Some(String::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
pub(crate) mod tests;
