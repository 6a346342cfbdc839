//! The registry's tables and every query on them. Runs on any `AnyConnection`: a pooled
//! connection for reads, a `weft_store::Tx` for writes.
//!
//! Tables (migration 1):
//! - `registry_schemas`: one row per distinct schema (type + canonical form + references),
//!   identified by the global id; `fingerprint` (SHA-256 of those three) is UNIQUE, which is
//!   what makes two processes registering the same schema at once end up with one id.
//! - `registry_versions`: `(subject, version) → schema_id` with a soft-delete flag.
//!   Deprecation (sunset date, note) will be a later migration adding columns here.
//! - `registry_references`: the references of each schema, for `referencedby` and for
//!   refusing to delete a referenced version (42206).
//! - `registry_config`, `registry_modes`: per subject, the global row under `__GLOBAL`.
//! - `registry_counters`: the last schema id handed out. Ids are taken from it inside the
//!   registering transaction and never reused, even after a permanent delete.

use weft_schema::SchemaType;
use weft_store::sqlx::{self, AnyConnection, Row};
use weft_store::{Migration, Result};

use crate::Reference;

/// The key of the registry-wide row in `registry_config` and `registry_modes`.
pub(crate) const GLOBAL: &str = "__GLOBAL";

pub(crate) const MIGRATIONS: &[Migration] = &[Migration::both(
    1,
    "schemas, versions, references, config, modes",
    "CREATE TABLE registry_schemas (
        id BIGINT PRIMARY KEY,
        schema_type TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        schema_text TEXT NOT NULL,
        references_json TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE registry_versions (
        subject TEXT NOT NULL,
        version BIGINT NOT NULL,
        schema_id BIGINT NOT NULL REFERENCES registry_schemas (id),
        deleted BIGINT NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (subject, version)
    );
    CREATE INDEX registry_versions_by_schema ON registry_versions (schema_id);
    CREATE TABLE registry_references (
        schema_id BIGINT NOT NULL REFERENCES registry_schemas (id),
        ordinal BIGINT NOT NULL,
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (schema_id, ordinal)
    );
    CREATE INDEX registry_references_by_target ON registry_references (subject, version);
    CREATE TABLE registry_config (
        subject TEXT PRIMARY KEY,
        compatibility TEXT,
        normalize BIGINT
    );
    CREATE TABLE registry_modes (
        subject TEXT PRIMARY KEY,
        mode TEXT NOT NULL
    );
    CREATE TABLE registry_counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    INSERT INTO registry_counters (name, value) VALUES ('schema_id', 0);",
)];

/// One version of a subject, with what identifies its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRow {
    pub(crate) version: i64,
    pub(crate) schema_id: i64,
    pub(crate) deleted: bool,
    pub(crate) fingerprint: String,
}

/// A stored schema.
#[derive(Debug, Clone)]
pub(crate) struct SchemaRow {
    pub(crate) id: i64,
    pub(crate) schema_type: SchemaType,
    pub(crate) text: String,
    pub(crate) references: Vec<Reference>,
}

/// Every version of `subject`, soft-deleted ones included, oldest first.
pub(crate) async fn versions(c: &mut AnyConnection, subject: &str) -> Result<Vec<VersionRow>> {
    let rows = sqlx::query(
        "SELECT v.version, v.schema_id, v.deleted, s.fingerprint
         FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id
         WHERE v.subject = $1 ORDER BY v.version",
    )
    .bind(subject)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(VersionRow {
                version: r.try_get("version")?,
                schema_id: r.try_get("schema_id")?,
                deleted: r.try_get::<i64, _>("deleted")? != 0,
                fingerprint: r.try_get("fingerprint")?,
            })
        })
        .collect()
}

pub(crate) async fn schema(c: &mut AnyConnection, id: i64) -> Result<Option<SchemaRow>> {
    let row = sqlx::query(
        "SELECT id, schema_type, schema_text, references_json FROM registry_schemas WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        let ty: String = r.try_get("schema_type")?;
        let refs: String = r.try_get("references_json")?;
        Ok(SchemaRow {
            id: r.try_get("id")?,
            // Only valid names are ever written; a bad one is a corrupt row.
            schema_type: ty
                .parse()
                .map_err(|e| corrupt(format!("schema {id}: {e}")))?,
            text: r.try_get("schema_text")?,
            references: serde_json::from_str(&refs)
                .map_err(|e| corrupt(format!("schema {id} references: {e}")))?,
        })
    })
    .transpose()
}

