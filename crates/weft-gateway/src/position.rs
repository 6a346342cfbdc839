//! Positions, event ids, start points and filters of live streams (pure functions).
//!
//! An event id is the connection's whole position set *after* that event: for each
//! partition it follows, the next offset to deliver, as `partition:offset` pairs joined by
//! commas (`0:12,1:7`). Handing it back (`Last-Event-ID`, a WebSocket `resume` message)
//! resumes exactly after the event on every partition: nothing missed, nothing twice.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::kafka::Record;

/// Next offset to deliver, per partition.
pub type Positions = BTreeMap<i32, i64>;

/// Computed for every event of every connection: one allocation, no temporary strings.
pub fn encode(positions: &Positions) -> String {
    let mut s = Vec::with_capacity(positions.len() * 16);
    encode_into(positions, &mut s);
    // Digits, `:` and `,` only.
    String::from_utf8(s).unwrap_or_default()
}

/// [`encode`], appended to `buf` (once per event and connection on the fan-out path: no
/// string of its own, and itoa rather than `fmt`).
pub(crate) fn encode_into(positions: &Positions, buf: &mut impl bytes::BufMut) {
    let mut digits = itoa::Buffer::new();
    for (i, (p, o)) in positions.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(digits.format(*p).as_bytes());
        buf.put_u8(b':');
        buf.put_slice(digits.format(*o).as_bytes());
    }
}

/// Parses an event id; at most 10,000 partitions.
pub fn decode(id: &str) -> Result<Positions, String> {
    let mut out = Positions::new();
    if id.trim().is_empty() {
        return Err("empty position set".into());
    }
    for (i, part) in id.split(',').enumerate() {
        if i >= 10_000 {
            return Err("too many partitions in the position set".into());
        }
        let (p, o) = part
            .split_once(':')
            .ok_or_else(|| format!("{part:?} is not PARTITION:OFFSET"))?;
        let p: i32 = p
            .trim()
            .parse()
            .map_err(|_| format!("partition {p:?} is not a number"))?;
        let o: i64 = o
            .trim()
            .parse()
            .map_err(|_| format!("offset {o:?} is not a number"))?;
        if p < 0 || o < 0 {
            return Err(format!("{part:?}: partition and offset must be ≥ 0"));
        }
        if out.insert(p, o).is_some() {
            return Err(format!("partition {p} appears twice"));
        }
    }
    Ok(out)
}

/// Where a new stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Latest,
    Earliest,
    /// First record with a timestamp ≥ this (ms since the epoch).
    Time(i64),
    /// Explicit next offsets (partitions not named start at the earliest offset).
    Positions(Positions),
}

/// `latest` | `earliest` | `time:<ms>` | `P:O,P:O…`.
pub fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "latest" | "" => Ok(Start::Latest),
        "earliest" => Ok(Start::Earliest),
        _ => {
            if let Some(ms) = s.strip_prefix("time:") {
                let ms: i64 = ms
                    .parse()
                    .map_err(|_| format!("start {s:?}: time:<milliseconds since the epoch>"))?;
                return Ok(Start::Time(ms));
            }
            decode(s).map(Start::Positions).map_err(|e| {
                format!("start {s:?} is none of latest, earliest, time:<ms>, P:O,…: {e}")
            })
        }
    }
}

/// Which records of the followed partitions a client receives.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub partitions: Option<BTreeSet<i32>>,
    pub key: Option<String>,
    /// Every (name, value) must be present.
    pub headers: Vec<(String, String)>,
}

