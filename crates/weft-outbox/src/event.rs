//! The SDK helper: insert an outbox row inside the caller's transaction.
//!
//! ```ignore
//! let mut tx = pool.begin().await?;                      // the service's own sqlx pool
//! sqlx::query("UPDATE orders SET state = 'paid' WHERE id = $1").bind(id).execute(&mut *tx).await?;
//! let event = OutboxEvent::json("order", id.to_string(), "OrderPaid", &paid)?
//!     .with_context(Context { correlation_id: Some(corr), ..Context::default() });
//! let message_id = weft_outbox::insert(&mut tx, &event).await?;
//! tx.commit().await?;                                     // the row and the event, atomically
//! ```
//!
//! Works with `sqlx::Transaction` (and bare connections) of PostgreSQL, MySQL/MariaDB,
//! SQLite and the `Any` driver (so Weft's own `weft_store::Tx` too).

use std::future::Future;
use std::pin::Pin;

use crate::headers;
use crate::table::{Dialect, Table};

/// Correlation and trace context to stamp on an event. The Weft SDK's consumer context
/// converts into this; any service can fill it in from its own request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The conversation this event belongs to; defaults to the event's own message id.
    pub correlation_id: Option<String>,
    /// The message that caused this event (e.g. the command's or the consumed event's id).
    pub causation_id: Option<String>,
    /// W3C `traceparent` (`00-<trace-id>-<span-id>-<flags>`).
    pub traceparent: Option<String>,
    /// W3C `tracestate`, passed along with a `traceparent`.
    pub tracestate: Option<String>,
}

/// One event to insert. `payload` is bytes (the relay passes it through, or checks it is
/// JSON when the source says `payload = "json"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: Vec<u8>,
    /// Extra headers, published as Kafka record headers.
    pub headers: Vec<(String, String)>,
    pub context: Context,
}

/// Why an event was refused (nothing is inserted).
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("invalid outbox event: {0}")]
    Invalid(String),
    #[error("cannot insert outbox row: {0}")]
    Sql(#[from] sqlx::Error),
}

impl OutboxEvent {
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> OutboxEvent {
        OutboxEvent {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            payload: payload.into(),
            headers: Vec::new(),
            context: Context::default(),
        }
    }

    /// An event whose payload is `value` serialized as JSON.
    pub fn json(
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
        value: &impl serde::Serialize,
    ) -> Result<OutboxEvent, InsertError> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| InsertError::Invalid(format!("payload is not serializable: {e}")))?;
        Ok(OutboxEvent::new(
            aggregate_type,
            aggregate_id,
            event_type,
            payload,
        ))
    }

    pub fn with_context(mut self, context: Context) -> OutboxEvent {
        self.context = context;
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The row to insert: checks the event and stamps the message id and context headers.
    pub(crate) fn to_row(&self) -> Result<Row, InsertError> {
        for (what, v) in [
            ("aggregate type", &self.aggregate_type),
            ("aggregate id", &self.aggregate_id),
            ("event type", &self.event_type),
        ] {
            if v.is_empty() || v.len() > 255 {
                return Err(InsertError::Invalid(format!(
                    "{what} must be 1 to 255 bytes, got {}",
                    v.len()
                )));
            }
        }
        if let Some(tp) = &self.context.traceparent
            && !is_traceparent(tp)
        {
            return Err(InsertError::Invalid(format!(
                "traceparent {tp:?} is not W3C `00-<32 hex>-<16 hex>-<2 hex>`"
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut map = serde_json::Map::new();
        for (k, v) in &self.headers {
            if k.is_empty() {
                return Err(InsertError::Invalid("empty header name".to_owned()));
            }
            map.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let c = &self.context;
        let correlation = c.correlation_id.clone().unwrap_or_else(|| id.clone());
        map.insert(headers::CORRELATION_ID.to_owned(), correlation.into());
        if let Some(v) = &c.causation_id {
            map.insert(headers::CAUSATION_ID.to_owned(), v.clone().into());
        }
        if let Some(v) = &c.traceparent {
            map.insert(headers::TRACEPARENT.to_owned(), v.clone().into());
            if let Some(s) = &c.tracestate {
                map.insert(headers::TRACESTATE.to_owned(), s.clone().into());
            }
        }
        Ok(Row {
            id,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            event_type: self.event_type.clone(),
            payload: self.payload.clone(),
            headers: serde_json::Value::Object(map).to_string(),
        })
    }
}

fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

/// A stamped row, ready to insert.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Row {
    id: String,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: Vec<u8>,
    headers: String,
}

fn insert_sql(table: &Table, dialect: Dialect) -> String {
    let p = |n| dialect.param(n);
    let id = match dialect {
        Dialect::Postgres => "CAST($1 AS UUID)".to_owned(),
        _ => p(1),
    };
    format!(
        "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload, headers) \
         VALUES ({id}, {}, {}, {}, {}, {})",
        table.name(),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    )
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connection or transaction an outbox row can be inserted through. Implemented for
/// `sqlx::Transaction` and connections of PostgreSQL, MySQL, SQLite and `Any`.
pub trait OutboxExecutor: Send {
    #[doc(hidden)]
    fn outbox_insert<'a>(
        &'a mut self,
        table: &'a Table,
        row: &'a Row,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

macro_rules! typed_executor {
    ($conn:ty, $dialect:expr) => {
        impl OutboxExecutor for $conn {
            fn outbox_insert<'a>(
                &'a mut self,
                table: &'a Table,
                row: &'a Row,
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    let sql = insert_sql(table, $dialect);
                    sqlx::query(&sql)
                        .bind(&row.id)
                        .bind(&row.aggregate_type)
                        .bind(&row.aggregate_id)
                        .bind(&row.event_type)
                        .bind(&row.payload)
                        .bind(&row.headers)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                })
            }
        }
    };
}

typed_executor!(sqlx::PgConnection, Dialect::Postgres);
typed_executor!(sqlx::MySqlConnection, Dialect::MySql);
typed_executor!(sqlx::SqliteConnection, Dialect::Sqlite);

impl OutboxExecutor for sqlx::AnyConnection {
    fn outbox_insert<'a>(
        &'a mut self,
        table: &'a Table,
        row: &'a Row,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let dialect = match self.backend_name() {
                "PostgreSQL" => Dialect::Postgres,
                "MySQL" => Dialect::MySql,
                _ => Dialect::Sqlite,
            };
            let sql = insert_sql(table, dialect);
            sqlx::query(&sql)
                .bind(&row.id)
                .bind(&row.aggregate_type)
                .bind(&row.aggregate_id)
                .bind(&row.event_type)
                .bind(&row.payload)
                .bind(&row.headers)
                .execute(&mut *self)
                .await?;
            Ok(())
        })
    }
}

