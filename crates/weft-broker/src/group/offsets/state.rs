//! Group membership records of `__consumer_offsets` (kinds 2–4, see the parent module's
//! format): what a coordinator needs to resume a group after a restart without a
//! rebalance. Plain data, with their binary codec; `group` converts them to and from its
//! state machines.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes};
use uuid::Uuid;

use crate::group::consumer::Assignment;

/// One member of a classic group as last persisted (Stable or Empty groups only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// (name, metadata) in the member's order of preference.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
}

/// A classic group (Kafka's GroupMetadata record): members in order of arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicGroup {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: Vec<ClassicMember>,
}

/// A KIP-848 group's own fields (Kafka's ConsumerGroupMetadata, PartitionMetadata and
/// TargetAssignmentMetadata records in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroup {
    pub(crate) epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) assignor: String,
    /// The subscribed topics as resolved at the last epoch bump: name, id, partitions.
    pub(crate) resolved: Vec<(String, Uuid, i32)>,
}

/// A KIP-848 member (Kafka's ConsumerGroupMemberMetadata, TargetAssignmentMember and
/// CurrentMemberAssignment records in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerMember {
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) topics: Vec<String>,
    pub(crate) regex: Option<String>,
    pub(crate) assignor: Option<String>,
    /// 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub(crate) state: u8,
    pub(crate) epoch: i32,
    pub(crate) previous_epoch: i32,
    pub(crate) assigned: Assignment,
    pub(crate) revoking: Assignment,
    pub(crate) target: Assignment,
}

/// A KIP-848 group with its members by member id.
pub(crate) type ConsumerImage = (ConsumerGroup, BTreeMap<String, ConsumerMember>);

/// What the coordinator holds for one group id, to be made durable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct GroupImage {
    /// `None`: no classic group of this id.
    pub(crate) classic: Option<ClassicGroup>,
    /// The classic group is rebalancing: keep what was persisted (Kafka persists a classic
    /// group when it becomes Stable or Empty).
    pub(crate) classic_unchanged: bool,
    /// `None`: no consumer group of this id.
    pub(crate) consumer: Option<ConsumerImage>,
}

pub(crate) type DecodeError = String;

