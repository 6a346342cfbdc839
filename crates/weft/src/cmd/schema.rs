//! `weft schema register|check|get|list|diff|deprecate`: the schema registry from a shell or
//! a CI pipeline, over its HTTP API (Confluent's, plus Weft's deprecation endpoints), so it
//! works against any registry that speaks it at `--registry`.
//!
//! Exit codes: 0 success (for `check`: compatible); 1 `check` found the schema incompatible
//! or invalid, or the registry refused the request; 2 the registry could not be asked
//! (unreachable, unexpected answer).
//!
//! The HTTP client is hyper-util's, already in the build for axum and the registry tests: no
//! new dependency, plain `http://` only (a TLS registry would need a TLS connector here).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use weft_schema::{NamedSchema, ParsedSchema, SchemaType};

#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {
    /// Schema registry base URL
    #[arg(
        long,
        env = "WEFT_REGISTRY",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    registry: String,
    /// Who acts, sent as `X-Weft-Principal` (needed to propose in a REVIEW subject)
    #[arg(long, env = "WEFT_PRINCIPAL", global = true)]
    principal: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Register the schema in FILE under SUBJECT; prints its id and version
    Register {
        #[command(flatten)]
        schema: SchemaFile,
        /// Store the normalized form
        #[arg(long)]
        normalize: bool,
    },
    /// Check FILE against SUBJECT's compatibility level: exit 0 when compatible, 1 with the
    /// reasons when not
    Check {
        #[command(flatten)]
        schema: SchemaFile,
        /// Check against this version only, instead of what the level names
        #[arg(long)]
        version: Option<String>,
    },
    /// Print a schema: SUBJECT's VERSION (default latest), or the schema with --id
    Get {
        #[arg(long, required_unless_present = "id")]
        subject: Option<String>,
        #[arg(long, default_value = "latest", conflicts_with = "id")]
        version: String,
        /// Global schema id
        #[arg(long)]
        id: Option<i64>,
        /// Print the registry's JSON answer instead of the schema text
        #[arg(long)]
        json: bool,
    },
    /// Subjects with their versions, ids, types and deprecation
    List {
        /// Only subjects starting with this
        #[arg(long)]
        prefix: Option<String>,
        /// Include soft-deleted subjects and versions
        #[arg(long)]
        deleted: bool,
    },
    /// What changed between two versions of SUBJECT, in words
    Diff {
        #[arg(long)]
        subject: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Mark a version deprecated with a sunset date (or --undo it)
    Deprecate {
        #[arg(long)]
        subject: String,
        #[arg(long)]
        version: String,
        /// When the version stops being supported: RFC 3339 date or date-time
        #[arg(long, required_unless_present = "undo")]
        sunset: Option<String>,
        /// Why, and what to use instead
        #[arg(long)]
        note: Option<String>,
        /// Remove the deprecation
        #[arg(long, conflicts_with_all = ["sunset", "note"])]
        undo: bool,
    },
}

/// A schema given as a file.
#[derive(Debug, clap::Args)]
struct SchemaFile {
    #[arg(long)]
    subject: String,
    /// The schema text
    #[arg(long)]
    file: PathBuf,
    /// AVRO, PROTOBUF or JSON; default from the file: `.proto` is PROTOBUF, a JSON document
    /// with `$schema` is JSON, anything else AVRO
    #[arg(long = "type")]
    schema_type: Option<String>,
    /// A reference `NAME=SUBJECT:VERSION` (repeatable)
    #[arg(long = "reference", value_name = "NAME=SUBJECT:VERSION", value_parser = parse_reference)]
    references: Vec<Value>,
}

fn parse_reference(s: &str) -> Result<Value, String> {
    let bad = || format!("expected NAME=SUBJECT:VERSION, got {s:?}");
    let (name, rest) = s.split_once('=').ok_or_else(bad)?;
    let (subject, version) = rest.rsplit_once(':').ok_or_else(bad)?;
    let version: i64 = version.parse().map_err(|_| bad())?;
    if name.is_empty() || subject.is_empty() {
        return Err(bad());
    }
    Ok(json!({ "name": name, "subject": subject, "version": version }))
}

