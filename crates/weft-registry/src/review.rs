//! Change control: the subject mode `REVIEW`, beyond the Confluent API.
//!
//! In a subject whose mode (its own, else the registry's) is `REVIEW`, `POST
//! /subjects/{s}/versions` registers nothing: it answers `202 Accepted` with a pending
//! proposal. The proposal was already checked like a registration — an invalid schema is
//! 42201 and an incompatible one 409, and neither creates a proposal — and carries the level
//! it was checked under. A schema the subject already has answers its id, as usual.
//!
//! - `GET /proposals[?subject=&status=]`, `GET /proposals/{id}`;
//! - `POST /proposals/{id}/approve` `{"comment": "…"}` (comment optional);
//! - `POST /proposals/{id}/reject` `{"comment": "…"}` (comment required): one rejection
//!   closes the proposal;
//! - `GET|PUT /review/config[/{subject}]` `{"approvals": N}`: approvals needed (1..=100;
//!   the subject's own, else the registry's, else [`DEFAULT_APPROVALS`]), fixed on each
//!   proposal when it is made.
//!
//! Who acts is the `X-Weft-Principal` header until authentication lands; proposing,
//! approving and rejecting need it (401 / 40101 without). Approvers are distinct and are not the proposer.
//! On the approval that reaches the count the schema is registered through
//! [`Registry::register`], so compatibility is checked again against the versions the
//! subject has *then*: if another version made it incompatible meanwhile, the proposal ends
//! `FAILED` (409 with the reasons) and nothing is registered.
//!
//! Every step — proposed, approved, rejected, registered, failed — is a row of
//! `registry_proposal_events`, never updated or deleted: the audit trail.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;
use weft_auth::http::Permissions;
use weft_store::sqlx::{self, AnyConnection, Row};
use weft_store::{Migration, Store};

use crate::{Error, Mode, Reference, Registry, Result, SchemaInput};

/// The component name of the review tables' migrations.
pub(crate) const COMPONENT: &str = "registry-review";
/// Approvals a proposal needs when nothing is configured.
pub const DEFAULT_APPROVALS: i64 = 2;
/// The header naming who acts.
pub const PRINCIPAL_HEADER: &str = "x-weft-principal";
const GLOBAL: &str = "__GLOBAL";
const MAX_COMMENT_CHARS: usize = 4096;

/// The tables both backends share (a macro, so `concat!` can join it to the rest).
macro_rules! shared_tables {
    () => {
        "CREATE TABLE registry_proposal_events (
            proposal_id BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            action TEXT NOT NULL,
            principal TEXT NOT NULL,
            comment TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            PRIMARY KEY (proposal_id, seq)
        );
        CREATE TABLE registry_review_config (
            subject TEXT PRIMARY KEY,
            approvals BIGINT NOT NULL
        )"
    };
}

/// The proposal columns after the id, which differs per backend.
macro_rules! proposal_columns {
    () => {
        "subject TEXT NOT NULL,
            input_json TEXT NOT NULL,
            normalize BIGINT NOT NULL,
            proposer TEXT NOT NULL,
            status TEXT NOT NULL,
            required BIGINT NOT NULL,
            compat_json TEXT NOT NULL,
            schema_id BIGINT,
            version BIGINT,
            created_ms BIGINT NOT NULL,
            decided_ms BIGINT
        );"
    };
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "proposals, events, review config",
    sqlite: concat!(
        "CREATE TABLE registry_proposals (id INTEGER PRIMARY KEY AUTOINCREMENT, ",
        proposal_columns!(),
        shared_tables!()
    ),
    postgres: concat!(
        "CREATE TABLE registry_proposals (id BIGSERIAL PRIMARY KEY, ",
        proposal_columns!(),
        shared_tables!()
    ),
}];

pub(crate) async fn migrate(store: &Store) -> Result<()> {
    store.migrate(COMPONENT, MIGRATIONS).await?;
    Ok(())
}

/// The stages of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
            Status::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::Rejected,
            Status::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

