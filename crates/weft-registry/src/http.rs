//! The Confluent REST API over [`Registry`]: routes, query flags, request bodies, media
//! types and the `{"error_code", "message"}` error body.

use std::collections::HashMap;
use std::future::Future;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{error, warn};
use weft_auth::http::Permissions;
use weft_schema::{CompatibilityLevel, SchemaType};

use crate::auth;

use crate::{
    Error, Mode, Reference, Registry, SchemaInput, SchemaOutput, VersionOutput, VersionSpec,
};

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

const V1_JSON: &str = "application/vnd.schemaregistry.v1+json";
const SR_JSON: &str = "application/vnd.schemaregistry+json";
const JSON: &str = "application/json";
/// Request bodies Confluent's registry accepts.
const REQUEST_TYPES: [&str; 4] = [V1_JSON, SR_JSON, JSON, "application/octet-stream"];

/// Every route of the API.
pub fn router(registry: Registry) -> Router {
    router_with_auth(registry, None)
}

/// Every route of the API behind `auth` (authentication, scopes and ACLs: [`crate::auth`]),
/// inside the metrics layer so refusals are counted, outside the review and deprecation
/// layers so they see the authenticated principal.
pub fn router_with_auth(registry: Registry, auth: Option<weft_auth::http::AuthLayer>) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_text),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas", get(list_schemas))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_latest),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route("/contexts", get(contexts))
        .merge(crate::deprecation::routes())
        .merge(crate::review::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            registry.clone(),
            crate::deprecation::annotate,
        ))
        .layer(middleware::from_fn_with_state(
            registry.clone(),
            crate::review::intercept,
        ))
        .layer(middleware::from_fn(media_types))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let routes = match auth {
        Some(auth) => routes.layer(auth),
        None => routes,
    };
    routes
        // Outermost: counts every answer, refusals by the layers above included.
        .layer(middleware::from_fn(crate::metrics::observe))
        .with_state(registry)
}

/// Serves the API on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_auth(listener, registry, None, shutdown).await
}

/// [`serve`] behind `auth`; the peer address reaches the ACL host check.
pub async fn serve_with_auth(
    listener: TcpListener,
    registry: Registry,
    auth: Option<weft_auth::http::AuthLayer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with_auth(registry, auth)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

// ---- responses ----

/// A JSON answer in the registry's media type (adjusted to `Accept` by [`media_types`]).
fn reply(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => raw(status, body),
        Err(e) => Error::Internal(format!("cannot encode response: {e}")).into_response(),
    }
}

fn ok(value: &impl Serialize) -> Response {
    reply(StatusCode::OK, value)
}

fn raw(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V1_JSON));
    r
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            error!(error = %self, "registry request failed");
        }
        reply(
            status,
            &json!({ "error_code": self.error_code(), "message": self.to_string() }),
        )
    }
}

type ApiResult = Result<Response, Error>;

/// The body of a schema in API answers: `schemaType` left out for AVRO and `references`
/// when empty, as Confluent does.
#[derive(Serialize)]
struct SchemaBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    #[serde(rename = "schemaType", skip_serializing_if = "Option::is_none")]
    schema_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    references: &'a [Reference],
    schema: &'a str,
}

fn schema_type_field(t: SchemaType) -> Option<&'static str> {
    (t != SchemaType::Avro).then(|| t.as_str())
}

fn version_body(v: &VersionOutput) -> SchemaBody<'_> {
    SchemaBody {
        subject: Some(&v.subject),
        version: Some(v.version),
        id: Some(v.schema.id),
        schema_type: schema_type_field(v.schema.schema_type),
        references: &v.schema.references,
        schema: &v.schema.schema,
    }
}

fn id_body(s: &SchemaOutput) -> SchemaBody<'_> {
    SchemaBody {
        subject: None,
        version: None,
        id: None,
        schema_type: schema_type_field(s.schema_type),
        references: &s.references,
        schema: &s.schema,
    }
}

// ---- requests ----

type Params = Query<HashMap<String, String>>;

/// The caller's rights when the listener authorises (`auth.rs`'s per-item decisions).
type Perms = Option<Extension<Permissions>>;

fn perms(p: &Perms) -> Option<&Permissions> {
    p.as_ref().map(|Extension(p)| p)
}

