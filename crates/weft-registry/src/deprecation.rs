//! Deprecation of schema versions, beyond the Confluent API.
//!
//! `PUT /subjects/{s}/versions/{v}/deprecation` with `{"sunset": "<RFC 3339 date or
//! date-time>", "note": "…"}` marks a live version deprecated; `DELETE` on the same path
//! undoes it (and answers 200 whether or not it was deprecated). `GET` on it returns the
//! deprecation or 404.
//!
//! Answers about a deprecated version carry:
//! - `Deprecation: @<unix seconds>` (RFC 9745): when it was marked deprecated;
//! - `Sunset: <HTTP-date>` (RFC 8594): when it stops being supported;
//! - in JSON bodies, a `deprecation` object `{"sunset", "note", "deprecatedAt"}`.
//!
//! Which answers: `GET /subjects/{s}/versions/{v}` and `…/{v}/schema` for that version;
//! `GET /schemas/ids/{id}` and `…/{id}/schema` only when every live version using the id
//! (within `?subject=` when given) is deprecated, since a reader by id cannot say which
//! subject it reads for; then the earliest sunset is reported.
//!
//! Rows live in `registry_deprecations` (migrations of the component
//! [`COMPONENT`], separate from the core registry's so the two evolve independently). A row
//! remembers the schema id of the version it was made for and applies only while the version
//! still has it: a version number reused after a permanent delete is not deprecated by an
//! old row.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde_json::{Value, json};
use tracing::info;
use weft_store::sqlx::{self, AnyConnection, Row};
use weft_store::{Migration, Store};

use crate::{Error, Registry, Result, VersionSpec, storage};

/// The component name of the deprecation table's migrations.
pub(crate) const COMPONENT: &str = "registry-deprecations";

const MIGRATIONS: &[Migration] = &[Migration::both(
    1,
    "deprecations",
    "CREATE TABLE registry_deprecations (
        subject TEXT NOT NULL,
        version BIGINT NOT NULL,
        schema_id BIGINT NOT NULL,
        sunset_ms BIGINT NOT NULL,
        sunset TEXT NOT NULL,
        note TEXT NOT NULL,
        deprecated_ms BIGINT NOT NULL,
        PRIMARY KEY (subject, version)
    )",
)];

/// Longest note accepted.
const MAX_NOTE_CHARS: usize = 4096;

pub(crate) async fn migrate(store: &Store) -> Result<()> {
    store.migrate(COMPONENT, MIGRATIONS).await?;
    Ok(())
}

/// A version's deprecation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub subject: String,
    pub version: i64,
    /// The sunset as given (RFC 3339), and as Unix milliseconds.
    pub sunset: String,
    pub sunset_ms: i64,
    pub note: String,
    pub deprecated_ms: i64,
}

impl Deprecation {
    fn body(&self) -> Value {
        json!({
            "sunset": self.sunset,
            "note": self.note,
            "deprecatedAt": rfc3339(self.deprecated_ms),
        })
    }

