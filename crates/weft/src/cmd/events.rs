//! `weft events append|read|replay`: an HTTP client of the event store's `/v1/streams` API on
//! `weft serve`'s HTTP listener (it never opens the state database itself).
//!
//! `replay` reconstructs state for audit: it reads a stream or a category up to a time
//! and/or revision and folds the events into an audit projection — per stream, the event
//! data objects merged in order (later fields win) — printing which events were applied and
//! the resulting state.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// Base URL of weft serve's HTTP listener
    #[arg(
        long,
        env = "WEFT_HTTP_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EventsCommand {
    /// Append one event (data as JSON, from --data or stdin)
    Append {
        #[arg(long)]
        stream: String,
        /// Event type
        #[arg(long = "type")]
        event_type: String,
        /// The event data as JSON; read from stdin when absent
        #[arg(long)]
        data: Option<String>,
        /// any, no_stream, stream_exists or a revision
        #[arg(long, default_value = "any")]
        expected_version: String,
        /// Event id (a retry with the same id is a no-op); random when absent
        #[arg(long)]
        id: Option<String>,
    },
    /// Print events of a stream, or of $all with filters, one JSON object per line
    Read {
        /// A stream; $all (or no --stream) reads every stream
        #[arg(long)]
        stream: Option<String>,
        #[arg(long, conflicts_with = "stream")]
        category: Option<String>,
        #[arg(long = "type", conflicts_with = "stream")]
        event_type: Option<String>,
        /// First revision (stream) or position ($all)
        #[arg(long)]
        from: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        backwards: bool,
        /// Keep printing new events as they are appended (Server-Sent Events); `--from` is
        /// then the position to start after
        #[arg(long, conflicts_with = "backwards")]
        follow: bool,
        /// With --follow: stop after this many events
        #[arg(long, requires = "follow")]
        max: Option<usize>,
    },
    /// Rebuild state from a stream or a category up to a time or revision, for audit
    Replay {
        #[arg(long, required_unless_present = "category")]
        stream: Option<String>,
        #[arg(long, conflicts_with = "stream")]
        category: Option<String>,
        /// Only events recorded at or before this time: RFC 3339 UTC
        /// (`2026-12-05T10:00:00Z`) or milliseconds since the epoch
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// Only events up to this stream revision (with --stream)
        #[arg(long, requires = "stream")]
        until_revision: Option<u64>,
        /// `text` (a line per applied event, then the state) or `json`
        #[arg(long, default_value = "text")]
        format: String,
    },
}

pub(crate) struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub(crate) fn new(base: &str) -> anyhow::Result<Http> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--url {base}: expected an http:// URL");
        }
        Ok(Http {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The answer's status and JSON body; an error answer becomes an error naming its code.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .with_context(|| format!("bad request URL {url}"))?;
        let res = tokio::time::timeout(super::REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| anyhow!("no answer from weft at {} in time", self.base))?
            .map_err(|e| anyhow!("no answer from weft at {}: {e}", self.base))?;
        let status = res.status().as_u16();
        let raw = res.into_body().collect().await?.to_bytes();
        let body: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
        if status >= 400 {
            bail!(
                "refused ({status} {}): {}",
                body["code"].as_str().unwrap_or("error"),
                body["message"].as_str().unwrap_or(&body.to_string())
            );
        }
        Ok(body)
    }
}

impl Http {
    /// Prints the `data` of each SSE event carrying an `id:` (one JSON line per event) until
    /// `max` were printed or the server closes the stream.
    async fn follow(&self, path: &str, max: Option<usize>) -> anyhow::Result<()> {
        use std::io::Write as _;
        let url = format!("{}{path}", self.base);
        let req = Request::builder()
            .uri(&url)
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .with_context(|| format!("bad request URL {url}"))?;
        let res = tokio::time::timeout(super::REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| anyhow!("no answer from weft at {} in time", self.base))?
            .map_err(|e| anyhow!("no answer from weft at {}: {e}", self.base))?;
        if !res.status().is_success() {
            let status = res.status().as_u16();
            let raw = res.into_body().collect().await?.to_bytes();
            let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            bail!(
                "refused ({status} {}): {}",
                body["code"].as_str().unwrap_or("error"),
                body["message"].as_str().unwrap_or("")
            );
        }
        let mut body = res.into_body();
        let mut text = String::new();
        let mut printed = 0;
        let mut out = std::io::stdout().lock();
        while max.is_none_or(|m| printed < m) {
            let Some(frame) = body.frame().await else {
                return Ok(());
            };
            if let Some(chunk) = frame?.data_ref() {
                text.push_str(&String::from_utf8_lossy(chunk));
            }
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let mut id = false;
                let mut data = String::new();
                for line in block.lines() {
                    if line.starts_with("id:") {
                        id = true;
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    } else if line.starts_with("event: error") || line.starts_with("event:error") {
                        bail!("the subscription failed on the server");
                    }
                }
                if id && max.is_none_or(|m| printed < m) {
                    writeln!(out, "{data}")?;
                    out.flush()?;
                    printed += 1;
                }
            }
        }
        Ok(())
    }
}

/// RFC 3339 in UTC (`Z` or `+00:00`, optional fraction) or epoch milliseconds.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let err = || format!("{s:?}: expected RFC 3339 UTC like 2026-12-05T10:00:00Z, or epoch ms");
    let (date, time) = s.split_once(['T', ' ']).ok_or_else(err)?;
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))
        .ok_or_else(err)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| err()))
        .collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().map_err(|_| err()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3 || t.len() != 3 || !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) {
        return Err(err());
    }
    if t[0] > 23 || t[1] > 59 || t[2] > 60 {
        return Err(err());
    }
    let ms_frac = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        digits.parse::<i64>().map_err(|_| err())?
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms_frac)
}