/// 404 for an unknown id; 403 (40301) unless the caller may read a subject holding it
/// (soft-deleted ones included: their schemas stay readable by id).
async fn readable_id(r: &Registry, id: i64, p: Option<&Permissions>) -> Result<(), Error> {
    if p.is_none() {
        return Ok(());
    }
    let mut holders: Vec<String> = r
        .schema_uses(id, true)
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    holders.dedup();
    if auth::may_read_any(p, holders.iter().map(String::as_str)) {
        Ok(())
    } else {
        Err(auth::schema_denied(p, id))
    }
}

/// A boolean query flag; clients send `true`, `True` (Python) or `1`.
fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `offset`/`limit` paging (Confluent 7.x): `items` from `offset`, at most `limit` of them
/// (all when `limit` is negative or absent). Applied after authorisation filtering, so pages
/// are pages of what the caller may see.
fn page<T>(q: &HashMap<String, String>, items: Vec<T>) -> Result<Vec<T>, Error> {
    let number = |name: &str, default: i64| -> Result<i64, Error> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| Error::BadRequest(format!("{name} must be an integer, not {v:?}")))
        })
    };
    let offset = usize::try_from(number("offset", 0)?).unwrap_or(0);
    let limit = usize::try_from(number("limit", -1)?).unwrap_or(usize::MAX);
    Ok(items.into_iter().skip(offset).take(limit).collect())
}

/// The body as JSON of type `T`: 413 over the limit, 400 when it is not JSON, 422 when it is
/// JSON of the wrong shape.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Error> {
    let bytes = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Error::PayloadTooLarge);
        }
        Err(rejection) => return Err(Error::BadRequest(rejection.body_text())),
    };
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Error::Unprocessable(format!("Unrecognized field or value: {e}"))
        }
        _ => Error::BadRequest(format!("Unexpected character or end of input: {e}")),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: Option<String>,
    schema_type: Option<String>,
    references: Option<Vec<Reference>>,
    version: Option<i64>,
    id: Option<i64>,
}

impl From<SchemaRequest> for SchemaInput {
    fn from(r: SchemaRequest) -> SchemaInput {
        SchemaInput {
            schema: r.schema.unwrap_or_default(),
            schema_type: r.schema_type,
            references: r.references.unwrap_or_default(),
            id: r.id,
            version: r.version,
        }
    }
}

fn schema_input(body: Result<Bytes, BytesRejection>) -> Result<SchemaInput, Error> {
    Ok(json_body::<SchemaRequest>(body)?.into())
}

fn schema_id(raw: &str) -> Result<i64, Error> {
    raw.parse()
        .map_err(|_| Error::SchemaNotFound(raw.to_owned()))
}

// ---- handlers ----

async fn root() -> Response {
    ok(&json!({}))
}

async fn list_subjects(State(r): State<Registry>, p: Perms, Query(q): Params) -> ApiResult {
    let deleted = flag(&q, "deleted") || flag(&q, "deletedOnly");
    let mut subjects = r
        .subjects(deleted, q.get("subjectPrefix").map(String::as_str))
        .await?;
    if flag(&q, "deletedOnly") {
        let live = r.subjects(false, None).await?;
        subjects.retain(|s| !live.contains(s));
    }
    Ok(ok(&page(&q, auth::visible(perms(&p), subjects))?))
}

async fn lookup(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let input = schema_input(body)?;
    let v = r
        .lookup(&subject, input, flag(&q, "normalize"), flag(&q, "deleted"))
        .await?;
    Ok(ok(&version_body(&v)))
}

async fn delete_subject(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    Ok(ok(&r
        .delete_subject(&subject, flag(&q, "permanent"))
        .await?))
}

async fn list_versions(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let deleted = flag(&q, "deleted") || flag(&q, "deletedOnly");
    let mut versions = r.versions(&subject, deleted).await?;
    if flag(&q, "deletedOnly") {
        let live = r.versions(&subject, false).await.unwrap_or_default();
        versions.retain(|v| !live.contains(v));
    }
    Ok(ok(&versions))
}

async fn register(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let input = schema_input(body)?;
    let id = r.register(&subject, input, flag(&q, "normalize")).await?;
    Ok(ok(&json!({ "id": id })))
}

async fn get_version(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let mut v = r.version(&subject, spec, flag(&q, "deleted")).await?;
    v.schema = r
        .render(v.schema, q.get("format").map(String::as_str))
        .await?;
    Ok(ok(&version_body(&v)))
}

async fn get_version_text(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    let v = r.version(&subject, spec, flag(&q, "deleted")).await?;
    Ok(raw(StatusCode::OK, v.schema.schema))
}