    /// `Deprecation` (RFC 9745 structured date) and `Sunset` (RFC 8594 HTTP-date) headers.
    fn headers(&self) -> [(&'static str, String); 2] {
        [
            (
                "deprecation",
                format!("@{}", self.deprecated_ms.div_euclid(1000)),
            ),
            ("sunset", http_date(self.sunset_ms)),
        ]
    }
}

async fn row(c: &mut AnyConnection, subject: &str, version: i64) -> Result<Option<Deprecation>> {
    let r = sqlx::query(
        "SELECT d.sunset_ms, d.sunset, d.note, d.deprecated_ms FROM registry_deprecations d
         JOIN registry_versions v ON v.subject = d.subject AND v.version = d.version
           AND v.schema_id = d.schema_id
         WHERE d.subject = $1 AND d.version = $2",
    )
    .bind(subject)
    .bind(version)
    .fetch_optional(c)
    .await
    .map_err(weft_store::Error::from)?;
    r.map(|r| {
        Ok(Deprecation {
            subject: subject.to_owned(),
            version,
            sunset_ms: r.try_get("sunset_ms").map_err(weft_store::Error::from)?,
            sunset: r.try_get("sunset").map_err(weft_store::Error::from)?,
            note: r.try_get("note").map_err(weft_store::Error::from)?,
            deprecated_ms: r
                .try_get("deprecated_ms")
                .map_err(weft_store::Error::from)?,
        })
    })
    .transpose()
}

impl Registry {
    /// Marks `subject`'s version deprecated (replacing an earlier deprecation of it).
    pub async fn deprecate(
        &self,
        subject: &str,
        spec: VersionSpec,
        sunset: &str,
        note: &str,
    ) -> Result<Deprecation> {
        let sunset_ms = parse_rfc3339(sunset).ok_or_else(|| {
            Error::Unprocessable(format!(
                "sunset {sunset:?} is not an RFC 3339 date (2027-01-31) or date-time \
                 (2027-01-31T12:00:00Z)"
            ))
        })?;
        if note.chars().count() > MAX_NOTE_CHARS {
            return Err(Error::Unprocessable(format!(
                "note is longer than {MAX_NOTE_CHARS} characters"
            )));
        }
        if self.effective_mode(subject).await?.read_only() {
            return Err(Error::NotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        let mut tx = self.store().begin().await?;
        let rows = storage::versions(&mut tx, subject).await?;
        let v = crate::pick_version(subject, &rows, spec, false)?.clone();
        let now = weft_store::now_ms();
        sqlx::query(
            "INSERT INTO registry_deprecations
             (subject, version, schema_id, sunset_ms, sunset, note, deprecated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (subject, version) DO UPDATE SET schema_id = excluded.schema_id,
               sunset_ms = excluded.sunset_ms, sunset = excluded.sunset, note = excluded.note,
               deprecated_ms = excluded.deprecated_ms",
        )
        .bind(subject)
        .bind(v.version)
        .bind(v.schema_id)
        .bind(sunset_ms)
        .bind(sunset.trim())
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(weft_store::Error::from)?;
        tx.commit().await.map_err(weft_store::Error::from)?;
        info!(subject, version = v.version, sunset, "version deprecated");
        Ok(Deprecation {
            subject: subject.to_owned(),
            version: v.version,
            sunset: sunset.trim().to_owned(),
            sunset_ms,
            note: note.to_owned(),
            deprecated_ms: now,
        })
    }

    /// Removes a version's deprecation; whether there was one.
    pub async fn undeprecate(&self, subject: &str, spec: VersionSpec) -> Result<bool> {
        if self.effective_mode(subject).await?.read_only() {
            return Err(Error::NotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        let mut c = self.conn().await?;
        let rows = storage::versions(&mut c, subject).await?;
        let v = crate::pick_version(subject, &rows, spec, true)?;
        let done =
            sqlx::query("DELETE FROM registry_deprecations WHERE subject = $1 AND version = $2")
                .bind(subject)
                .bind(v.version)
                .execute(&mut *c)
                .await
                .map_err(weft_store::Error::from)?;
        Ok(done.rows_affected() > 0)
    }

    /// The deprecation of `subject`'s version, if it has one.
    pub async fn deprecation(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<Option<Deprecation>> {
        let mut c = self.conn().await?;
        let rows = storage::versions(&mut c, subject).await?;
        let v = crate::pick_version(subject, &rows, spec, true)?;
        row(&mut c, subject, v.version).await
    }

    /// The deprecation to report for schema `id`: the earliest-sunset one when every live
    /// version using it (in `subject`, when given) is deprecated; else `None`.
    pub async fn id_deprecation(
        &self,
        id: i64,
        subject: Option<&str>,
    ) -> Result<Option<Deprecation>> {
        let mut c = self.conn().await?;
        let uses: Vec<(String, i64)> = storage::uses_of_schema(&mut c, id)
            .await?
            .into_iter()
            .filter(|(s, _, deleted)| !deleted && subject.is_none_or(|w| w == s))
            .map(|(s, v, _)| (s, v))
            .collect();
        let mut earliest: Option<Deprecation> = None;
        for (s, v) in &uses {
            match row(&mut c, s, *v).await? {
                None => return Ok(None),
                Some(d) => {
                    if earliest.as_ref().is_none_or(|e| d.sunset_ms < e.sunset_ms) {
                        earliest = Some(d);
                    }
                }
            }
        }
        Ok(earliest)
    }
}

// ---- HTTP ----

/// The deprecation routes, merged into [`crate::router`].
pub(crate) fn routes() -> Router<Registry> {
    Router::new().route(
        "/subjects/{subject}/versions/{version}/deprecation",
        put(put_deprecation)
            .delete(delete_deprecation)
            .get(get_deprecation),
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

fn with_headers(mut r: Response, d: &Deprecation) -> Response {
    for (name, value) in d.headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

fn described(d: &Deprecation) -> Value {
    let mut b = d.body();
    b["subject"] = json!(d.subject);
    b["version"] = json!(d.version);
    b
}

async fn put_deprecation(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let spec = VersionSpec::parse(&version)?;
    let bytes = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let req: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadRequest(format!("Unexpected character or end of input: {e}")))?;
    let sunset = req["sunset"]
        .as_str()
        .ok_or_else(|| Error::Unprocessable("sunset (an RFC 3339 date) is required".to_owned()))?;
    let note = match &req["note"] {
        Value::Null => "",
        Value::String(n) => n.as_str(),
        _ => return Err(Error::Unprocessable("note must be a string".to_owned())),
    };
    let d = r.deprecate(&subject, spec, sunset, note).await?;
    Ok(with_headers(answer(StatusCode::OK, &described(&d)), &d))
}

async fn delete_deprecation(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, Error> {
    let spec = VersionSpec::parse(&version)?;
    let was = r.undeprecate(&subject, spec).await?;
    Ok(answer(
        StatusCode::OK,
        &json!({ "deprecated": false, "removed": was }),
    ))
}

async fn get_deprecation(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, Error> {
    let spec = VersionSpec::parse(&version)?;
    match r.deprecation(&subject, spec).await? {
        Some(d) => Ok(with_headers(answer(StatusCode::OK, &described(&d)), &d)),
        None => Ok(answer(
            StatusCode::NOT_FOUND,
            &json!({ "error_code": 40402, "message": format!("Subject '{subject}' version {version} is not deprecated") }),
        )),
    }
}

/// Adds the deprecation headers (and body field) to successful GETs of a version or an id.
pub(crate) async fn annotate(State(r): State<Registry>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let target = parse_target(&path, &query);
    let response = next.run(req).await;
    let Some(target) = target else {
        return response;
    };
    if response.status() != StatusCode::OK {
        return response;
    }
    let found = match &target {
        Target::Version {
            subject, version, ..
        } => match VersionSpec::parse(version) {
            Ok(spec) => r.deprecation(subject, spec).await,
            Err(_) => return response,
        },
        Target::Id { id, subject, .. } => r.id_deprecation(*id, subject.as_deref()).await,
    };
    let Ok(Some(d)) = found else {
        return response;
    };
    let raw_text = match &target {
        Target::Version { raw, .. } | Target::Id { raw, .. } => *raw,
    };
    let response = if raw_text {
        response
    } else {
        add_body_field(response, &d).await
    };
    with_headers(response, &d)
}

async fn add_body_field(response: Response, d: &Deprecation) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_BODY_BYTES * 4).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut o)) => {
            o.insert("deprecation".to_owned(), d.body());
            Body::from(Value::Object(o).to_string())
        }
        _ => Body::from(bytes),
    };
    let mut parts = parts;
    parts.headers.remove("content-length");
    Response::from_parts(parts, body)
}

enum Target {
    Version {
        subject: String,
        version: String,
        raw: bool,
    },
    Id {
        id: i64,
        subject: Option<String>,
        raw: bool,
    },
}

/// The version or id a GET path reads, if it is one of the annotated ones.
fn parse_target(path: &str, query: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["subjects", s, "versions", v] => Some(Target::Version {
            subject: percent_decode(s)?,
            version: percent_decode(v)?,
            raw: false,
        }),
        ["subjects", s, "versions", v, "schema"] => Some(Target::Version {
            subject: percent_decode(s)?,
            version: percent_decode(v)?,
            raw: true,
        }),
        ["schemas", "ids", id] | ["schemas", "ids", id, "schema"] => Some(Target::Id {
            id: id.parse().ok()?,
            subject: query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == "subject" && !v.is_empty()).then(|| percent_decode(v))?
            }),
            raw: parts.len() == 4,
        }),
        _ => None,
    }
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

// ---- dates ----

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

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix milliseconds of an RFC 3339 full-date (`2027-01-31`, midnight UTC) or date-time
/// (`2027-01-31T12:00:00Z`, `…T12:00:00.5+02:00`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
    };
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || m.len() != 2 || day.len() != 2 {
        return None;
    }
    let (y, m, day) = (num(y)?, num(m)?, num(day)?);
    if !(1..=12).contains(&m) || day < 1 || day > days_in_month(y, m) {
        return None;
    }
    let mut ms = days_from_civil(y, m, day) * 86_400_000;
    let Some(time) = time else { return Some(ms) };
    let (clock, offset_min) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 || off.len() != 6 {
            return None;
        }
        (c, sign * (oh * 60 + om))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let (h, mi, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || h.len() != 2 || mi.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let millis = match frac {
        None => 0,
        Some(f) => {
            num(f)?;
            let f = format!("{f:0<3}");
            f[..3].parse::<i64>().ok()?
        }
    };
    ms += ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + millis;
    Some(ms)
}

/// `2027-01-31T12:00:00Z` for Unix milliseconds.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The IMF-fixdate HTTP-date (`Sun, 31 Jan 2027 12:00:00 GMT`) for Unix milliseconds.
fn http_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let t = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let ok: &[(&str, i64)] = &[
            ("1970-01-01", 0),
            ("1970-01-02", 86_400_000),
            ("2000-02-29", 951_782_400_000),
            ("2027-01-31T12:00:00Z", 1_801_396_800_000),
            ("2027-01-31T14:00:00+02:00", 1_801_396_800_000),
            ("2027-01-31T11:30:00.250-00:30", 1_801_396_800_250),
            ("2027-01-31t12:00:00z", 1_801_396_800_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_rfc3339(s), Some(*ms), "{s}");
        }
        for bad in [
            "",
            "2027",
            "2027-1-31",
            "2027-02-29",
            "2027-13-01",
            "2027-00-10",
            "31/01/2027",
            "2027-01-31T25:00:00Z",
            "2027-01-31T12:00:00",
            "2027-01-31T12:00Z",
            "2027-01-31T12:00:00+2:00",
            "tomorrow",
            "2027-01-31T12:00:00.x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_written() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_801_396_800_000),
            "Sun, 31 Jan 2027 12:00:00 GMT"
        );
        assert_eq!(rfc3339(1_801_396_800_999), "2027-01-31T12:00:00Z");
        for days in [-1000, 0, 59, 10_000, 20_000, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn targets() {
        let v = |p: &str, q: &str| match parse_target(p, q) {
            Some(Target::Version {
                subject,
                version,
                raw,
            }) => format!("v {subject} {version} {raw}"),
            Some(Target::Id { id, subject, raw }) => format!("id {id} {subject:?} {raw}"),
            None => "none".to_owned(),
        };
        assert_eq!(
            v("/subjects/a%2Fb/versions/latest", ""),
            "v a/b latest false"
        );
        assert_eq!(v("/subjects/s/versions/2/schema", ""), "v s 2 true");
        assert_eq!(
            v("/schemas/ids/7", "subject=x-value&format=y"),
            "id 7 Some(\"x-value\") false"
        );
        assert_eq!(v("/schemas/ids/7/schema", ""), "id 7 None true");
        assert_eq!(v("/schemas/ids/7/versions", ""), "none");
        assert_eq!(v("/subjects/s/versions", ""), "none");
    }
}