impl Filter {
    /// From the query parameters `partitions=0,2`, `key=k`, `header=name:value,name2:value2`.
    pub fn parse(
        partitions: Option<&str>,
        key: Option<&str>,
        header: Option<&str>,
    ) -> Result<Filter, String> {
        let partitions = match partitions {
            None | Some("") => None,
            Some(s) => Some(
                s.split(',')
                    .map(|p| {
                        p.trim()
                            .parse::<i32>()
                            .ok()
                            .filter(|p| *p >= 0)
                            .ok_or_else(|| format!("partition {p:?} is not a number ≥ 0"))
                    })
                    .collect::<Result<BTreeSet<_>, _>>()?,
            ),
        };
        let headers = match header {
            None | Some("") => Vec::new(),
            Some(s) => s
                .split(',')
                .map(|h| {
                    h.split_once(':')
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .ok_or_else(|| format!("header filter {h:?} is not NAME:VALUE"))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Filter {
            partitions,
            key: key.map(str::to_owned),
            headers,
        })
    }

    pub fn matches(&self, r: &Record) -> bool {
        if let Some(k) = &self.key
            && r.key.as_deref() != Some(k.as_bytes())
        {
            return false;
        }
        self.headers.iter().all(|(n, v)| {
            r.headers
                .iter()
                .any(|(hn, hv)| hn == n && hv.as_deref() == Some(v.as_bytes()))
        })
    }
}

/// How payloads are shown in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON payloads as JSON, other UTF-8 as a string, anything else as `{"base64": …}`.
    #[default]
    Auto,
    /// Always a base64 string.
    Base64,
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Format, String> {
        match s {
            None | Some("") | Some("auto") | Some("json") => Ok(Format::Auto),
            Some("base64") | Some("binary") => Ok(Format::Base64),
            Some(other) => Err(format!("format {other:?} is none of auto, json, base64")),
        }
    }

    pub fn render(self, bytes: Option<&[u8]>) -> Value {
        let Some(b) = bytes else { return Value::Null };
        let b64 = || base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Format::Base64 => Value::String(b64()),
            Format::Auto => {
                if let Ok(v) = serde_json::from_slice::<Value>(b) {
                    return v;
                }
                match std::str::from_utf8(b) {
                    Ok(s) => Value::String(s.to_owned()),
                    Err(_) => json!({ "base64": b64() }),
                }
            }
        }
    }
}

/// A record as JSON: topic, partition, offset, timestamp, key, value, headers.
pub fn record_json(topic: &str, r: &Record, format: Format) -> Value {
    let mut headers = Map::new();
    for (k, v) in &r.headers {
        let v = match v {
            None => Value::Null,
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => Value::String(s.to_owned()),
                Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
            },
        };
        headers.insert(k.clone(), v);
    }
    json!({
        "topic": topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": format.render(r.key.as_deref()),
        "value": format.render(r.value.as_deref()),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ids_are_refused() {
        let p: Positions = [(0, 12), (1, 7), (10, 0)].into_iter().collect();
        assert_eq!(encode(&p), "0:12,1:7,10:0");
        assert_eq!(decode("0:12,1:7,10:0").expect("valid"), p);
        for bad in ["", "x", "0:", ":1", "0:-1", "-1:0", "0:1,0:2", "0:1;1:2"] {
            assert!(decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn starts() {
        let cases = [
            ("latest", Some(Start::Latest)),
            ("earliest", Some(Start::Earliest)),
            ("time:1700", Some(Start::Time(1700))),
            (
                "0:3",
                Some(Start::Positions([(0, 3)].into_iter().collect())),
            ),
            ("time:x", None),
            ("sometime", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_start(input).ok(), expected, "{input}");
        }
    }

    #[test]
    fn filters_match_key_and_headers() {
        let r = Record {
            partition: 0,
            offset: 1,
            timestamp: None,
            key: Some("k1".into()),
            value: None,
            headers: vec![("type".into(), Some("created".into()))],
            rendered: Default::default(),
        };
        let f = |k: Option<&str>, h: Option<&str>| {
            Filter::parse(None, k, h).expect("valid filter").matches(&r)
        };
        assert!(f(None, None));
        assert!(f(Some("k1"), Some("type:created")));
        assert!(!f(Some("k2"), None));
        assert!(!f(None, Some("type:deleted")));
        assert!(!f(None, Some("other:created")));
        assert!(Filter::parse(Some("0,x"), None, None).is_err());
        assert!(Filter::parse(None, None, Some("novalue")).is_err());
    }

    #[test]
    fn payload_rendering() {
        let f = Format::Auto;
        assert_eq!(f.render(Some(br#"{"a":1}"#)), json!({"a": 1}));
        assert_eq!(f.render(Some(b"plain text")), json!("plain text"));
        assert_eq!(f.render(Some(&[0, 0xff])), json!({"base64": "AP8="}));
        assert_eq!(Format::Base64.render(Some(b"hi")), json!("aGk="));
        assert_eq!(f.render(None), Value::Null);
    }
}