async fn referenced_by(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    Ok(ok(&r.referenced_by(&subject, spec).await?))
}

async fn delete_version(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    Ok(ok(&r
        .delete_version(&subject, spec, flag(&q, "permanent"))
        .await?))
}

/// `GET /schemas?subjectPrefix=&deleted=&latestOnly=&offset=&limit=` (Confluent 7.x): the
/// versions of the subjects the caller may READ; `offset`/`limit` page over those.
async fn list_schemas(State(r): State<Registry>, p: Perms, Query(q): Params) -> ApiResult {
    let p = perms(&p);
    let deleted = flag(&q, "deleted");
    let subjects: Vec<String> = r
        .subjects(deleted, q.get("subjectPrefix").map(String::as_str))
        .await?
        .into_iter()
        .filter(|s| auth::listed(p, weft_auth::Operation::Read, s))
        .collect();
    let all = r
        .schemas(&subjects, deleted, flag(&q, "latestOnly"))
        .await?;
    let shown = page(&q, all)?;
    Ok(ok(&shown.iter().map(version_body).collect::<Vec<_>>()))
}

async fn schema_types() -> Response {
    ok(&["JSON", "PROTOBUF", "AVRO"])
}

async fn schema_by_id(
    State(r): State<Registry>,
    Path(id): Path<String>,
    p: Perms,
    Query(q): Params,
) -> ApiResult {
    let id = schema_id(&id)?;
    readable_id(&r, id, perms(&p)).await?;
    let s = r
        .schema_by_id(id, q.get("subject").map(String::as_str))
        .await?;
    let s = r.render(s, q.get("format").map(String::as_str)).await?;
    let mut body = serde_json::to_value(id_body(&s))
        .map_err(|e| Error::Internal(format!("cannot encode response: {e}")))?;
    if flag(&q, "fetchMaxId")
        && let Value::Object(map) = &mut body
    {
        // The largest id handed out so far (clients use it to size id caches).
        map.insert("maxId".to_owned(), json!(r.max_schema_id().await?));
    }
    Ok(ok(&body))
}

async fn schema_text_by_id(
    State(r): State<Registry>,
    Path(id): Path<String>,
    p: Perms,
    Query(q): Params,
) -> ApiResult {
    let id = schema_id(&id)?;
    readable_id(&r, id, perms(&p)).await?;
    let s = r
        .schema_by_id(id, q.get("subject").map(String::as_str))
        .await?;
    Ok(raw(StatusCode::OK, s.schema))
}

async fn schema_subjects(
    State(r): State<Registry>,
    Path(id): Path<String>,
    p: Perms,
    Query(q): Params,
) -> ApiResult {
    let id = schema_id(&id)?;
    readable_id(&r, id, perms(&p)).await?;
    let mut subjects: Vec<String> = r
        .schema_uses(id, flag(&q, "deleted"))
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    Ok(ok(&page(&q, auth::visible(perms(&p), subjects))?))
}

async fn schema_versions(
    State(r): State<Registry>,
    Path(id): Path<String>,
    p: Perms,
    Query(q): Params,
) -> ApiResult {
    let id = schema_id(&id)?;
    let p = perms(&p);
    readable_id(&r, id, p).await?;
    let uses: Vec<Value> = r
        .schema_uses(id, flag(&q, "deleted"))
        .await?
        .into_iter()
        .filter(|(subject, _)| auth::may_see(p, subject))
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(ok(&page(&q, uses)?))
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
    normalize: Option<bool>,
}

async fn get_global_config(State(r): State<Registry>) -> ApiResult {
    let level = r.get_compatibility(None, false).await?;
    Ok(ok(&json!({ "compatibilityLevel": level.as_str() })))
}