fn corrupt(message: String) -> weft_store::Error {
    weft_store::Error::Sql(sqlx::Error::Decode(message.into()))
}

pub(crate) async fn schema_id_by_fingerprint(
    c: &mut AnyConnection,
    fingerprint: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT id FROM registry_schemas WHERE fingerprint = $1")
        .bind(fingerprint)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// Subjects with at least one version (a live one unless `deleted`), sorted.
pub(crate) async fn subjects(c: &mut AnyConnection, deleted: bool) -> Result<Vec<String>> {
    let sql = if deleted {
        "SELECT DISTINCT subject FROM registry_versions ORDER BY subject"
    } else {
        "SELECT DISTINCT subject FROM registry_versions WHERE deleted = 0 ORDER BY subject"
    };
    let rows = sqlx::query(sql).fetch_all(c).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("subject"))
        .collect::<Result<_, _>>()?)
}

/// `(subject, version, deleted)` of every version using schema `id`.
pub(crate) async fn uses_of_schema(
    c: &mut AnyConnection,
    id: i64,
) -> Result<Vec<(String, i64, bool)>> {
    let rows = sqlx::query(
        "SELECT subject, version, deleted FROM registry_versions WHERE schema_id = $1
         ORDER BY subject, version",
    )
    .bind(id)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("subject")?,
                r.try_get("version")?,
                r.try_get::<i64, _>("deleted")? != 0,
            ))
        })
        .collect()
}

/// Ids of the schemas referring to `subject` `version` that are used by a version (a live
/// one unless `any`).
pub(crate) async fn referrers(
    c: &mut AnyConnection,
    subject: &str,
    version: i64,
    any: bool,
) -> Result<Vec<i64>> {
    let sql = if any {
        "SELECT DISTINCT r.schema_id FROM registry_references r
         JOIN registry_versions v ON v.schema_id = r.schema_id
         WHERE r.subject = $1 AND r.version = $2 ORDER BY r.schema_id"
    } else {
        "SELECT DISTINCT r.schema_id FROM registry_references r
         JOIN registry_versions v ON v.schema_id = r.schema_id
         WHERE r.subject = $1 AND r.version = $2 AND v.deleted = 0 ORDER BY r.schema_id"
    };
    let rows = sqlx::query(sql)
        .bind(subject)
        .bind(version)
        .fetch_all(c)
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("schema_id"))
        .collect::<Result<_, _>>()?)
}

/// The next schema id; call inside the registering transaction (the counter row is locked
/// until it ends).
pub(crate) async fn next_schema_id(c: &mut AnyConnection) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE registry_counters SET value = value + 1 WHERE name = 'schema_id' RETURNING value",
    )
    .fetch_one(c)
    .await?;
    Ok(row.try_get("value")?)
}

/// The largest schema id handed out so far (0 before the first).
pub(crate) async fn max_schema_id(c: &mut AnyConnection) -> Result<i64> {
    let row = sqlx::query("SELECT value FROM registry_counters WHERE name = 'schema_id'")
        .fetch_one(c)
        .await?;
    Ok(row.try_get("value")?)
}

/// Raises the id counter to at least `id` (an id given in IMPORT mode).
pub(crate) async fn reserve_schema_id(c: &mut AnyConnection, id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE registry_counters SET value = CASE WHEN value < $1 THEN $1 ELSE value END
         WHERE name = 'schema_id'",
    )
    .bind(id)
    .execute(c)
    .await?;
    Ok(())
}

