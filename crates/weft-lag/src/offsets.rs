//! Committed offsets of many groups through a few Kafka-protocol connections.
//!
//! librdkafka (and the rdkafka crate) fetches offsets only for the group named in a client's
//! configuration, so asking for N groups would take N client handles, each with its own
//! threads and buffers. This is a small blocking Kafka client for exactly that one job:
//! - one TCP connection per broker it talks to (a bootstrap server, the coordinators), kept
//!   across rounds; a connection that fails is dropped and redialled once;
//! - ApiVersions on each new connection, to pick the versions below;
//! - FindCoordinator (key type GROUP): v4+ with many `CoordinatorKeys` per request when the
//!   broker advertises it, one request per group otherwise; coordinators are remembered and
//!   looked up again after NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE or a failed
//!   connection;
//! - OffsetFetch with every topic (`Topics` null): v8+ with many groups per request, else
//!   one request per group (v2..v7).
//!
//! PLAINTEXT, or SASL_PLAINTEXT with the PLAIN mechanism (SaslHandshake v1, then
//! SaslAuthenticate, right after ApiVersions on each connection) — what `weft serve`'s
//! internal listener speaks. No TLS, SCRAM or OAUTHBEARER: for those [`access`] says so and
//! the sampler keeps one librdkafka handle per group instead. Response frames are bounded
//! ([`MAX_FRAME`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FindCoordinatorRequest, GroupId, OffsetFetchRequest,
    OffsetFetchResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest, offset_fetch_request::OffsetFetchRequestGroup,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tracing::{debug, warn};

use crate::{Error, Result};

/// The largest response frame read (its length prefix); anything larger is an error.
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Groups per batched FindCoordinator / OffsetFetch request.
const BATCH: usize = 500;

const NONE: i16 = 0;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// `(topic, partition) → committed offset` of one group.
pub(crate) type Committed = Vec<((String, i32), i64)>;

/// SASL PLAIN credentials (RFC 4616). The password never reaches a log or an error.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PlainCredentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl PlainCredentials {
    /// The PLAIN message: no authorisation id, NUL, user, NUL, password.
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(2 + self.username.len() + self.password.len());
        m.push(0);
        m.extend_from_slice(self.username.as_bytes());
        m.push(0);
        m.extend_from_slice(self.password.as_bytes());
        m
    }
}

/// How [`OffsetClient`] can reach a cluster, from the librdkafka properties the other
/// clients use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    Plaintext,
    SaslPlain(PlainCredentials),
    /// Not spoken here (the reason, for the log).
    Unsupported(String),
}