pub(super) fn put_str(b: &mut Vec<u8>, s: &str) -> Result<(), DecodeError> {
    let len = u16::try_from(s.len())
        .map_err(|_| format!("a name of {} bytes does not fit a record", s.len()))?;
    b.put_u16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str(b: &mut Vec<u8>, s: Option<&str>) -> Result<(), DecodeError> {
    match s {
        None => b.put_u8(0),
        Some(s) => {
            b.put_u8(1);
            put_str(b, s)?;
        }
    }
    Ok(())
}

fn put_bytes(b: &mut Vec<u8>, x: &[u8]) -> Result<(), DecodeError> {
    let len =
        u32::try_from(x.len()).map_err(|_| format!("{} bytes do not fit a record", x.len()))?;
    b.put_u32(len);
    b.put_slice(x);
    Ok(())
}

fn put_count(b: &mut Vec<u8>, n: usize) -> Result<(), DecodeError> {
    b.put_u32(u32::try_from(n).map_err(|_| format!("{n} items do not fit a record"))?);
    Ok(())
}

fn put_assignment(b: &mut Vec<u8>, a: &Assignment) -> Result<(), DecodeError> {
    put_count(b, a.len())?;
    for (topic, ps) in a {
        b.put_slice(topic.as_bytes());
        put_count(b, ps.len())?;
        for p in ps {
            b.put_i32(*p);
        }
    }
    Ok(())
}

pub(super) fn get_str(b: &mut &[u8]) -> Result<String, DecodeError> {
    if b.remaining() < 2 {
        return Err("truncated string length".into());
    }
    let len = usize::from(b.get_u16());
    if b.remaining() < len {
        return Err("truncated string".into());
    }
    let s = std::str::from_utf8(&b[..len]).map_err(|_| "string is not UTF-8".to_owned())?;
    let s = s.to_owned();
    b.advance(len);
    Ok(s)
}

fn need(b: &[u8], n: usize) -> Result<(), DecodeError> {
    if b.remaining() < n {
        return Err("truncated record".into());
    }
    Ok(())
}

fn get_u8(b: &mut &[u8]) -> Result<u8, DecodeError> {
    need(b, 1)?;
    Ok(b.get_u8())
}

fn get_i32(b: &mut &[u8]) -> Result<i32, DecodeError> {
    need(b, 4)?;
    Ok(b.get_i32())
}

fn get_count(b: &mut &[u8]) -> Result<usize, DecodeError> {
    need(b, 4)?;
    let n = b.get_u32() as usize;
    // Every item takes at least one byte: a count past the rest is garbage, not a reason
    // to allocate.
    if n > b.remaining() {
        return Err("count larger than the record".into());
    }
    Ok(n)
}

fn get_opt_str(b: &mut &[u8]) -> Result<Option<String>, DecodeError> {
    match get_u8(b)? {
        0 => Ok(None),
        1 => Ok(Some(get_str(b)?)),
        other => Err(format!("bad optional flag {other}")),
    }
}

fn get_bytes(b: &mut &[u8]) -> Result<Bytes, DecodeError> {
    need(b, 4)?;
    let len = b.get_u32() as usize;
    need(b, len)?;
    let x = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Ok(x)
}

fn get_uuid(b: &mut &[u8]) -> Result<Uuid, DecodeError> {
    need(b, 16)?;
    let mut id = [0u8; 16];
    b.copy_to_slice(&mut id);
    Ok(Uuid::from_bytes(id))
}

fn get_assignment(b: &mut &[u8]) -> Result<Assignment, DecodeError> {
    let topics = get_count(b)?;
    let mut a = Assignment::new();
    for _ in 0..topics {
        let topic = get_uuid(b)?;
        let n = get_count(b)?;
        let ps = a.entry(topic).or_default();
        for _ in 0..n {
            ps.insert(get_i32(b)?);
        }
    }
    Ok(a)
}

/// Value of kind 2 (after the value version):
/// `str protocol type`, `i32 generation`, `opt str protocol`, `opt str leader`,
/// `u32 n` members, each: `str member id`, `opt str instance id`, `str client id`,
/// `str client host`, `i32 session timeout ms`, `i32 rebalance timeout ms`,
/// `u32 n` protocols (`str name`, `bytes metadata`), `bytes assignment`
/// (`opt str`: `u8` 0 absent / 1 present then `str`; `bytes`: `u32` length then bytes).
pub(super) fn put_classic(b: &mut Vec<u8>, g: &ClassicGroup) -> Result<(), DecodeError> {
    put_str(b, &g.protocol_type)?;
    b.put_i32(g.generation);
    put_opt_str(b, g.protocol.as_deref())?;
    put_opt_str(b, g.leader.as_deref())?;
    put_count(b, g.members.len())?;
    for m in &g.members {
        put_str(b, &m.member_id)?;
        put_opt_str(b, m.instance_id.as_deref())?;
        put_str(b, &m.client_id)?;
        put_str(b, &m.client_host)?;
        b.put_i32(m.session_timeout_ms);
        b.put_i32(m.rebalance_timeout_ms);
        put_count(b, m.protocols.len())?;
        for (name, meta) in &m.protocols {
            put_str(b, name)?;
            put_bytes(b, meta)?;
        }
        put_bytes(b, &m.assignment)?;
    }
    Ok(())
}

pub(super) fn get_classic(b: &mut &[u8]) -> Result<ClassicGroup, DecodeError> {
    let protocol_type = get_str(b)?;
    let generation = get_i32(b)?;
    let protocol = get_opt_str(b)?;
    let leader = get_opt_str(b)?;
    let n = get_count(b)?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let member_id = get_str(b)?;
        let instance_id = get_opt_str(b)?;
        let client_id = get_str(b)?;
        let client_host = get_str(b)?;
        let session_timeout_ms = get_i32(b)?;
        let rebalance_timeout_ms = get_i32(b)?;
        let np = get_count(b)?;
        let mut protocols = Vec::with_capacity(np);
        for _ in 0..np {
            let name = get_str(b)?;
            protocols.push((name, get_bytes(b)?));
        }
        let assignment = get_bytes(b)?;
        members.push(ClassicMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocols,
            assignment,
        });
    }
    Ok(ClassicGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        members,
    })
}