impl SchemaFile {
    fn body(&self) -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let schema_type = match &self.schema_type {
            Some(t) => t
                .parse::<SchemaType>()
                .map_err(|e| anyhow!("--type: {e}"))?,
            None => guess_type(&self.file, &text),
        };
        let mut body = json!({ "schema": text });
        if schema_type != SchemaType::Avro {
            body["schemaType"] = json!(schema_type.as_str());
        }
        if !self.references.is_empty() {
            body["references"] = Value::Array(self.references.clone());
        }
        Ok(body)
    }
}

fn guess_type(path: &Path, text: &str) -> SchemaType {
    if path.extension().is_some_and(|e| e == "proto") {
        return SchemaType::Protobuf;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) if o.contains_key("$schema") => SchemaType::Json,
        _ => SchemaType::Avro,
    }
}

/// The registry's refusal of a request (an `{"error_code", "message"}` answer).
#[derive(Debug)]
struct Refused {
    status: u16,
    code: i64,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the registry refused: {} (error {}, HTTP {})",
            self.message, self.code, self.status
        )
    }
}

impl std::error::Error for Refused {}

/// An answer: body and the headers the CLI reads.
struct Answer {
    body: Value,
    deprecation: Option<String>,
    sunset: Option<String>,
}

struct Http {
    base: String,
    principal: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new(base: &str, principal: Option<String>) -> anyhow::Result<Http> {
        let base = base.trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            bail!("--registry {base}: https is not supported yet; use http://");
        }
        if !base.starts_with("http://") {
            bail!("--registry {base}: expected an http:// URL");
        }
        Ok(Http {
            base,
            principal,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends a request; a registry error answer is a [`Refused`] error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(Value::to_string).unwrap_or_default();
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .header("accept", "application/vnd.schemaregistry.v1+json");
        if let Some(p) = &self.principal {
            req = req.header("x-weft-principal", p);
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .with_context(|| format!("bad request URL {url}"))?;
        let res = tokio::time::timeout(super::REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| {
                anyhow!(
                    "no answer from the schema registry at {} in time",
                    self.base
                )
            })?
            .map_err(|e| anyhow!("no answer from the schema registry at {}: {e}", self.base))?;
        let status = res.status().as_u16();
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (deprecation, sunset) = (header("deprecation"), header("sunset"));
        let raw = res
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?
            .to_bytes();
        let body: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
        if status >= 400 {
            return Err(Refused {
                status,
                code: body["error_code"].as_i64().unwrap_or(i64::from(status)),
                message: body["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| body.to_string()),
            }
            .into());
        }
        Ok(Answer {
            body,
            deprecation,
            sunset,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.call(Method::GET, path, None).await
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) async fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let http = Http::new(&args.registry, args.principal)?;
    let outcome = match args.action {
        Action::Register { schema, normalize } => register(&http, &schema, normalize).await,
        Action::Check { schema, version } => check(&http, &schema, version.as_deref()).await,
        Action::Get {
            subject,
            version,
            id,
            json,
        } => get(&http, subject.as_deref(), &version, id, json).await,
        Action::List { prefix, deleted } => list(&http, prefix.as_deref(), deleted).await,
        Action::Diff { subject, from, to } => diff(&http, &subject, &from, &to).await,
        Action::Deprecate {
            subject,
            version,
            sunset,
            note,
            undo,
        } => deprecate(&http, &subject, &version, sunset, note, undo).await,
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(e) if e.downcast_ref::<Refused>().is_some() => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn register(http: &Http, file: &SchemaFile, normalize: bool) -> anyhow::Result<ExitCode> {
    let body = file.body()?;
    let subject = seg(&file.subject);
    let q = if normalize { "?normalize=true" } else { "" };
    let a = http
        .call(
            Method::POST,
            &format!("/subjects/{subject}/versions{q}"),
            Some(&body),
        )
        .await?;
    if let Some(p) = a.body.get("proposal") {
        // A subject in REVIEW mode: the registration waits for approvals.
        println!(
            "proposal {} created for {}: needs {} approval(s) (GET /proposals/{})",
            p["id"], file.subject, p["approvalsRequired"], p["id"]
        );
        return Ok(ExitCode::SUCCESS);
    }
    let id = a.body["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("the registry's answer has no id: {}", a.body))?;
    let found = http
        .call(
            Method::POST,
            &format!("/subjects/{subject}{q}"),
            Some(&body),
        )
        .await?;
    println!(
        "registered {} version {} id {id}",
        file.subject, found.body["version"]
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(http: &Http, file: &SchemaFile, version: Option<&str>) -> anyhow::Result<ExitCode> {
    let body = file.body()?;
    let subject = seg(&file.subject);
    let path = match version {
        Some(v) => format!(
            "/compatibility/subjects/{subject}/versions/{}?verbose=true",
            seg(v)
        ),
        None => format!("/compatibility/subjects/{subject}/versions?verbose=true"),
    };
    let a = match http.call(Method::POST, &path, Some(&body)).await {
        Ok(a) => a,
        // An invalid schema breaks the subject as surely as an incompatible one.
        Err(e) => match e.downcast_ref::<Refused>() {
            Some(r) if r.code == 42201 => {
                println!("{}: invalid schema: {}", file.file.display(), r.message);
                return Ok(ExitCode::from(1));
            }
            _ => return Err(e),
        },
    };
    if a.body["is_compatible"].as_bool() == Some(true) {
        println!(
            "{} is compatible with {}",
            file.file.display(),
            file.subject
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} is NOT compatible with {}:",
        file.file.display(),
        file.subject
    );
    for m in a.body["messages"].as_array().into_iter().flatten() {
        println!(
            "  - {}",
            m.as_str().map_or_else(|| m.to_string(), str::to_owned)
        );
    }
    Ok(ExitCode::from(1))
}

async fn get(
    http: &Http,
    subject: Option<&str>,
    version: &str,
    id: Option<i64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let a = match (id, subject) {
        (Some(id), _) => http.get(&format!("/schemas/ids/{id}")).await?,
        (None, Some(s)) => {
            http.get(&format!("/subjects/{}/versions/{}", seg(s), seg(version)))
                .await?
        }
        (None, None) => bail!("give --subject or --id"),
    };
    if let Some(sunset) = &a.sunset {
        eprintln!(
            "warning: this schema is deprecated (sunset {sunset}){}",
            a.body["deprecation"]["note"]
                .as_str()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
    } else if a.deprecation.is_some() {
        eprintln!("warning: this schema is deprecated");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&a.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = a.body["schema"].as_str().unwrap_or_default();
    // JSON texts (Avro, JSON Schema) are printed indented; Protobuf as stored.
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() || v.is_array() => println!("{}", serde_json::to_string_pretty(&v)?),
        _ => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(http: &Http, prefix: Option<&str>, deleted: bool) -> anyhow::Result<ExitCode> {
    let mut q = vec![];
    if deleted {
        q.push("deleted=true".to_owned());
    }
    if let Some(p) = prefix {
        q.push(format!("subjectPrefix={}", seg(p)));
    }
    let q = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let subjects = http.get(&format!("/subjects{q}")).await?.body;
    let dq = if deleted { "?deleted=true" } else { "" };
    let mut rows = vec![[
        "SUBJECT".to_owned(),
        "VERSION".to_owned(),
        "ID".to_owned(),
        "TYPE".to_owned(),
        "STATUS".to_owned(),
    ]];
    for s in subjects.as_array().into_iter().flatten() {
        let s = s.as_str().unwrap_or_default();
        let versions = http
            .get(&format!("/subjects/{}/versions{dq}", seg(s)))
            .await?
            .body;
        for v in versions.as_array().into_iter().flatten() {
            let a = http
                .get(&format!("/subjects/{}/versions/{v}{dq}", seg(s)))
                .await?;
            let b = &a.body;
            let mut status = Vec::new();
            if b["deleted"].as_bool() == Some(true) {
                status.push("soft-deleted".to_owned());
            }
            if let Some(d) = b.get("deprecation").filter(|d| d.is_object()) {
                let mut text =
                    format!("deprecated, sunset {}", d["sunset"].as_str().unwrap_or("?"));
                if let Some(n) = d["note"].as_str().filter(|n| !n.is_empty()) {
                    let _ = write!(text, ": {n}");
                }
                status.push(text);
            }
            rows.push([
                s.to_owned(),
                v.to_string(),
                b["id"].to_string(),
                b["schemaType"].as_str().unwrap_or("AVRO").to_owned(),
                status.join("; "),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

async fn deprecate(
    http: &Http,
    subject: &str,
    version: &str,
    sunset: Option<String>,
    note: Option<String>,
    undo: bool,
) -> anyhow::Result<ExitCode> {
    let path = format!(
        "/subjects/{}/versions/{}/deprecation",
        seg(subject),
        seg(version)
    );
    if undo {
        http.call(Method::DELETE, &path, None).await?;
        println!("{subject} version {version} is no longer deprecated");
        return Ok(ExitCode::SUCCESS);
    }
    let mut body = json!({ "sunset": sunset });
    if let Some(n) = note {
        body["note"] = json!(n);
    }
    let a = http.call(Method::PUT, &path, Some(&body)).await?;
    println!(
        "{subject} version {} deprecated, sunset {}",
        a.body["version"],
        a.body["sunset"].as_str().unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

// ---- diff ----

/// A version fetched with every schema it references (dependencies first).
struct Fetched {
    version: i64,
    id: i64,
    schema_type: SchemaType,
    text: String,
    references: Vec<NamedSchema>,
}

async fn fetch_version(http: &Http, subject: &str, version: &str) -> anyhow::Result<Fetched> {
    let b = http
        .get(&format!(
            "/subjects/{}/versions/{}",
            seg(subject),
            seg(version)
        ))
        .await?
        .body;
    let schema_type: SchemaType = b["schemaType"]
        .as_str()
        .unwrap_or("AVRO")
        .parse()
        .map_err(|e| anyhow!("{e}"))?;
    let mut references = Vec::new();
    let mut seen = std::collections::HashSet::new();
    collect_references(http, &b["references"], &mut references, &mut seen, 0).await?;
    Ok(Fetched {
        version: b["version"].as_i64().unwrap_or(0),
        id: b["id"].as_i64().unwrap_or(0),
        schema_type,
        text: b["schema"].as_str().unwrap_or_default().to_owned(),
        references,
    })
}

fn collect_references<'a>(
    http: &'a Http,
    refs: &'a Value,
    out: &'a mut Vec<NamedSchema>,
    seen: &'a mut std::collections::HashSet<(String, i64)>,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>> {
    Box::pin(async move {
        if depth > 64 {
            bail!("references nest deeper than 64");
        }
        for r in refs.as_array().into_iter().flatten() {
            let (name, subject, version) = (
                r["name"].as_str().unwrap_or_default(),
                r["subject"].as_str().unwrap_or_default(),
                r["version"].as_i64().unwrap_or(-1),
            );
            if !seen.insert((subject.to_owned(), version)) {
                continue;
            }
            let b = http
                .get(&format!("/subjects/{}/versions/{version}", seg(subject)))
                .await?
                .body;
            collect_references(http, &b["references"], out, seen, depth + 1).await?;
            out.push(NamedSchema {
                name: name.to_owned(),
                text: b["schema"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(())
    })
}

async fn diff(http: &Http, subject: &str, from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let old = fetch_version(http, subject, from).await?;
    let new = fetch_version(http, subject, to).await?;
    let subject = subject.to_owned();
    let report = tokio::task::spawn_blocking(move || describe_diff(subject, &old, &new))
        .await
        .context("diff task failed")??;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The words `weft schema diff` prints.
fn describe_diff(subject: String, old: &Fetched, new: &Fetched) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{subject}: version {} (id {}) -> version {} (id {}), {}",
        old.version, old.id, new.version, new.id, new.schema_type
    );
    if old.schema_type != new.schema_type {
        let _ = writeln!(
            out,
            "schema type changed from {} to {}: no reader of one reads the other",
            old.schema_type, new.schema_type
        );
        return Ok(out);
    }
    if old.id == new.id {
        let _ = writeln!(out, "same schema: nothing changed");
        return Ok(out);
    }
    let parse = |f: &Fetched| {
        ParsedSchema::parse(f.schema_type, &f.text, &f.references)
            .map_err(|e| anyhow!("version {} does not parse: {e}", f.version))
    };
    let (po, pn) = (parse(old)?, parse(new)?);
    let fo = fields(old.schema_type, &old.text);
    let fnew = fields(new.schema_type, &new.text);
    let mut changes = Vec::new();
    for (path, ty) in &fnew {
        match fo.iter().find(|(p, _)| p == path) {
            None => changes.push(format!("added    {path}: {ty}")),
            Some((_, old_ty)) if old_ty != ty => {
                changes.push(format!("changed  {path}: {old_ty} -> {ty}"))
            }
            Some(_) => {}
        }
    }
    for (path, ty) in &fo {
        if !fnew.iter().any(|(p, _)| p == path) {
            changes.push(format!("removed  {path}: {ty}"));
        }
    }
    if changes.is_empty() {
        let _ = writeln!(
            out,
            "no field added, removed or retyped (other attributes changed)"
        );
    }
    for c in changes {
        let _ = writeln!(out, "  {c}");
    }
    let verdict = |reasons: Vec<weft_schema::Incompatibility>, what: &str, out: &mut String| {
        if reasons.is_empty() {
            let _ = writeln!(out, "{what}: yes");
        } else {
            let _ = writeln!(out, "{what}: no");
            for r in reasons {
                let _ = writeln!(out, "  - {r}");
            }
        }
    };
    verdict(
        pn.can_read(&po),
        &format!(
            "backward (version {} reads data written with version {})",
            new.version, old.version
        ),
        &mut out,
    );
    verdict(
        po.can_read(&pn),
        &format!(
            "forward (version {} reads data written with version {})",
            old.version, new.version
        ),
        &mut out,
    );
    Ok(out)
}

/// `(path, type)` of every field a schema declares, in order: Avro record fields, JSON
/// Schema properties, Protobuf message fields.
fn fields(t: SchemaType, text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match t {
        SchemaType::Avro => {
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                avro_fields(&v, "", &mut out, 0);
            }
        }
        SchemaType::Json => {
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                json_fields(&v, "#", &mut out, 0);
            }
        }
        SchemaType::Protobuf => proto_fields(text, &mut out),
    }
    out
}

fn avro_fields(v: &Value, ns: &str, out: &mut Vec<(String, String)>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Array(branches) => {
            for b in branches {
                avro_fields(b, ns, out, depth + 1);
            }
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("record" | "error") => {
                let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
                let ns = o.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                for f in o
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let fname = f.get("name").and_then(Value::as_str).unwrap_or("?");
                    let ty = f.get("type").map(avro_type_name).unwrap_or_default();
                    let ty = match f.get("default") {
                        Some(d) => format!("{ty} (default {d})"),
                        None => ty,
                    };
                    out.push((format!("{name}.{fname}"), ty));
                    if let Some(t) = f.get("type") {
                        avro_fields(t, ns, out, depth + 1);
                    }
                }
            }
            Some("array") => {
                if let Some(i) = o.get("items") {
                    avro_fields(i, ns, out, depth + 1);
                }
            }
            Some("map") => {
                if let Some(i) = o.get("values") {
                    avro_fields(i, ns, out, depth + 1);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// A short name for an Avro type: `long`, `["null","string"]`, `array<Item>`, `Order`.
fn avro_type_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(b) => format!(
            "[{}]",
            b.iter().map(avro_type_name).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => {
            let t = o.get("type").and_then(Value::as_str).unwrap_or("?");
            match t {
                "record" | "error" | "enum" | "fixed" => o
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(t)
                    .to_owned(),
                "array" => format!(
                    "array<{}>",
                    o.get("items").map(avro_type_name).unwrap_or_default()
                ),
                "map" => format!(
                    "map<{}>",
                    o.get("values").map(avro_type_name).unwrap_or_default()
                ),
                _ => match o.get("logicalType").and_then(Value::as_str) {
                    Some(l) => format!("{t} ({l})"),
                    None => t.to_owned(),
                },
            }
        }
        other => other.to_string(),
    }
}

fn json_fields(v: &Value, path: &str, out: &mut Vec<(String, String)>, depth: usize) {
    if depth > 64 {
        return;
    }
    let Some(o) = v.as_object() else { return };
    let required: Vec<&str> = o
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let here = format!("{path}/properties/{name}");
            let mut ty = p
                .get("type")
                .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned))
                .or_else(|| {
                    p.get("$ref")
                        .and_then(Value::as_str)
                        .map(|r| format!("$ref {r}"))
                })
                .unwrap_or_else(|| "any".to_owned());
            if required.contains(&name.as_str()) {
                ty.push_str(", required");
            }
            out.push((here.clone(), ty));
            json_fields(p, &here, out, depth + 1);
        }
    }
    if let Some(items) = o.get("items") {
        json_fields(items, &format!("{path}/items"), out, depth + 1);
    }
}

/// Fields of `.proto` text (the registry stores Protobuf in a canonical layout: one
/// declaration per line): `Message.field` -> `type = number`.
fn proto_fields(text: &str, out: &mut Vec<(String, String)>) {
    let mut scopes: Vec<(String, bool)> = Vec::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.ends_with('{') {
            let is_message = matches!(words.first(), Some(&"message"));
            let name = match words.first() {
                Some(&("message" | "enum" | "oneof" | "service" | "extend")) => words
                    .get(1)
                    .copied()
                    .unwrap_or("?")
                    .trim_end_matches('{')
                    .to_owned(),
                _ => String::new(),
            };
            let is_oneof = matches!(words.first(), Some(&"oneof"));
            scopes.push((name, is_message || is_oneof));
            continue;
        }
        if line.starts_with('}') {
            scopes.pop();
            continue;
        }
        if !scopes.last().is_some_and(|(_, fields)| *fields) {
            continue;
        }
        let Some((decl, number)) = line.trim_end_matches(';').split_once('=') else {
            continue;
        };
        let decl: Vec<&str> = decl.split_whitespace().collect();
        if decl.len() < 2 || decl[0] == "option" || decl[0] == "reserved" {
            continue;
        }
        let name = decl[decl.len() - 1];
        let ty = decl[..decl.len() - 1].join(" ");
        let number = number.split('[').next().unwrap_or("").trim();
        let scope: Vec<&str> = scopes
            .iter()
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, _)| n.as_str())
            .collect();
        out.push((
            format!("{}.{name}", scope.join(".")),
            format!("{ty} = {number}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        assert_eq!(
            parse_reference("com.acme.Item=items-value:3"),
            Ok(json!({"name": "com.acme.Item", "subject": "items-value", "version": 3}))
        );
        assert_eq!(
            parse_reference("a.proto=ns:sub:1"),
            Ok(json!({"name": "a.proto", "subject": "ns:sub", "version": 1}))
        );
        for bad in ["x", "=s:1", "n=s", "n=s:x", "n=:1"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_lists() {
        let avro = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},
            {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item",
            "fields":[{"name":"sku","type":"string"}]}}},{"name":"note","type":["null","string"],"default":null}]}"#;
        assert_eq!(
            fields(SchemaType::Avro, avro),
            vec![
                ("Order.id".to_owned(), "long".to_owned()),
                ("Order.items".to_owned(), "array<Item>".to_owned()),
                ("Item.sku".to_owned(), "string".to_owned()),
                (
                    "Order.note".to_owned(),
                    "[null, string] (default null)".to_owned()
                ),
            ]
        );
        let js = r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
            "properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},
            "required":["id"]}"#;
        assert_eq!(
            fields(SchemaType::Json, js),
            vec![
                ("#/properties/id".to_owned(), "integer, required".to_owned()),
                ("#/properties/tags".to_owned(), "array".to_owned()),
            ]
        );
        let proto = "syntax = \"proto3\";\npackage shop;\n\nmessage Order {\n  int64 id = 1;\n  repeated string tags = 2;\n  message Line {\n    string sku = 1;\n  }\n  oneof pay {\n    string card = 3;\n  }\n  reserved 9;\n}\nenum Kind {\n  A = 0;\n}\n";
        assert_eq!(
            fields(SchemaType::Protobuf, proto),
            vec![
                ("Order.id".to_owned(), "int64 = 1".to_owned()),
                ("Order.tags".to_owned(), "repeated string = 2".to_owned()),
                ("Order.Line.sku".to_owned(), "string = 1".to_owned()),
                ("Order.pay.card".to_owned(), "string = 3".to_owned()),
            ]
        );
    }

    #[test]
    fn types_are_guessed() {
        assert_eq!(
            guess_type(Path::new("a.proto"), "syntax"),
            SchemaType::Protobuf
        );
        assert_eq!(
            guess_type(Path::new("a.json"), r#"{"$schema":"x","type":"object"}"#),
            SchemaType::Json
        );
        assert_eq!(
            guess_type(Path::new("a.avsc"), r#"{"type":"record"}"#),
            SchemaType::Avro
        );
        assert_eq!(
            guess_type(Path::new("a.json"), r#""string""#),
            SchemaType::Avro
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("orders-value"), "orders-value");
        assert_eq!(seg("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