/// Reads `security.protocol`, `sasl.mechanism(s)`, `sasl.username` and `sasl.password`
/// (names and values as librdkafka takes them, case-insensitive values).
pub(crate) fn access(properties: &[(String, String)]) -> Access {
    let get = |key: &str| {
        properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let protocol = get("security.protocol").unwrap_or("plaintext");
    if protocol.eq_ignore_ascii_case("plaintext") {
        return Access::Plaintext;
    }
    if !protocol.eq_ignore_ascii_case("sasl_plaintext") {
        return Access::Unsupported(format!("security.protocol {protocol}"));
    }
    let mechanism = get("sasl.mechanism")
        .or_else(|| get("sasl.mechanisms"))
        .unwrap_or("GSSAPI");
    if !mechanism.eq_ignore_ascii_case("PLAIN") {
        return Access::Unsupported(format!("sasl.mechanism {mechanism}"));
    }
    match (get("sasl.username"), get("sasl.password")) {
        (Some(u), Some(p)) => Access::SaslPlain(PlainCredentials {
            username: u.to_owned(),
            password: p.to_owned(),
        }),
        _ => Access::Unsupported("sasl.mechanism PLAIN without sasl.username/sasl.password".into()),
    }
}

/// One connection to one broker, with the versions it advertised.
struct Conn {
    stream: TcpStream,
    correlation: i32,
    /// api key → (min, max).
    versions: HashMap<i16, (i16, i16)>,
}

impl Conn {
    fn open(addr: &str, timeout: Duration, sasl: Option<&PlainCredentials>) -> Result<Conn> {
        let io = |e: std::io::Error| Error::Protocol(format!("{addr}: {e}"));
        let mut last = None;
        let mut stream = None;
        for a in addr.to_socket_addrs().map_err(io)? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(io(e)),
            (None, None) => return Err(Error::Protocol(format!("{addr}: no address"))),
        };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut conn = Conn {
            stream,
            correlation: 0,
            versions: HashMap::new(),
        };
        // v0 is answered by every broker (a newer request to an older broker gets an error
        // and the broker's versions at v0 anyway).
        let r = conn.request(0, &ApiVersionsRequest::default())?;
        if r.error_code != NONE {
            return Err(Error::Protocol(format!(
                "{addr}: ApiVersions error {}",
                r.error_code
            )));
        }
        conn.versions = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(credentials) = sasl {
            conn.authenticate(addr, credentials)?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1 (PLAIN) then one SaslAuthenticate (v0–v2) with the PLAIN message.
    fn authenticate(&mut self, addr: &str, credentials: &PlainCredentials) -> Result<()> {
        let handshake = self
            .version(ApiKey::SaslHandshake, 1, 1)
            .ok_or_else(|| Error::Protocol(format!("{addr}: SaslHandshake v1 not supported")))?;
        let r = self.request(
            handshake,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )?;
        if r.error_code != NONE {
            let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(Error::Protocol(format!(
                "{addr}: SaslHandshake PLAIN refused (error {}; the broker offers {offered:?})",
                r.error_code
            )));
        }
        let v = self
            .version(ApiKey::SaslAuthenticate, 0, 2)
            .ok_or_else(|| Error::Protocol(format!("{addr}: SaslAuthenticate not supported")))?;
        let r = self.request(
            v,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(credentials.message())),
        )?;
        if r.error_code != NONE {
            return Err(Error::Protocol(format!(
                "{addr}: SASL PLAIN authentication of {:?} failed (error {}): {}",
                credentials.username,
                r.error_code,
                r.error_message.as_ref().map_or("", |m| m.as_str())
            )));
        }
        debug!(broker = %addr, user = %credentials.username, "sasl plain authenticated");
        Ok(())
    }

    /// The highest version of `key` both sides speak, within `[min, max]`.
    fn version(&self, key: ApiKey, min: i16, max: i16) -> Option<i16> {
        let &(lo, hi) = self.versions.get(&(key as i16))?;
        let v = hi.min(max);
        (v >= lo.max(min)).then_some(v)
    }

    fn request<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response> {
        self.correlation = self.correlation.wrapping_add(1);
        let frame = encode_request(self.correlation, version, req)?;
        let io = |e: std::io::Error| Error::Protocol(format!("{:?}: {e}", R::KEY));
        self.stream.write_all(&frame).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = frame_len(len)?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).map_err(io)?;
        decode_response::<R>(self.correlation, version, Bytes::from(body))
    }
}

/// A request frame: length prefix, header (client id `weft-lag`), body.
pub(crate) fn encode_request<R: Request>(
    correlation: i32,
    version: i16,
    req: &R,
) -> Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("weft-lag")));
    let mut body = BytesMut::new();
    let enc = |e: String| Error::Protocol(format!("encoding {:?}: {e}", R::KEY));
    header
        .encode(&mut body, R::header_version(version))
        .map_err(|e| enc(e.to_string()))?;
    req.encode(&mut body, version)
        .map_err(|e| enc(e.to_string()))?;
    let len = i32::try_from(body.len())
        .map_err(|_| Error::Protocol(format!("{:?} request too large", R::KEY)))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The length of a response frame from its prefix: negative or above [`MAX_FRAME`] is an
/// error (a peer that is not a Kafka broker, or a corrupt stream).
pub(crate) fn frame_len(prefix: [u8; 4]) -> Result<usize> {
    let len = i32::from_be_bytes(prefix);
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or_else(|| Error::Protocol(format!("response frame length {len} out of bounds")))
}