pub(crate) async fn insert_schema(
    c: &mut AnyConnection,
    id: i64,
    schema_type: SchemaType,
    fingerprint: &str,
    text: &str,
    references: &[Reference],
) -> Result<()> {
    let refs = serde_json::to_string(references)
        .map_err(|e| corrupt(format!("cannot encode references: {e}")))?;
    sqlx::query(
        "INSERT INTO registry_schemas
         (id, schema_type, fingerprint, schema_text, references_json, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(schema_type.as_str())
    .bind(fingerprint)
    .bind(text)
    .bind(refs)
    .bind(weft_store::now_ms())
    .execute(&mut *c)
    .await?;
    for (ordinal, r) in references.iter().enumerate() {
        sqlx::query(
            "INSERT INTO registry_references (schema_id, ordinal, name, subject, version)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(ordinal as i64)
        .bind(&r.name)
        .bind(&r.subject)
        .bind(r.version)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

pub(crate) async fn insert_version(
    c: &mut AnyConnection,
    subject: &str,
    version: i64,
    schema_id: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO registry_versions (subject, version, schema_id, deleted, created_ms)
         VALUES ($1, $2, $3, 0, $4)",
    )
    .bind(subject)
    .bind(version)
    .bind(schema_id)
    .bind(weft_store::now_ms())
    .execute(c)
    .await?;
    Ok(())
}

pub(crate) async fn soft_delete(c: &mut AnyConnection, subject: &str, version: i64) -> Result<()> {
    sqlx::query("UPDATE registry_versions SET deleted = 1 WHERE subject = $1 AND version = $2")
        .bind(subject)
        .bind(version)
        .execute(c)
        .await?;
    Ok(())
}

/// Removes a version row, then its schema when no version uses it any more.
pub(crate) async fn hard_delete(c: &mut AnyConnection, subject: &str, version: i64) -> Result<()> {
    let row = sqlx::query(
        "DELETE FROM registry_versions WHERE subject = $1 AND version = $2 RETURNING schema_id",
    )
    .bind(subject)
    .bind(version)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let id: i64 = row.try_get("schema_id")?;
    let used = sqlx::query("SELECT 1 FROM registry_versions WHERE schema_id = $1 LIMIT 1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    if used.is_none() {
        sqlx::query("DELETE FROM registry_references WHERE schema_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM registry_schemas WHERE id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// `(compatibility, normalize)` set for `subject` (or [`GLOBAL`]); `None` without a row.
pub(crate) async fn config(
    c: &mut AnyConnection,
    subject: &str,
) -> Result<Option<(Option<String>, Option<bool>)>> {
    let row =
        sqlx::query("SELECT compatibility, normalize FROM registry_config WHERE subject = $1")
            .bind(subject)
            .fetch_optional(c)
            .await?;
    row.map(|r| {
        Ok((
            r.try_get::<Option<String>, _>("compatibility")?,
            r.try_get::<Option<i64>, _>("normalize")?.map(|n| n != 0),
        ))
    })
    .transpose()
}

pub(crate) async fn set_config(
    c: &mut AnyConnection,
    subject: &str,
    compatibility: Option<&str>,
    normalize: Option<bool>,
) -> Result<()> {
    // COALESCE keeps what the request does not mention.
    sqlx::query(
        "INSERT INTO registry_config (subject, compatibility, normalize) VALUES ($1, $2, $3)
         ON CONFLICT (subject) DO UPDATE SET
           compatibility = COALESCE(excluded.compatibility, registry_config.compatibility),
           normalize = COALESCE(excluded.normalize, registry_config.normalize)",
    )
    .bind(subject)
    .bind(compatibility)
    .bind(normalize.map(i64::from))
    .execute(c)
    .await?;
    Ok(())
}

pub(crate) async fn delete_config(c: &mut AnyConnection, subject: &str) -> Result<()> {
    sqlx::query("DELETE FROM registry_config WHERE subject = $1")
        .bind(subject)
        .execute(c)
        .await?;
    Ok(())
}

pub(crate) async fn mode(c: &mut AnyConnection, subject: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT mode FROM registry_modes WHERE subject = $1")
        .bind(subject)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| r.try_get("mode")).transpose()?)
}

pub(crate) async fn set_mode(c: &mut AnyConnection, subject: &str, mode: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO registry_modes (subject, mode) VALUES ($1, $2)
         ON CONFLICT (subject) DO UPDATE SET mode = excluded.mode",
    )
    .bind(subject)
    .bind(mode)
    .execute(c)
    .await?;
    Ok(())
}

pub(crate) async fn delete_mode(c: &mut AnyConnection, subject: &str) -> Result<()> {
    sqlx::query("DELETE FROM registry_modes WHERE subject = $1")
        .bind(subject)
        .execute(c)
        .await?;
    Ok(())
}

/// Whether any version exists at all (IMPORT mode may only be entered on an empty registry).
pub(crate) async fn any_version(c: &mut AnyConnection) -> Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM registry_versions LIMIT 1")
        .fetch_optional(c)
        .await?
        .is_some())
}

/// How many schemas (distinct ids) are stored.
pub(crate) async fn count_schemas(c: &mut AnyConnection) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM registry_schemas")
        .fetch_one(c)
        .await?;
    Ok(row.try_get("n")?)
}
