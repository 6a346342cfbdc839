//! Test support: the same suite on both backends, each PostgreSQL test in a database of its
//! own so tests run in parallel.
//!
//! PostgreSQL is found at `$WEFT_TEST_POSTGRES_URL`, else `postgres://127.0.0.1:5432/test`
//! (trust auth; `cargo xtask test` starts a throwaway cluster and sets the variable when
//! nothing answers there). When it cannot be reached the test fails naming the service: a
//! backend that is not tested is not silently skipped.

use std::path::PathBuf;

use crate::{Backend, Store, redact};

/// Where tests find PostgreSQL.
pub const POSTGRES_URL_VAR: &str = "WEFT_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://127.0.0.1:5432/test";

/// The administrative URL of the test PostgreSQL.
pub fn postgres_base_url() -> String {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// A database that lives as long as the value: a fresh PostgreSQL database (dropped on drop)
/// or a SQLite file in a temporary directory (removed on drop).
pub struct TestDb {
    /// The URL to open it with (PostgreSQL: with the password, if any).
    pub url: String,
    backend: Backend,
    /// PostgreSQL: the administrative URL and the database name to drop.
    postgres: Option<(String, String)>,
    _dir: Option<tempdir::Dir>,
}

mod tempdir {
    /// A directory removed on drop (std only: this module is compiled into a library).
    pub(super) struct Dir(pub(super) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestDb {
    /// A fresh database on `backend`. Panics (failing the test) when PostgreSQL is
    /// unreachable.
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir: PathBuf = std::env::temp_dir()
                    .join(format!("weft-store-test-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
                TestDb {
                    url: crate::sqlite_url(&dir.join("state.db")),
                    backend,
                    postgres: None,
                    _dir: Some(tempdir::Dir(dir)),
                }
            }
            Backend::Postgres => {
                let base = postgres_base_url();
                let admin = Store::open(&base).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL for tests is unreachable at {} ({e}); start it or set \
                         {POSTGRES_URL_VAR} (cargo xtask test starts one)",
                        redact(&base)
                    )
                });
                let name = format!("weft_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
                admin.close().await;
                TestDb {
                    url: with_database(&base, &name),
                    backend,
                    postgres: Some((base, name)),
                    _dir: None,
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A new store on this database.
    pub async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot open test database: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside (or outside) some runtime; a thread with its own runtime works
        // from both. FORCE ends the test's still-open connections.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let admin = Store::open(&base).await.map_err(|e| e.to_string())?;
                let result = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(admin.pool())
                    .await
                    .map_err(|e| e.to_string());
                admin.close().await;
                result.map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("warning: cannot drop test database: {e}");
        }
    }
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (base, ""),
    };
    let after_scheme = head.find("://").map(|i| i + 3).unwrap_or(0);
    let head = match head[after_scheme..].find('/') {
        Some(slash) => &head[..after_scheme + slash],
        None => head,
    };
    format!("{head}/{name}{query}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_replaced() {
        let cases = [
            (
                "postgres://127.0.0.1:5432/test",
                "postgres://127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/test?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h", "postgres://h/x"),
        ];
        for (base, expected) in cases {
            assert_eq!(super::with_database(base, "x"), expected);
        }
    }
}
