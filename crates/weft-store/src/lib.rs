//! Weft's state store: the one place that opens database connections.
//!
//! Every stateful component (the schema registry now; event store, outbox, ACLs later) keeps
//! its rows in one database: SQLite in the data directory by default (`<data-dir>/state.db`,
//! WAL mode, a busy timeout), or PostgreSQL when the URL is `postgres://…`. Several Weft
//! processes may share one PostgreSQL database; a SQLite file belongs to one process (the data
//! directory lock guarantees it).
//!
//! - [`Store::open`] connects, and fails with an [`Error::Connect`] naming the URL with its
//!   password hidden ([`redact`]) — never a panic.
//! - [`Store::migrate`] applies a component's ordered [`Migration`]s, each once, inside one
//!   transaction. The `weft_migrations` table records `(component, version, checksum)`; a
//!   migration whose text changed after it was applied, or a database that has migrations this
//!   binary does not know, is refused with a clear error instead of being guessed at.
//! - [`Store::begin`] hands out a [`Tx`] that components run their own queries in, so rows of
//!   several components commit atomically.
//!
//! Queries are written once for both backends through sqlx's `Any` driver: `$1`-style
//! parameters (SQLite accepts them too), `BIGINT` for integers and booleans (0/1), `TEXT` for
//! strings. Migrations may differ per backend. Components never depend on sqlx themselves;
//! they use the re-exported [`sqlx`].

#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Row};
use tracing::info;

pub use sqlx;

/// A transaction on the store. Run queries with `sqlx::query(…).execute(&mut **tx)`; commit
/// with `tx.commit().await`. Dropped without a commit, it rolls back.
pub type Tx = sqlx::Transaction<'static, Any>;

/// How long a SQLite connection waits for another writer before giving up with "busy".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;
/// How long acquiring a connection (including the first connect) may take.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported database URL {url}: expected postgres://… or sqlite:…")]
    UnsupportedUrl { url: String },
    // The cause is the `source`, not repeated here: error chains print it once.
    #[error("cannot connect to database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database {url}: {component} migration {version} ({name}) was changed after it was \
         applied (checksum {stored} in the database, {expected} in this binary)"
    )]
    ChecksumMismatch {
        url: String,
        component: String,
        version: i64,
        name: String,
        stored: String,
        expected: String,
    },
    #[error(
        "database {url} has {component} migration {version}, newer than this binary knows \
         (up to {known}); run a newer weft against it"
    )]
    DatabaseTooNew {
        url: String,
        component: String,
        version: i64,
        known: i64,
    },
    #[error("database {url}: {component} migration {version} ({name}) failed")]
    Migration {
        url: String,
        component: String,
        version: i64,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("invalid migration list for {component}: {message}")]
    InvalidMigrations { component: String, message: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying the whole transaction may succeed: a uniqueness conflict with a
    /// concurrent writer, a PostgreSQL serialization failure or deadlock, a busy SQLite file.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sql(e) => is_retryable(e),
            _ => false,
        }
    }
}

/// See [`Error::is_retryable`].
pub fn is_retryable(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if db.is_unique_violation() {
        return true;
    }
    match db.code().as_deref() {
        // PostgreSQL: serialization_failure, deadlock_detected.
        Some("40001" | "40P01") => true,
        // SQLite: BUSY (5) and LOCKED (6), with their extended codes (BUSY_SNAPSHOT = 517…).
        Some(code) => code
            .parse::<i32>()
            .map(|c| matches!(c & 0xff, 5 | 6))
            .unwrap_or(false),
        None => false,
    }
}

/// Whether `e` is a violated uniqueness constraint.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The two supported databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// One step of a component's schema. Versions start at 1 and increase by one; a migration is
/// never edited once released (its checksum is recorded), only followed by a new one.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Statements for SQLite, separated by `;`.
    pub sqlite: &'static str,
    /// Statements for PostgreSQL, separated by `;`.
    pub postgres: &'static str,
}

impl Migration {
    /// The same statements on both backends.
    pub const fn both(version: i64, name: &'static str, sql: &'static str) -> Migration {
        Migration {
            version,
            name,
            sqlite: sql,
            postgres: sql,
        }
    }

    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// A pool of connections to the state database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL with its password hidden, for messages.
    url: String,
}