async fn get_subject_config(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let level = r
        .get_compatibility(Some(&subject), flag(&q, "defaultToGlobal"))
        .await?;
    Ok(ok(&json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_config(
    r: &Registry,
    subject: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: ConfigRequest = json_body(body)?;
    let level = req
        .compatibility
        .or(req.compatibility_level)
        .map(|l| {
            l.parse::<CompatibilityLevel>()
                .map_err(|_| Error::InvalidCompatibility)
        })
        .transpose()?;
    r.set_compatibility(subject, level, req.normalize).await?;
    let mut out = serde_json::Map::new();
    if let Some(level) = level {
        out.insert("compatibility".to_owned(), json!(level.as_str()));
    }
    if let Some(n) = req.normalize {
        out.insert("normalize".to_owned(), json!(n));
    }
    Ok(ok(&out))
}

async fn put_global_config(
    State(r): State<Registry>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    put_config(&r, None, body).await
}

async fn put_subject_config(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    put_config(&r, Some(&subject), body).await
}

async fn delete_global_config(State(r): State<Registry>) -> ApiResult {
    let before = r.delete_compatibility(None).await?;
    Ok(ok(&json!({ "compatibilityLevel": before.as_str() })))
}

async fn delete_subject_config(
    State(r): State<Registry>,
    Path(subject): Path<String>,
) -> ApiResult {
    let before = r.delete_compatibility(Some(&subject)).await?;
    Ok(ok(&json!({ "compatibilityLevel": before.as_str() })))
}

#[derive(Deserialize)]
struct ModeRequest {
    mode: Option<String>,
}

async fn get_global_mode(State(r): State<Registry>) -> ApiResult {
    Ok(ok(
        &json!({ "mode": r.get_mode(None, false).await?.as_str() }),
    ))
}

async fn get_subject_mode(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let mode = r
        .get_mode(Some(&subject), flag(&q, "defaultToGlobal"))
        .await?;
    Ok(ok(&json!({ "mode": mode.as_str() })))
}

async fn put_mode(
    r: &Registry,
    subject: Option<&str>,
    q: &HashMap<String, String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req: ModeRequest = json_body(body)?;
    let mode: Mode = req.mode.as_deref().unwrap_or_default().parse()?;
    r.set_mode(subject, mode, flag(q, "force")).await?;
    Ok(ok(&json!({ "mode": mode.as_str() })))
}

async fn put_global_mode(
    State(r): State<Registry>,
    Query(q): Params,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    put_mode(&r, None, &q, body).await
}

async fn put_subject_mode(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    put_mode(&r, Some(&subject), &q, body).await
}

async fn delete_subject_mode(State(r): State<Registry>, Path(subject): Path<String>) -> ApiResult {
    let before = r.delete_mode(&subject).await?;
    Ok(ok(&json!({ "mode": before.as_str() })))
}

async fn check(
    r: &Registry,
    subject: &str,
    version: Option<VersionSpec>,
    q: &HashMap<String, String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let input = schema_input(body)?;
    let report = r
        .check_compatibility(subject, version, input, flag(q, "normalize"))
        .await?;
    Ok(if flag(q, "verbose") {
        ok(&json!({ "is_compatible": report.is_compatible, "messages": report.messages }))
    } else {
        ok(&json!({ "is_compatible": report.is_compatible }))
    })
}

async fn check_latest(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    check(&r, &subject, None, &q, body).await
}

async fn check_version(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let spec = VersionSpec::parse(&version)?;
    check(&r, &subject, Some(spec), &q, body).await
}

async fn contexts() -> Response {
    // Only the default context exists.
    ok(&["."])
}

async fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        &json!({ "error_code": 404, "message": "HTTP 404 Not Found" }),
    )
}

async fn method_not_allowed() -> Response {
    reply(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({ "error_code": 405, "message": "HTTP 405 Method Not Allowed" }),
    )
}

// ---- media types ----

/// The media type part of a header value, without parameters.
fn essence(v: &str) -> &str {
    v.split(';').next().unwrap_or("").trim()
}

/// Refuses request bodies of other media types (415) and answers in the first of the
/// registry's types the client's `Accept` names (v1 by default).
async fn media_types(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::POST | Method::PUT)
        && let Some(ct) = req.headers().get(header::CONTENT_TYPE)
    {
        let ct = ct.to_str().unwrap_or("");
        if !REQUEST_TYPES
            .iter()
            .any(|t| essence(ct).eq_ignore_ascii_case(t))
        {
            warn!(content_type = ct, "refusing request body media type");
            return reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &json!({ "error_code": 415, "message": "HTTP 415 Unsupported Media Type" }),
            );
        }
    }
    let wanted = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| {
            a.split(',').map(essence).find_map(|t| {
                [V1_JSON, SR_JSON, JSON]
                    .into_iter()
                    .find(|k| t.eq_ignore_ascii_case(k))
            })
        })
        .unwrap_or(V1_JSON);
    let mut response = next.run(req).await;
    if wanted != V1_JSON
        && response.headers().get(header::CONTENT_TYPE) == Some(&HeaderValue::from_static(V1_JSON))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(wanted));
    }
    response
}
