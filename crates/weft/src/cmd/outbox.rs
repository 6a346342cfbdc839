//! `weft outbox init|status`.
//!
//! `init` creates the outbox table in a service's database (PostgreSQL, MariaDB/MySQL or
//! SQLite), or prints its DDL with `--print`; `status` asks a running `weft serve` for its
//! relay's per-source figures (`GET /v1/outbox`), over plain HTTP with hyper-util's client.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OutboxCommand {
    /// Create the outbox table and its indexes (idempotent)
    Init {
        /// The service's database: postgres://…, mysql://… (or mariadb://…), sqlite:PATH
        #[arg(long, env = "WEFT_OUTBOX_DATABASE")]
        database: String,
        /// Table name (optionally schema.table)
        #[arg(long, default_value = "weft_outbox")]
        table: String,
        /// Print the statements instead of running them
        #[arg(long)]
        print: bool,
    },
    /// Per-source relay status of a running `weft serve`
    Status {
        /// The server's HTTP address
        #[arg(long, env = "WEFT_HTTP", default_value = "127.0.0.1:8080")]
        http: String,
        /// Only this source
        #[arg(long)]
        source: Option<String>,
        /// Print the JSON answer as is
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(args: OutboxArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OutboxCommand::Init {
            database,
            table,
            print,
        } => {
            let table = weft_outbox::Table::new(&table)?;
            let dialect = weft_outbox::Dialect::of_url(&database)?;
            if print {
                for statement in table.ddl(dialect) {
                    println!("{statement};");
                }
                return Ok(ExitCode::SUCCESS);
            }
            weft_outbox::table::init(&database, &table)
                .await
                .with_context(|| {
                    format!(
                        "cannot create the outbox table in {}",
                        weft_outbox::redact(&database)
                    )
                })?;
            println!(
                "outbox table {} ready in {} database {}",
                table.name(),
                dialect.as_str(),
                weft_outbox::redact(&database)
            );
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Status { http, source, json } => status(&http, source, json).await,
    }
}

async fn status(http: &str, source: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let base = if http.starts_with("http://") {
        http.trim_end_matches('/').to_owned()
    } else if http.contains("://") {
        bail!("--http {http}: expected HOST:PORT or an http:// URL");
    } else {
        format!("http://{http}")
    };
    let url = match &source {
        Some(name) => format!("{base}/v1/outbox/{}", percent(name)),
        None => format!("{base}/v1/outbox"),
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method(Method::GET)
        .uri(&url)
        .body(Full::new(Bytes::new()))
        .with_context(|| format!("bad URL {url}"))?;
    let res = tokio::time::timeout(super::REQUEST_TIMEOUT, client.request(req))
        .await
        .map_err(|_| anyhow!("no answer from weft serve at {base} in time"))?
        .map_err(|e| anyhow!("no answer from weft serve at {base}: {e}"))?;
    let code = res.status();
    let raw = res.into_body().collect().await?.to_bytes();
    let body: Value = serde_json::from_slice(&raw)
        .with_context(|| format!("{url} did not answer JSON ({code})"))?;
    if !code.is_success() {
        bail!(
            "{}",
            body["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{url}: {code}"))
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let sources = match body.get("sources") {
        Some(Value::Array(list)) => list.clone(),
        _ => vec![body],
    };
    if sources.is_empty() {
        println!("no outbox sources configured");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<8} {:<12} {:>9} {:>12} {:>10} {:>9}  LAST ERROR",
        "SOURCE", "MODE", "STATE", "PENDING", "OLDEST (s)", "PUBLISHED", "ROWS/S"
    );
    let mut unhealthy = false;
    for s in &sources {
        let num = |k: &str| match &s[k] {
            Value::Null => "-".to_owned(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() != 0.0 => format!("{f:.1}"),
                _ => n.to_string(),
            },
            other => other.to_string(),
        };
        let blocked = s["blocked"].as_array().map_or(0, Vec::len);
        unhealthy |= blocked > 0 || s["state"] == "backing_off";
        println!(
            "{:<16} {:<8} {:<12} {:>9} {:>12} {:>10} {:>9}  {}",
            s["name"].as_str().unwrap_or("?"),
            s["mode"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            num("pending_rows"),
            num("oldest_unpublished_age_seconds"),
            num("published_total"),
            num("publish_rate_per_second"),
            s["last_error"].as_str().unwrap_or("")
        );
        for b in s["blocked"].as_array().into_iter().flatten() {
            println!(
                "  stopped aggregate {}/{} at row {}: {}",
                b["aggregatetype"].as_str().unwrap_or("?"),
                b["aggregateid"].as_str().unwrap_or("?"),
                b["id"].as_str().unwrap_or("?"),
                b["reason"].as_str().unwrap_or("?")
            );
        }
    }
    // Non-zero when something needs a person: a stopped aggregate or a source backing off.
    Ok(if unhealthy {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn percent(s: &str) -> String {
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