impl Store {
    /// Opens the SQLite database at `path` (created when missing).
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Store::open(&sqlite_url(path)).await
    }

    /// Connects to `url`: `postgres://…`/`postgresql://…` or `sqlite:<path>` (created when
    /// missing). The error names the URL with its password hidden.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let backend =
            backend_of(url).ok_or_else(|| Error::UnsupportedUrl { url: shown.clone() })?;
        let url = match backend {
            // `mode=rwc`: create the file when it does not exist.
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let connect_error = |source| Error::Connect {
            url: shown.clone(),
            source,
        };
        let options: AnyConnectOptions = url.parse().map_err(connect_error)?;
        // One direct connection first: the pool would retry until its acquire timeout and
        // then report only "timed out", hiding the cause (refused, auth, no such database).
        let probe = options.connect().await.map_err(connect_error)?;
        probe.close().await.map_err(connect_error)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer; the busy timeout makes a
                        // second writer wait instead of failing at once; foreign keys are
                        // off by default in SQLite.
                        conn.execute(sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;",
                        ))
                        .await?;
                        let busy = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
                        conn.execute(sqlx::raw_sql(&busy)).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        info!(url = %shown, backend = backend.as_str(), "state store connected");
        Ok(Store {
            pool,
            backend,
            url: shown,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection pool, for single statements outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (waits for the checked-out ones to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Applies `component`'s migrations that are not applied yet, in order, in one
    /// transaction. Refuses a changed migration or a database newer than `migrations`.
    pub async fn migrate(&self, component: &str, migrations: &[Migration]) -> Result<()> {
        for (i, m) in migrations.iter().enumerate() {
            if m.version != i as i64 + 1 {
                return Err(Error::InvalidMigrations {
                    component: component.to_owned(),
                    message: format!("migration {} is at position {}", m.version, i + 1),
                });
            }
        }
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            // Two processes starting against one database: the second waits here until the
            // first has committed, then sees its rows (the lock ends with the transaction).
            sqlx::query("SELECT pg_advisory_xact_lock(77656674)")
                .execute(&mut *tx)
                .await?;
        }
        tx.execute(sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS weft_migrations (
                component TEXT NOT NULL,
                version BIGINT NOT NULL,
                name TEXT NOT NULL,
                checksum TEXT NOT NULL,
                applied_ms BIGINT NOT NULL,
                PRIMARY KEY (component, version)
            )",
        ))
        .await?;
        let applied = sqlx::query(
            "SELECT version, checksum FROM weft_migrations WHERE component = $1 ORDER BY version",
        )
        .bind(component)
        .fetch_all(&mut *tx)
        .await?;
        let known = migrations.len() as i64;
        let mut done = 0;
        for row in applied {
            let version: i64 = row.try_get("version")?;
            let stored: String = row.try_get("checksum")?;
            let Some(m) = migrations.get((version - 1).max(0) as usize) else {
                return Err(Error::DatabaseTooNew {
                    url: self.url.clone(),
                    component: component.to_owned(),
                    version,
                    known,
                });
            };
            let expected = checksum(m.sql(self.backend));
            if stored != expected {
                return Err(Error::ChecksumMismatch {
                    url: self.url.clone(),
                    component: component.to_owned(),
                    version,
                    name: m.name.to_owned(),
                    stored,
                    expected,
                });
            }
            done = done.max(version);
        }
        for m in &migrations[done as usize..] {
            let sql = m.sql(self.backend);
            let failed = |source| Error::Migration {
                url: self.url.clone(),
                component: component.to_owned(),
                version: m.version,
                name: m.name.to_owned(),
                source,
            };
            tx.execute(sqlx::raw_sql(sql)).await.map_err(failed)?;
            sqlx::query(
                "INSERT INTO weft_migrations (component, version, name, checksum, applied_ms)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(component)
            .bind(m.version)
            .bind(m.name)
            .bind(checksum(sql))
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            info!(
                component,
                version = m.version,
                name = m.name,
                "migration applied"
            );
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `sqlite:` URL of a file path.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else {
        None
    }
}

/// `url` with the password of its `user:password@` part replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    // The authority ends at the first `/`, `?` or `#`; the password is before its last `@`.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end],
        &userinfo[..colon],
        &url[scheme_end + at..]
    )
}

/// FNV-1a 64 of the migration text: enough to notice an edited migration.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgresql://u:p@ss@h/db?x=1",
                "postgresql://u:***@h/db?x=1",
            ),
            ("postgres://u:p@h", "postgres://u:***@h"),
            (
                "sqlite:///tmp/a@b:c/state.db",
                "sqlite:///tmp/a@b:c/state.db",
            ),
            ("sqlite:state.db", "sqlite:state.db"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn backends() {
        assert_eq!(backend_of("postgres://x"), Some(Backend::Postgres));
        assert_eq!(backend_of("postgresql://x"), Some(Backend::Postgres));
        assert_eq!(backend_of("sqlite:x.db"), Some(Backend::Sqlite));
        assert_eq!(backend_of("sqlite:///x.db"), Some(Backend::Sqlite));
        assert_eq!(backend_of("mysql://x"), None);
    }

    #[test]
    fn checksums_differ() {
        assert_ne!(
            checksum("CREATE TABLE a (x BIGINT)"),
            checksum("CREATE TABLE a (y BIGINT)")
        );
        assert_eq!(checksum("x"), checksum("x"));
    }
}