/// Value of kind 3: `i32 group epoch`, `i32 assignment epoch`, `str assignor`, `u32 n`
/// resolved topics, each `str name`, `uuid` (16 bytes), `i32 partitions`.
pub(super) fn put_consumer_group(b: &mut Vec<u8>, g: &ConsumerGroup) -> Result<(), DecodeError> {
    b.put_i32(g.epoch);
    b.put_i32(g.assignment_epoch);
    put_str(b, &g.assignor)?;
    put_count(b, g.resolved.len())?;
    for (name, id, n) in &g.resolved {
        put_str(b, name)?;
        b.put_slice(id.as_bytes());
        b.put_i32(*n);
    }
    Ok(())
}

pub(super) fn get_consumer_group(b: &mut &[u8]) -> Result<ConsumerGroup, DecodeError> {
    let epoch = get_i32(b)?;
    let assignment_epoch = get_i32(b)?;
    let assignor = get_str(b)?;
    let n = get_count(b)?;
    let mut resolved = Vec::with_capacity(n);
    for _ in 0..n {
        let name = get_str(b)?;
        let id = get_uuid(b)?;
        resolved.push((name, id, get_i32(b)?));
    }
    Ok(ConsumerGroup {
        epoch,
        assignment_epoch,
        assignor,
        resolved,
    })
}

/// Value of kind 4: `opt str instance id`, `opt str rack id`, `str client id`,
/// `str client host`, `i32 rebalance timeout ms`, `i32 session timeout ms`, `u32 n` topics
/// (`str`), `opt str regex`, `opt str assignor`, `u8 state`, `i32 epoch`,
/// `i32 previous epoch`, then three assignments (assigned, revoking, target), each `u32 n`
/// topics of `uuid`, `u32 n` partitions of `i32`.
pub(super) fn put_consumer_member(b: &mut Vec<u8>, m: &ConsumerMember) -> Result<(), DecodeError> {
    put_opt_str(b, m.instance_id.as_deref())?;
    put_opt_str(b, m.rack_id.as_deref())?;
    put_str(b, &m.client_id)?;
    put_str(b, &m.client_host)?;
    b.put_i32(m.rebalance_timeout_ms);
    b.put_i32(m.session_timeout_ms);
    put_count(b, m.topics.len())?;
    for t in &m.topics {
        put_str(b, t)?;
    }
    put_opt_str(b, m.regex.as_deref())?;
    put_opt_str(b, m.assignor.as_deref())?;
    b.put_u8(m.state);
    b.put_i32(m.epoch);
    b.put_i32(m.previous_epoch);
    put_assignment(b, &m.assigned)?;
    put_assignment(b, &m.revoking)?;
    put_assignment(b, &m.target)?;
    Ok(())
}

pub(super) fn get_consumer_member(b: &mut &[u8]) -> Result<ConsumerMember, DecodeError> {
    let instance_id = get_opt_str(b)?;
    let rack_id = get_opt_str(b)?;
    let client_id = get_str(b)?;
    let client_host = get_str(b)?;
    let rebalance_timeout_ms = get_i32(b)?;
    let session_timeout_ms = get_i32(b)?;
    let n = get_count(b)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(get_str(b)?);
    }
    let regex = get_opt_str(b)?;
    let assignor = get_opt_str(b)?;
    let state = get_u8(b)?;
    if state > 2 {
        return Err(format!("unknown member state {state}"));
    }
    let epoch = get_i32(b)?;
    let previous_epoch = get_i32(b)?;
    let assigned = get_assignment(b)?;
    let revoking = get_assignment(b)?;
    let target = get_assignment(b)?;
    Ok(ConsumerMember {
        instance_id,
        rack_id,
        client_id,
        client_host,
        rebalance_timeout_ms,
        session_timeout_ms,
        topics,
        regex,
        assignor,
        state,
        epoch,
        previous_epoch,
        assigned,
        revoking,
        target,
    })
}