/// One entry of a proposal's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub action: String,
    pub principal: String,
    pub comment: String,
    pub at_ms: i64,
}

/// A proposal with its history.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub id: i64,
    pub subject: String,
    pub status: Status,
    pub proposer: String,
    pub required: i64,
    pub input: Value,
    pub compatibility: Value,
    pub schema_id: Option<i64>,
    pub version: Option<i64>,
    pub created_ms: i64,
    pub decided_ms: Option<i64>,
    pub events: Vec<Event>,
}

impl Proposal {
    /// Distinct principals who approved.
    pub fn approvers(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.action == "APPROVED")
            .map(|e| e.principal.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "subject": self.subject,
            "status": self.status.as_str(),
            "proposer": self.proposer,
            "approvalsRequired": self.required,
            "approvals": self.approvers(),
            "schema": self.input["schema"],
            "schemaType": self.input["schemaType"],
            "references": self.input["references"],
            "compatibility": self.compatibility,
            "schemaId": self.schema_id,
            "version": self.version,
            "createdAtMs": self.created_ms,
            "decidedAtMs": self.decided_ms,
            "history": self.events.iter().map(|e| json!({
                "action": e.action,
                "principal": e.principal,
                "comment": e.comment,
                "atMs": e.at_ms,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What a registration in REVIEW mode did.
#[derive(Debug)]
pub enum Proposed {
    /// The subject already has this schema: its id.
    Existing(i64),
    New(Box<Proposal>),
}

fn sql(e: sqlx::Error) -> Error {
    Error::Store(weft_store::Error::from(e))
}

async fn load(c: &mut AnyConnection, id: i64) -> Result<Option<Proposal>> {
    let Some(r) = sqlx::query(
        "SELECT id, subject, input_json, proposer, status, required, compat_json, schema_id,
                version, created_ms, decided_ms
         FROM registry_proposals WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .map_err(sql)?
    else {
        return Ok(None);
    };
    let events = sqlx::query(
        "SELECT action, principal, comment, at_ms FROM registry_proposal_events
         WHERE proposal_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await
    .map_err(sql)?
    .iter()
    .map(|e| {
        Ok(Event {
            action: e.try_get("action")?,
            principal: e.try_get("principal")?,
            comment: e.try_get("comment")?,
            at_ms: e.try_get("at_ms")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(sql)?;
    let text = |n: &str| -> Result<String> { r.try_get::<String, _>(n).map_err(sql) };
    let parse_json = |n: &str| -> Result<Value> {
        serde_json::from_str(&text(n)?)
            .map_err(|e| Error::Internal(format!("proposal {id}: corrupt {n}: {e}")))
    };
    let status = text("status")?;
    Ok(Some(Proposal {
        id: r.try_get("id").map_err(sql)?,
        subject: text("subject")?,
        status: Status::parse(&status)
            .ok_or_else(|| Error::Internal(format!("proposal {id}: unknown status {status}")))?,
        proposer: text("proposer")?,
        required: r.try_get("required").map_err(sql)?,
        input: parse_json("input_json")?,
        compatibility: parse_json("compat_json")?,
        schema_id: r.try_get("schema_id").map_err(sql)?,
        version: r.try_get("version").map_err(sql)?,
        created_ms: r.try_get("created_ms").map_err(sql)?,
        decided_ms: r.try_get("decided_ms").map_err(sql)?,
        events,
    }))
}

async fn add_event(
    c: &mut AnyConnection,
    id: i64,
    action: &str,
    principal: &str,
    comment: &str,
) -> Result<()> {
    let next: i64 = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM registry_proposal_events
         WHERE proposal_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await
    .map_err(sql)?
    .try_get("next")
    .map_err(sql)?;
    sqlx::query(
        "INSERT INTO registry_proposal_events (proposal_id, seq, action, principal, comment, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(next)
    .bind(action)
    .bind(principal)
    .bind(comment)
    .bind(weft_store::now_ms())
    .execute(&mut *c)
    .await
    .map_err(sql)?;
    Ok(())
}

async fn set_status(
    c: &mut AnyConnection,
    id: i64,
    status: Status,
    schema_id: Option<i64>,
    version: Option<i64>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE registry_proposals SET status = $1, schema_id = $2, version = $3, decided_ms = $4
         WHERE id = $5 AND status = 'PENDING'",
    )
    .bind(status.as_str())
    .bind(schema_id)
    .bind(version)
    .bind(weft_store::now_ms())
    .bind(id)
    .execute(&mut *c)
    .await
    .map_err(sql)?;
    Ok(done.rows_affected() == 1)
}

fn input_of(p: &Proposal) -> Result<SchemaInput> {
    let references: Vec<Reference> = match &p.input["references"] {
        Value::Null => Vec::new(),
        r => serde_json::from_value(r.clone())
            .map_err(|e| Error::Internal(format!("proposal {}: corrupt references: {e}", p.id)))?,
    };
    Ok(SchemaInput {
        schema: p.input["schema"].as_str().unwrap_or_default().to_owned(),
        schema_type: p.input["schemaType"].as_str().map(str::to_owned),
        references,
        id: None,
        version: None,
    })
}

/// Retries `f` (a whole transaction) when it lost a race with a concurrent writer.
macro_rules! retrying {
    ($body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            match $body {
                Err(Error::Store(e)) if e.is_retryable() && attempt < 10 => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
                }
                other => break other,
            }
        }
    }};
}

impl Registry {
    /// Approvals a new proposal in `subject` needs.
    pub async fn review_approvals(&self, subject: Option<&str>) -> Result<i64> {
        let mut c = self.conn().await?;
        for key in subject.into_iter().chain([GLOBAL]) {
            let r = sqlx::query("SELECT approvals FROM registry_review_config WHERE subject = $1")
                .bind(key)
                .fetch_optional(&mut *c)
                .await
                .map_err(sql)?;
            if let Some(r) = r {
                return r.try_get("approvals").map_err(sql);
            }
        }
        Ok(DEFAULT_APPROVALS)
    }

    /// Sets the approvals proposals in `subject` (or, `None`, everywhere) need.
    pub async fn set_review_approvals(&self, subject: Option<&str>, approvals: i64) -> Result<()> {
        if !(1..=100).contains(&approvals) {
            return Err(Error::Unprocessable(format!(
                "approvals must be between 1 and 100, got {approvals}"
            )));
        }
        if let Some(s) = subject {
            crate::check_subject(s)?;
        }
        let mut c = self.conn().await?;
        sqlx::query(
            "INSERT INTO registry_review_config (subject, approvals) VALUES ($1, $2)
             ON CONFLICT (subject) DO UPDATE SET approvals = excluded.approvals",
        )
        .bind(subject.unwrap_or(GLOBAL))
        .bind(approvals)
        .execute(&mut *c)
        .await
        .map_err(sql)?;
        Ok(())
    }

    /// A registration in a REVIEW subject: checks it as a registration would and files a
    /// proposal, or answers the id the subject already has for it.
    pub async fn propose(
        &self,
        subject: &str,
        input: SchemaInput,
        normalize: bool,
        proposer: &str,
    ) -> Result<Proposed> {
        crate::check_subject(subject)?;
        match self.lookup(subject, input.clone(), normalize, false).await {
            Ok(v) => return Ok(Proposed::Existing(v.schema.id)),
            Err(Error::SubjectNotFound(_) | Error::SchemaNotInSubject) => {}
            Err(e) => return Err(e),
        }
        let level = self.effective_compatibility(subject).await?;
        let report = self
            .check_compatibility(subject, None, input.clone(), normalize)
            .await?;
        if !report.is_compatible {
            return Err(Error::Incompatible(format!(
                "Schema being registered is incompatible with an earlier schema for subject \
                 \"{subject}\", details: [{}]",
                report.messages.join(", ")
            )));
        }
        let required = self.review_approvals(Some(subject)).await?;
        let stored = json!({
            "schema": input.schema,
            "schemaType": input.schema_type.as_deref().unwrap_or("AVRO").to_ascii_uppercase(),
            "references": input.references,
        });
        let compat =
            json!({ "level": level.as_str(), "isCompatible": true, "messages": report.messages });
        let mut tx = self.store().begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO registry_proposals
             (subject, input_json, normalize, proposer, status, required, compat_json, created_ms)
             VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7) RETURNING id",
        )
        .bind(subject)
        .bind(stored.to_string())
        .bind(i64::from(normalize))
        .bind(proposer)
        .bind(required)
        .bind(compat.to_string())
        .bind(weft_store::now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(sql)?
        .try_get("id")
        .map_err(sql)?;
        add_event(&mut tx, id, "PROPOSED", proposer, "").await?;
        tx.commit().await.map_err(sql)?;
        info!(
            subject,
            proposal = id,
            proposer,
            required,
            "schema proposed for review"
        );
        let mut c = self.conn().await?;
        let p = load(&mut c, id)
            .await?
            .ok_or_else(|| Error::Internal(format!("proposal {id} vanished")))?;
        Ok(Proposed::New(Box::new(p)))
    }

    /// `GET /proposals`: newest first.
    pub async fn proposals(
        &self,
        subject: Option<&str>,
        status: Option<Status>,
    ) -> Result<Vec<Proposal>> {
        let mut c = self.conn().await?;
        let ids: Vec<i64> =
            sqlx::query("SELECT id, subject, status FROM registry_proposals ORDER BY id DESC")
                .fetch_all(&mut *c)
                .await
                .map_err(sql)?
                .iter()
                .filter(|r| {
                    subject.is_none_or(|s| r.try_get::<String, _>("subject").is_ok_and(|x| x == s))
                        && status.is_none_or(|st| {
                            r.try_get::<String, _>("status")
                                .is_ok_and(|x| x == st.as_str())
                        })
                })
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()
                .map_err(sql)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = load(&mut c, id).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub async fn proposal(&self, id: i64) -> Result<Proposal> {
        let mut c = self.conn().await?;
        load(&mut c, id).await?.ok_or_else(|| not_found(id))
    }

    /// Records `principal`'s approval; on the last one needed, registers the schema.
    pub async fn approve(&self, id: i64, principal: &str, comment: &str) -> Result<Proposal> {
        let p = retrying!(self.record_approval(id, principal, comment).await)?;
        if (p.approvers().len() as i64) < p.required {
            return Ok(p);
        }
        let input = input_of(&p)?;
        let normalize = {
            let mut c = self.conn().await?;
            sqlx::query("SELECT normalize FROM registry_proposals WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *c)
                .await
                .map_err(sql)?
                .try_get::<i64, _>("normalize")
                .map_err(sql)?
                != 0
        };
        // Compatibility is checked again against the subject as it is now.
        match self.register(&p.subject, input.clone(), normalize).await {
            Ok(schema_id) => {
                let version = self
                    .lookup(&p.subject, input, normalize, false)
                    .await
                    .map(|v| v.version)
                    .ok();
                let mut tx = self.store().begin().await?;
                if set_status(&mut tx, id, Status::Approved, Some(schema_id), version).await? {
                    let note = format!(
                        "registered as version {} (id {schema_id})",
                        version.map_or_else(|| "?".to_owned(), |v| v.to_string())
                    );
                    add_event(&mut tx, id, "REGISTERED", principal, &note).await?;
                }
                tx.commit().await.map_err(sql)?;
                info!(
                    proposal = id,
                    subject = p.subject,
                    schema_id,
                    "proposal approved and registered"
                );
                self.proposal(id).await
            }
            Err(
                e @ (Error::Incompatible(_) | Error::InvalidSchema(_) | Error::NotPermitted(_)),
            ) => {
                let mut tx = self.store().begin().await?;
                if set_status(&mut tx, id, Status::Failed, None, None).await? {
                    add_event(&mut tx, id, "FAILED", principal, &e.to_string()).await?;
                }
                tx.commit().await.map_err(sql)?;
                info!(proposal = id, subject = p.subject, error = %e, "approved proposal could not be registered");
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn record_approval(&self, id: i64, principal: &str, comment: &str) -> Result<Proposal> {
        let mut tx = self.store().begin().await?;
        let p = load(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        if p.status != Status::Pending {
            return Err(Error::NotPermitted(format!(
                "proposal {id} is {}, not PENDING",
                p.status.as_str()
            )));
        }
        if principal == p.proposer {
            return Err(Error::NotPermitted(format!(
                "{principal} proposed {id} and cannot approve it"
            )));
        }
        if p.approvers().contains(&principal) {
            return Err(Error::NotPermitted(format!(
                "{principal} already approved proposal {id}"
            )));
        }
        add_event(&mut tx, id, "APPROVED", principal, comment).await?;
        let p = load(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        tx.commit().await.map_err(sql)?;
        info!(
            proposal = id,
            principal,
            approvals = p.approvers().len(),
            required = p.required,
            "proposal approved"
        );
        Ok(p)
    }

    /// Closes a pending proposal.
    pub async fn reject(&self, id: i64, principal: &str, comment: &str) -> Result<Proposal> {
        if comment.trim().is_empty() {
            return Err(Error::Unprocessable(
                "a rejection needs a comment saying why".to_owned(),
            ));
        }
        retrying!(
            async {
                let mut tx = self.store().begin().await?;
                let p = load(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
                if p.status != Status::Pending {
                    return Err(Error::NotPermitted(format!(
                        "proposal {id} is {}, not PENDING",
                        p.status.as_str()
                    )));
                }
                add_event(&mut tx, id, "REJECTED", principal, comment).await?;
                set_status(&mut tx, id, Status::Rejected, None, None).await?;
                tx.commit().await.map_err(sql)?;
                Ok(())
            }
            .await
        )?;
        info!(proposal = id, principal, "proposal rejected");
        self.proposal(id).await
    }
}

fn not_found(id: i64) -> Error {
    Error::ProposalNotFound(id)
}

// ---- HTTP ----

pub(crate) fn routes() -> Router<Registry> {
    Router::new()
        .route("/proposals", get(list))
        .route("/proposals/{id}", get(one))
        .route("/proposals/{id}/approve", post(approve))
        .route("/proposals/{id}/reject", post(reject))
        .route("/review/config", get(get_config).put(put_config))
        .route(
            "/review/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
}

fn answer(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    r
}

fn principal(h: &HeaderMap) -> Option<String> {
    h.get(PRINCIPAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn unauthorized() -> Response {
    answer(
        StatusCode::UNAUTHORIZED,
        &json!({ "error_code": 40101, "message": format!("the {PRINCIPAL_HEADER} header naming who acts is required") }),
    )
}

#[derive(Deserialize, Default)]
struct Comment {
    #[serde(default)]
    comment: Option<String>,
}

fn comment(body: Result<Bytes, BytesRejection>) -> Result<String, Error> {
    let bytes = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let c: Comment = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Unprocessable(format!("expected {{\"comment\": \"…\"}}: {e}")))?;
    let c = c.comment.unwrap_or_default();
    if c.chars().count() > MAX_COMMENT_CHARS {
        return Err(Error::Unprocessable(format!(
            "comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(c)
}

fn proposal_id(raw: &str) -> Result<i64, Error> {
    raw.parse().map_err(|_| Error::ProposalNotFound(-1))
}

/// Proposals carry schema text: listed only for subjects the caller may READ.
async fn list(
    State(r): State<Registry>,
    p: Option<Extension<Permissions>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, Error> {
    let p = p.as_ref().map(|Extension(p)| p);
    let status = match q.get("status") {
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            Error::Unprocessable(format!(
                "status {s:?} is none of PENDING, APPROVED, REJECTED, FAILED"
            ))
        })?),
        None => None,
    };
    let all = r
        .proposals(q.get("subject").map(String::as_str), status)
        .await?;
    Ok(answer(
        StatusCode::OK,
        &Value::Array(
            all.iter()
                .filter(|x| crate::auth::listed(p, weft_auth::Operation::Read, &x.subject))
                .map(Proposal::json)
                .collect(),
        ),
    ))
}

async fn one(
    State(r): State<Registry>,
    p: Option<Extension<Permissions>>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let p = p.as_ref().map(|Extension(p)| p);
    let proposal = r.proposal(proposal_id(&id)?).await?;
    if !crate::auth::may_read(p, &proposal.subject) {
        return Err(crate::auth::subject_denied(p, &proposal.subject));
    }
    Ok(answer(StatusCode::OK, &proposal.json()))
}

async fn approve(
    State(r): State<Registry>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let Some(who) = principal(&headers) else {
        return Ok(unauthorized());
    };
    let c = comment(body)?;
    let p = r.approve(proposal_id(&id)?, &who, &c).await?;
    Ok(answer(StatusCode::OK, &p.json()))
}

async fn reject(
    State(r): State<Registry>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let Some(who) = principal(&headers) else {
        return Ok(unauthorized());
    };
    let c = comment(body)?;
    let p = r.reject(proposal_id(&id)?, &who, &c).await?;
    Ok(answer(StatusCode::OK, &p.json()))
}

#[derive(Deserialize)]
struct ApprovalsRequest {
    approvals: i64,
}

async fn get_config(State(r): State<Registry>) -> Result<Response, Error> {
    Ok(answer(
        StatusCode::OK,
        &json!({ "approvals": r.review_approvals(None).await? }),
    ))
}

async fn get_subject_config(
    State(r): State<Registry>,
    Path(subject): Path<String>,
) -> Result<Response, Error> {
    Ok(answer(
        StatusCode::OK,
        &json!({ "approvals": r.review_approvals(Some(&subject)).await? }),
    ))
}

async fn put(
    r: &Registry,
    subject: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let bytes = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let req: ApprovalsRequest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Unprocessable(format!("expected {{\"approvals\": N}}: {e}")))?;
    r.set_review_approvals(subject, req.approvals).await?;
    Ok(answer(
        StatusCode::OK,
        &json!({ "approvals": req.approvals }),
    ))
}

async fn put_config(
    State(r): State<Registry>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    put(&r, None, body).await
}

async fn put_subject_config(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    put(&r, Some(&subject), body).await
}

/// Registrations in REVIEW subjects become proposals (`POST /subjects/{s}/versions`).
pub(crate) async fn intercept(State(r): State<Registry>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let parts: Vec<&str> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let subject = match parts.as_slice() {
        ["subjects", s, "versions"] => crate::deprecation::percent_decode(s),
        _ => None,
    };
    let Some(subject) = subject else {
        return next.run(req).await;
    };
    if !matches!(r.effective_mode(&subject).await, Ok(Mode::Review)) {
        return next.run(req).await;
    }
    let normalize = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.eq_ignore_ascii_case("normalize=true") || kv == "normalize=1")
    });
    let Some(proposer) = principal(req.headers()) else {
        return unauthorized();
    };
    let body = match axum::body::to_bytes(req.into_body(), crate::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return Error::PayloadTooLarge.into_response(),
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Error::BadRequest(format!("Unexpected character or end of input: {e}"))
                .into_response();
        }
    };
    let references: Vec<Reference> = match &v["references"] {
        Value::Null => Vec::new(),
        r => match serde_json::from_value(r.clone()) {
            Ok(r) => r,
            Err(e) => return Error::Unprocessable(format!("references: {e}")).into_response(),
        },
    };
    let input = SchemaInput {
        schema: v["schema"].as_str().unwrap_or_default().to_owned(),
        schema_type: v["schemaType"].as_str().map(str::to_owned),
        references,
        id: None,
        version: None,
    };
    match r.propose(&subject, input, normalize, &proposer).await {
        Ok(Proposed::Existing(id)) => answer(StatusCode::OK, &json!({ "id": id })),
        Ok(Proposed::New(p)) => answer(StatusCode::ACCEPTED, &json!({ "proposal": p.json() })),
        Err(e) => e.into_response(),
    }
}