/// A response body (after the length prefix) for a request sent with `correlation`.
pub(crate) fn decode_response<R: Request>(
    correlation: i32,
    version: i16,
    mut frame: Bytes,
) -> Result<R::Response> {
    let dec = |what: &str, e: String| Error::Protocol(format!("decoding {:?} {what}: {e}", R::KEY));
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| dec("header", e.to_string()))?;
    if header.correlation_id != correlation {
        return Err(Error::Protocol(format!(
            "{:?}: correlation id {} for request {correlation}",
            R::KEY,
            header.correlation_id
        )));
    }
    R::Response::decode(&mut frame, version).map_err(|e| dec("body", e.to_string()))
}

/// Kafka-protocol client for committed offsets of many groups. Blocking.
pub(crate) struct OffsetClient {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// "host:port" → connection.
    conns: HashMap<String, Conn>,
    /// group → "host:port" of its coordinator.
    coordinators: HashMap<String, String>,
    /// Highest versions to use (lower in tests, to exercise the per-group paths).
    max_find_coordinator: i16,
    max_offset_fetch: i16,
    /// SASL_PLAINTEXT with PLAIN on every connection; `None`: PLAINTEXT.
    sasl: Option<PlainCredentials>,
}

impl OffsetClient {
    pub(crate) fn new(bootstrap: &str, timeout: Duration) -> OffsetClient {
        let bootstrap = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = ["PLAINTEXT://", "SASL_PLAINTEXT://"]
                    .iter()
                    .find_map(|p| {
                        s.get(..p.len())
                            .filter(|head| head.eq_ignore_ascii_case(p))
                            .map(|_| &s[p.len()..])
                    })
                    .unwrap_or(s);
                if s.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    s.to_owned()
                } else {
                    format!("{s}:9092")
                }
            })
            .collect();
        OffsetClient {
            bootstrap,
            timeout,
            conns: HashMap::new(),
            coordinators: HashMap::new(),
            max_find_coordinator: 4,
            max_offset_fetch: 9,
            sasl: None,
        }
    }

    /// Authenticates every connection with SASL PLAIN (a SASL_PLAINTEXT listener).
    pub(crate) fn with_sasl_plain(mut self, credentials: PlainCredentials) -> Self {
        self.sasl = Some(credentials);
        self
    }

    #[cfg(test)]
    pub(crate) fn with_max_versions(mut self, find_coordinator: i16, offset_fetch: i16) -> Self {
        self.max_find_coordinator = find_coordinator;
        self.max_offset_fetch = offset_fetch;
        self
    }

    /// Connections currently open (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Committed offsets (only partitions with one) of each of `groups`: `Some(list)`, empty
    /// for a group with no offsets, or `None` where they could not be read this round (the
    /// reason is logged). Fails only when no bootstrap server answers.
    pub(crate) fn fetch(
        &mut self,
        groups: &[String],
    ) -> Result<HashMap<String, Option<Committed>>> {
        let mut out: HashMap<String, Option<Committed>> =
            groups.iter().map(|g| (g.clone(), None)).collect();
        self.coordinators.retain(|g, _| out.contains_key(g));
        let unknown: Vec<String> = groups
            .iter()
            .filter(|g| !self.coordinators.contains_key(*g))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            self.find_coordinators(&unknown)?;
        }
        let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in groups {
            if let Some(addr) = self.coordinators.get(g) {
                by_coordinator
                    .entry(addr.clone())
                    .or_default()
                    .push(g.clone());
            }
        }
        for (addr, groups) in by_coordinator {
            if let Err(e) = self.fetch_from(&addr, &groups, &mut out) {
                warn!(coordinator = %addr, groups = groups.len(), error = %e, "cannot fetch committed offsets");
                self.forget(&addr);
            }
        }
        Ok(out)
    }

    /// Drops the connection to `addr` and every coordinator pointing at it.
    fn forget(&mut self, addr: &str) {
        self.conns.remove(addr);
        self.coordinators.retain(|_, a| a != addr);
    }

    /// The connection to `addr`, opened if needed.
    fn conn(&mut self, addr: &str) -> Result<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::open(addr, self.timeout, self.sasl.as_ref())?;
            self.conns.insert(addr.to_owned(), c);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| Error::Protocol(format!("{addr}: connection lost")))
    }

    /// Sends `req` to `addr` with the version `pick` chooses; a connection kept from an
    /// earlier request that fails is redialled once.
    fn request<R: Request>(
        &mut self,
        addr: &str,
        pick: impl Fn(&Conn) -> Result<i16>,
        build: impl Fn(i16) -> R,
    ) -> Result<(i16, R::Response)> {
        let reused = self.conns.contains_key(addr);
        let attempt = |this: &mut Self| -> Result<(i16, R::Response)> {
            let conn = this.conn(addr)?;
            let v = pick(conn)?;
            let r = conn.request(v, &build(v))?;
            Ok((v, r))
        };
        match attempt(self) {
            Ok(r) => Ok(r),
            Err(e) if reused => {
                debug!(broker = %addr, error = %e, "redialling");
                self.conns.remove(addr);
                attempt(self)
            }
            Err(e) => {
                self.conns.remove(addr);
                Err(e)
            }
        }
    }

    /// A bootstrap server that answers: one already connected, else the first that
    /// accepts a connection.
    fn bootstrap_addr(&mut self) -> Result<String> {
        if let Some(a) = self.bootstrap.iter().find(|a| self.conns.contains_key(*a)) {
            return Ok(a.clone());
        }
        let mut last = Error::Protocol("no bootstrap servers".into());
        for a in self.bootstrap.clone() {
            match self.conn(&a) {
                Ok(_) => return Ok(a),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn find_coordinators(&mut self, groups: &[String]) -> Result<()> {
        let addr = self.bootstrap_addr()?;
        let max = self.max_find_coordinator;
        let pick = move |c: &Conn| {
            c.version(ApiKey::FindCoordinator, 0, max)
                .ok_or_else(|| Error::Protocol("FindCoordinator not supported".into()))
        };
        let batched = pick(self.conn(&addr)?)? >= 4;
        if batched {
            for chunk in groups.chunks(BATCH) {
                let keys: Vec<StrBytes> = chunk
                    .iter()
                    .map(|g| StrBytes::from_string(g.clone()))
                    .collect();
                let (_, r) = self.request(&addr, pick, |_| {
                    FindCoordinatorRequest::default()
                        .with_key_type(0)
                        .with_coordinator_keys(keys.clone())
                })?;
                for c in r.coordinators {
                    self.found(c.key.as_str(), c.error_code, c.host.as_str(), c.port);
                }
            }
        } else {
            for g in groups {
                let key = StrBytes::from_string(g.clone());
                let (_, r) = self.request(&addr, pick, |_| {
                    FindCoordinatorRequest::default()
                        .with_key(key.clone())
                        .with_key_type(0)
                })?;
                self.found(g, r.error_code, r.host.as_str(), r.port);
            }
        }
        Ok(())
    }

    fn found(&mut self, group: &str, error: i16, host: &str, port: i32) {
        if error == NONE {
            self.coordinators
                .insert(group.to_owned(), format!("{host}:{port}"));
        } else {
            // COORDINATOR_NOT_AVAILABLE while the offsets topic loads, and the like: the
            // group is skipped this round and looked up again next round.
            debug!(group, error, "no coordinator for the group");
        }
    }

    fn fetch_from(
        &mut self,
        addr: &str,
        groups: &[String],
        out: &mut HashMap<String, Option<Committed>>,
    ) -> Result<()> {
        let max = self.max_offset_fetch;
        let pick = move |c: &Conn| {
            c.version(ApiKey::OffsetFetch, 2, max)
                .ok_or_else(|| Error::Protocol("OffsetFetch v2+ not supported".into()))
        };
        let batched = pick(self.conn(addr)?)? >= 8;
        if batched {
            for chunk in groups.chunks(BATCH) {
                let req_groups: Vec<OffsetFetchRequestGroup> = chunk
                    .iter()
                    .map(|g| {
                        OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(StrBytes::from_string(g.clone())))
                            .with_topics(None)
                    })
                    .collect();
                let (_, r) = self.request(addr, pick, |_| {
                    OffsetFetchRequest::default().with_groups(req_groups.clone())
                })?;
                for (group, result) in groups_of(r) {
                    self.settle(group, result, out);
                }
            }
        } else {
            for g in groups {
                let id = GroupId(StrBytes::from_string(g.clone()));
                let (_, r) = self.request(addr, pick, |_| {
                    OffsetFetchRequest::default()
                        .with_group_id(id.clone())
                        .with_topics(None)
                })?;
                self.settle(g.clone(), single_group(r), out);
            }
        }
        Ok(())
    }

    /// Records one group's answer; a coordinator error sends the group to FindCoordinator
    /// next round.
    fn settle(
        &mut self,
        group: String,
        result: Result<Committed, i16>,
        out: &mut HashMap<String, Option<Committed>>,
    ) {
        let Some(slot) = out.get_mut(&group) else {
            return;
        };
        match result {
            Ok(offsets) => *slot = Some(offsets),
            Err(GROUP_ID_NOT_FOUND) => *slot = Some(Vec::new()),
            Err(code @ (NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE)) => {
                debug!(group, code, "coordinator moved; looking it up next round");
                self.coordinators.remove(&group);
            }
            Err(COORDINATOR_LOAD_IN_PROGRESS) => debug!(group, "coordinator loading"),
            Err(code) => warn!(group, code, "OffsetFetch error"),
        }
    }
}

/// The groups of a batched (v8+) OffsetFetch response: committed offsets, or the group's
/// error code.
pub(crate) fn groups_of(r: OffsetFetchResponse) -> Vec<(String, Result<Committed, i16>)> {
    r.groups
        .into_iter()
        .map(|g| {
            let id = g.group_id.0.to_string();
            if g.error_code != NONE {
                return (id, Err(g.error_code));
            }
            let mut offsets = Vec::new();
            for t in g.topics {
                for p in t.partitions {
                    if p.error_code == NONE && p.committed_offset >= 0 {
                        offsets.push((
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        ));
                    }
                }
            }
            (id, Ok(offsets))
        })
        .collect()
}

/// The answer of a one-group (v2..v7) OffsetFetch response.
pub(crate) fn single_group(r: OffsetFetchResponse) -> Result<Committed, i16> {
    if r.error_code != NONE {
        return Err(r.error_code);
    }
    let mut offsets = Vec::new();
    for t in r.topics {
        for p in t.partitions {
            if p.error_code == NONE && p.committed_offset >= 0 {
                offsets.push((
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                ));
            }
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_broker as common;
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
    };
    use kafka_protocol::messages::{ResponseHeader, TopicName};

    #[test]
    fn frame_lengths_above_the_bound_or_negative_are_errors() {
        assert_eq!(frame_len(0i32.to_be_bytes()).ok(), Some(0));
        assert_eq!(frame_len(1024i32.to_be_bytes()).ok(), Some(1024));
        let max = i32::try_from(MAX_FRAME).expect("fits");
        assert_eq!(frame_len(max.to_be_bytes()).ok(), Some(MAX_FRAME));
        assert!(frame_len((max + 1).to_be_bytes()).is_err());
        assert!(frame_len((-1i32).to_be_bytes()).is_err());
        assert!(frame_len(i32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn a_batched_offset_fetch_request_carries_every_group_with_all_topics() {
        let req = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g1")))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g2")))
                .with_topics(None),
        ]);
        let frame = encode_request(7, 8, &req).expect("encode");
        let len = frame_len(frame[..4].try_into().expect("prefix")).expect("len");
        assert_eq!(len, frame.len() - 4);
        let mut body = Bytes::copy_from_slice(&frame[4..]);
        let header = RequestHeader::decode(&mut body, OffsetFetchRequest::header_version(8))
            .expect("header");
        assert_eq!(header.request_api_key, ApiKey::OffsetFetch as i16);
        assert_eq!(header.request_api_version, 8);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("weft-lag"));
        let back = OffsetFetchRequest::decode(&mut body, 8).expect("body");
        assert_eq!(back, req);
        assert!(body.is_empty());
    }

    fn response_frame(correlation: i32, version: i16, r: &OffsetFetchResponse) -> Bytes {
        let mut b = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation)
            .encode(&mut b, OffsetFetchResponse::header_version(version))
            .expect("header");
        r.encode(&mut b, version).expect("body");
        b.freeze()
    }

    #[test]
    fn batched_responses_give_offsets_per_group_and_group_errors() {
        let partition = |i, offset, error| {
            OffsetFetchResponsePartitions::default()
                .with_partition_index(i)
                .with_committed_offset(offset)
                .with_error_code(error)
        };
        let r = OffsetFetchResponse::default().with_groups(vec![
            OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("ok")))
                .with_topics(vec![
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![
                            partition(0, 5, NONE),
                            // Nothing committed, and a partition-level error: skipped.
                            partition(1, -1, NONE),
                            partition(2, 9, 88),
                        ]),
                ]),
            OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("moved")))
                .with_error_code(NOT_COORDINATOR),
        ]);
        let frame = response_frame(3, 8, &r);
        let decoded = decode_response::<OffsetFetchRequest>(3, 8, frame.clone()).expect("decode");
        let groups = groups_of(decoded);
        assert_eq!(
            groups,
            vec![
                ("ok".to_owned(), Ok(vec![(("t".to_owned(), 0), 5)])),
                ("moved".to_owned(), Err(NOT_COORDINATOR)),
            ]
        );
        // An answer to another request is refused.
        assert!(decode_response::<OffsetFetchRequest>(4, 8, frame).is_err());
        // A truncated body is an error, not a short answer.
        let cut = response_frame(3, 8, &r).slice(..20);
        assert!(decode_response::<OffsetFetchRequest>(3, 8, cut).is_err());
    }

    #[test]
    fn single_group_responses_report_the_top_level_error() {
        let r = OffsetFetchResponse::default().with_error_code(GROUP_ID_NOT_FOUND);
        assert_eq!(single_group(r), Err(GROUP_ID_NOT_FOUND));
    }

    #[test]
    fn access_from_client_properties() {
        let plain = |u: &str, p: &str| {
            Access::SaslPlain(PlainCredentials {
                username: u.into(),
                password: p.into(),
            })
        };
        let unsupported = |why: &str| Access::Unsupported(why.into());
        // (properties, expected)
        let cases: Vec<(Vec<(&str, &str)>, Access)> = vec![
            (vec![], Access::Plaintext),
            (vec![("security.protocol", "PLAINTEXT")], Access::Plaintext),
            (vec![("client.id", "x")], Access::Plaintext),
            (
                vec![
                    ("security.protocol", "SASL_PLAINTEXT"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.username", "u"),
                    ("sasl.password", "p"),
                ],
                plain("u", "p"),
            ),
            (
                vec![
                    ("security.protocol", "sasl_plaintext"),
                    ("sasl.mechanisms", "plain"),
                    ("sasl.username", "u"),
                    ("sasl.password", "old"),
                    ("sasl.password", "new"),
                ],
                plain("u", "new"),
            ),
            (
                vec![("security.protocol", "SSL")],
                unsupported("security.protocol SSL"),
            ),
            (
                vec![
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "PLAIN"),
                ],
                unsupported("security.protocol SASL_SSL"),
            ),
            (
                vec![
                    ("security.protocol", "SASL_PLAINTEXT"),
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                ],
                unsupported("sasl.mechanism SCRAM-SHA-512"),
            ),
            (
                vec![("security.protocol", "SASL_PLAINTEXT")],
                unsupported("sasl.mechanism GSSAPI"),
            ),
            (
                vec![
                    ("security.protocol", "SASL_PLAINTEXT"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.username", "u"),
                ],
                unsupported("sasl.mechanism PLAIN without sasl.username/sasl.password"),
            ),
        ];
        for (props, want) in cases {
            let props: Vec<(String, String)> = props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(access(&props), want, "{props:?}");
        }
        let c = PlainCredentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert_eq!(c.message(), b"\0u\0hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let client = OffsetClient::new(
            "SASL_PLAINTEXT://h:1,sasl_plaintext://g:2",
            Duration::from_secs(1),
        );
        assert_eq!(client.bootstrap, vec!["h:1", "g:2"]);
    }

    /// Against the real broker, both the batched path (FindCoordinator v4, OffsetFetch v8+)
    /// and the one-group-per-request path (v3, v7), over one kept connection.
    #[test]
    fn fetches_many_groups_batched_and_one_by_one() {
        let b = common::TestBroker::start();
        b.produce("off-t", 20);
        let groups: Vec<String> = (0..30).map(|i| format!("off-{i}")).collect();
        for (i, g) in groups.iter().enumerate().skip(1) {
            b.commit(g, &[("off-t", 0, i as i64)]);
        }
        // off-0 has never committed; "absent" is no group at all.
        let mut asked = groups.clone();
        asked.push("absent".to_owned());
        for (fc, of) in [(4, 9), (4, 8), (3, 7), (0, 2)] {
            let mut client = OffsetClient::new(&b.bootstrap(), Duration::from_secs(10))
                .with_max_versions(fc, of);
            for _round in 0..2 {
                let got = client.fetch(&asked).expect("fetch");
                assert_eq!(got.len(), asked.len());
                for (i, g) in groups.iter().enumerate() {
                    let want = if i == 0 {
                        vec![]
                    } else {
                        vec![(("off-t".to_owned(), 0), i as i64)]
                    };
                    assert_eq!(got[g], Some(want), "{g} at v{fc}/v{of}");
                }
                assert_eq!(got["absent"], Some(vec![]), "v{fc}/v{of}");
                // One broker: bootstrap and coordinator are the same connection.
                assert_eq!(client.connections(), 1);
            }
            // A kept connection that broke is redialled within the round.
            for c in client.conns.values() {
                c.stream
                    .shutdown(std::net::Shutdown::Both)
                    .expect("shutdown");
            }
            let got = client
                .fetch(&asked)
                .expect("fetch after a broken connection");
            assert_eq!(got["off-5"], Some(vec![(("off-t".to_owned(), 0), 5)]));
            assert_eq!(client.connections(), 1);
        }
    }

    #[test]
    fn group_errors_decide_between_no_offsets_unknown_and_a_new_lookup() {
        let mut client = OffsetClient::new("127.0.0.1:1", Duration::from_secs(1));
        let names = ["ok", "gone", "moved", "unavailable", "loading", "denied"];
        let mut out: HashMap<String, Option<Committed>> =
            names.iter().map(|g| ((*g).to_owned(), None)).collect();
        for g in names {
            client
                .coordinators
                .insert(g.to_owned(), "b:9092".to_owned());
        }
        let offsets = vec![(("t".to_owned(), 0), 3)];
        client.settle("ok".into(), Ok(offsets.clone()), &mut out);
        client.settle("gone".into(), Err(GROUP_ID_NOT_FOUND), &mut out);
        client.settle("moved".into(), Err(NOT_COORDINATOR), &mut out);
        client.settle(
            "unavailable".into(),
            Err(COORDINATOR_NOT_AVAILABLE),
            &mut out,
        );
        client.settle(
            "loading".into(),
            Err(COORDINATOR_LOAD_IN_PROGRESS),
            &mut out,
        );
        // GROUP_AUTHORIZATION_FAILED
        client.settle("denied".into(), Err(30), &mut out);
        // A group nobody asked for is ignored.
        client.settle("stranger".into(), Ok(offsets.clone()), &mut out);
        assert_eq!(out["ok"], Some(offsets));
        assert_eq!(out["gone"], Some(vec![]));
        for g in ["moved", "unavailable", "loading", "denied"] {
            assert_eq!(out[g], None, "{g}");
        }
        assert!(!out.contains_key("stranger"));
        // Only a moved or unavailable coordinator is looked up again next round.
        let mut kept: Vec<&str> = client.coordinators.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["denied", "gone", "loading", "ok"]);
    }

    #[test]
    fn bootstrap_servers_are_parsed_like_librdkafka() {
        let client =
            OffsetClient::new(" a:1, PLAINTEXT://b:2,c,, [::1]:3 ", Duration::from_secs(1));
        assert_eq!(client.bootstrap, ["a:1", "b:2", "c:9092", "[::1]:3"]);
    }

    #[test]
    fn an_unreachable_bootstrap_fails_the_fetch() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let mut client = OffsetClient::new(&addr.to_string(), Duration::from_secs(2));
        assert!(client.fetch(&["g".to_owned()]).is_err());
    }
}