/// A path segment, percent-encoded (`$all` included).
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let http = Http::new(&args.url)?;
    match args.command {
        EventsCommand::Append {
            stream,
            event_type,
            data,
            expected_version,
            id,
        } => {
            let data = match data {
                Some(d) => d,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading event data from stdin")?;
                    s
                }
            };
            let data: Value =
                serde_json::from_str(&data).context("the event data is not valid JSON")?;
            let mut event = json!({"type": event_type, "data": data});
            if let Some(id) = id {
                event["id"] = json!(id);
            }
            // A number stays a number; anything else is sent as given and judged by the server.
            let expected = expected_version
                .parse::<u64>()
                .map_or_else(|_| json!(expected_version), |n| json!(n));
            let w = http
                .call(
                    Method::POST,
                    &format!("/v1/streams/{}", seg(&stream)),
                    Some(json!({"expected_version": expected, "events": [event]})),
                )
                .await?;
            println!("{w}");
        }
        EventsCommand::Read {
            stream,
            category,
            event_type,
            from,
            limit,
            backwards,
            follow,
            max,
        } => {
            let stream = stream.unwrap_or_else(|| "$all".to_owned());
            if follow {
                let mut q = vec![format!("after={}", from.unwrap_or(0))];
                if let Some(c) = category {
                    q.push(format!("category={}", seg(&c)));
                }
                if let Some(t) = event_type {
                    q.push(format!("type={}", seg(&t)));
                }
                let path = format!("/v1/streams/{}/subscribe?{}", seg(&stream), q.join("&"));
                http.follow(&path, max).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut q = vec![format!("limit={limit}")];
            if backwards {
                q.push("direction=backwards".into());
            }
            if let Some(f) = from {
                q.push(format!("from={f}"));
            }
            if let Some(c) = category {
                q.push(format!("category={}", seg(&c)));
            }
            if let Some(t) = event_type {
                q.push(format!("type={}", seg(&t)));
            }
            let r = http
                .call(
                    Method::GET,
                    &format!("/v1/streams/{}?{}", seg(&stream), q.join("&")),
                    None,
                )
                .await?;
            for e in r["events"].as_array().into_iter().flatten() {
                println!("{e}");
            }
        }
        EventsCommand::Replay {
            stream,
            category,
            until,
            until_revision,
            format,
        } => {
            if format != "text" && format != "json" {
                bail!("--format {format}: expected text or json");
            }
            let report = replay(&http, stream, category, until, until_revision).await?;
            if format == "json" {
                println!("{report}");
            } else {
                for e in report["applied"].as_array().into_iter().flatten() {
                    println!(
                        "applied {} {}@{} {} recorded_ms={}",
                        e["position"],
                        e["stream"].as_str().unwrap_or(""),
                        e["revision"],
                        e["type"].as_str().unwrap_or(""),
                        e["recorded_ms"]
                    );
                }
                println!("skipped {} later events", report["skipped"]);
                println!("state {}", report["state"]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads page by page and folds into the audit projection.
async fn replay(
    http: &Http,
    stream: Option<String>,
    category: Option<String>,
    until: Option<i64>,
    until_revision: Option<u64>,
) -> anyhow::Result<Value> {
    let mut applied = Vec::new();
    let mut state: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut skipped = 0u64;
    let mut from = match &stream {
        Some(_) => 0,
        None => 1,
    };
    loop {
        let path = match (&stream, &category) {
            (Some(s), _) => format!("/v1/streams/{}?from={from}&limit=1000", seg(s)),
            (None, Some(c)) => {
                format!(
                    "/v1/streams/%24all?category={}&from={from}&limit=1000",
                    seg(c)
                )
            }
            (None, None) => bail!("--stream or --category is required"),
        };
        let page = http.call(Method::GET, &path, None).await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let n = events.len();
        for e in events {
            let recorded = e["recorded_ms"].as_i64().unwrap_or(0);
            let revision = e["revision"].as_u64().unwrap_or(0);
            from = if stream.is_some() {
                revision + 1
            } else {
                e["position"].as_u64().unwrap_or(from) + 1
            };
            if until.is_some_and(|t| recorded > t) || until_revision.is_some_and(|r| revision > r) {
                skipped += 1;
                continue;
            }
            let name = e["stream"].as_str().unwrap_or_default().to_owned();
            let entry = state.entry(name).or_default();
            if let Value::Object(fields) = &e["data"] {
                for (k, v) in fields {
                    entry.insert(k.clone(), v.clone());
                }
            }
            applied.push(json!({
                "position": e["position"], "stream": e["stream"], "revision": e["revision"],
                "type": e["type"], "recorded_ms": e["recorded_ms"],
            }));
        }
        if n < 1000 {
            break;
        }
    }
    Ok(json!({ "applied": applied, "skipped": skipped, "state": state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let cases = [
            ("0", Some(0)),
            ("1700000000000", Some(1_700_000_000_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2023-11-14T22:13:20Z", Some(1_700_000_000_000)),
            ("2023-11-14T22:13:20.5Z", Some(1_700_000_000_500)),
            ("2024-02-29T00:00:00+00:00", Some(1_709_164_800_000)),
            ("2023-11-14T22:13:20", None),
            ("2023-13-01T00:00:00Z", None),
            ("yesterday", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_time(input).ok(), expected, "{input}");
        }
    }
}