impl<DB> OutboxExecutor for sqlx::Transaction<'_, DB>
where
    DB: sqlx::Database,
    DB::Connection: OutboxExecutor,
{
    fn outbox_insert<'a>(
        &'a mut self,
        table: &'a Table,
        row: &'a Row,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        (**self).outbox_insert(table, row)
    }
}

/// Inserts `event` into the default table `weft_outbox` through `conn` (normally the
/// caller's open transaction) and returns its message id (a UUIDv7, the row's `id`).
pub async fn insert<E: OutboxExecutor + ?Sized>(
    conn: &mut E,
    event: &OutboxEvent,
) -> Result<uuid::Uuid, InsertError> {
    insert_into(conn, &Table::default(), event).await
}

/// [`insert`] into a named table.
pub async fn insert_into<E: OutboxExecutor + ?Sized>(
    conn: &mut E,
    table: &Table,
    event: &OutboxEvent,
) -> Result<uuid::Uuid, InsertError> {
    let row = event.to_row()?;
    let id = uuid::Uuid::parse_str(&row.id)
        .map_err(|e| InsertError::Invalid(format!("message id: {e}")))?;
    conn.outbox_insert(table, &row).await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_context() {
        let e = OutboxEvent::new("order", "42", "OrderPaid", b"{}".to_vec())
            .with_header("tenant", "acme")
            .with_context(Context {
                correlation_id: Some("c-1".into()),
                causation_id: Some("m-0".into()),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
                tracestate: Some("x=1".into()),
            });
        let row = e.to_row().expect("valid");
        let h: serde_json::Value = serde_json::from_str(&row.headers).expect("json");
        assert_eq!(h["tenant"], "acme");
        assert_eq!(h[headers::CORRELATION_ID], "c-1");
        assert_eq!(h[headers::CAUSATION_ID], "m-0");
        assert_eq!(h[headers::TRACESTATE], "x=1");
        let id = uuid::Uuid::parse_str(&row.id).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
    }

    #[test]
    fn correlation_defaults_to_message_id() {
        let row = OutboxEvent::new("a", "1", "T", Vec::new())
            .to_row()
            .expect("valid");
        let h: serde_json::Value = serde_json::from_str(&row.headers).expect("json");
        assert_eq!(h[headers::CORRELATION_ID], row.id.as_str());
        assert!(h.get(headers::TRACEPARENT).is_none());
    }

    #[test]
    fn refuses_bad_events() {
        let long = "x".repeat(256);
        let cases = [
            OutboxEvent::new("", "1", "T", Vec::new()),
            OutboxEvent::new("a", "", "T", Vec::new()),
            OutboxEvent::new("a", "1", long.as_str(), Vec::new()),
            OutboxEvent::new("a", "1", "T", Vec::new()).with_header("", "v"),
            OutboxEvent::new("a", "1", "T", Vec::new()).with_context(Context {
                traceparent: Some("00-zz-00f067aa0ba902b7-01".into()),
                ..Context::default()
            }),
        ];
        for e in cases {
            assert!(e.to_row().is_err(), "{e:?}");
        }
    }
}
