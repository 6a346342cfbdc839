//! ACLs and SCRAM credentials in the state store (migration component `auth`).
//!
//! Tables (migration 1):
//! - `auth_acls`: one row per ACL; the whole binding is the primary key, so adding an
//!   existing ACL is a no-op (as Kafka's CreateAcls).
//! - `auth_scram_credentials`: `(user, mechanism) → salt, stored_key, server_key,
//!   iterations` (base64); never a password.
//! - `auth_generation`: a counter bumped in the same transaction as every ACL change;
//!   processes sharing a PostgreSQL compare it with their [`crate::Authorizer`]'s to know
//!   when to reload ([`AclStore::reload_if_changed`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use weft_store::sqlx::{self, Row};
use weft_store::{Migration, Store, Tx};

use crate::acl::{AclBinding, AclFilter, Authorizer, InvalidAcl, ResourcePattern, UnknownName};
use crate::sasl::scram::{ScramCredential, ScramMechanism};

pub const COMPONENT: &str = "auth";

pub const MIGRATIONS: &[Migration] = &[Migration::both(
    1,
    "acls, scram credentials, acl generation",
    "CREATE TABLE auth_acls (
        resource_type TEXT NOT NULL,
        resource_name TEXT NOT NULL,
        pattern_type TEXT NOT NULL,
        principal TEXT NOT NULL,
        host TEXT NOT NULL,
        operation TEXT NOT NULL,
        permission TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
    );
    CREATE TABLE auth_scram_credentials (
        user_name TEXT NOT NULL,
        mechanism TEXT NOT NULL,
        salt TEXT NOT NULL,
        stored_key TEXT NOT NULL,
        server_key TEXT NOT NULL,
        iterations BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (user_name, mechanism)
    );
    CREATE TABLE auth_generation (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    INSERT INTO auth_generation (name, value) VALUES ('acls', 0);",
)];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Boxed: the store's error is large and this one travels through every `?`.
    #[error(transparent)]
    Store(Box<weft_store::Error>),
    #[error("invalid ACL: {0}")]
    InvalidAcl(#[from] InvalidAcl),
    #[error("corrupt auth row: {0}")]
    Corrupt(String),
}

impl From<weft_store::Error> for StoreError {
    fn from(e: weft_store::Error) -> StoreError {
        StoreError::Store(Box::new(e))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Store(Box::new(weft_store::Error::Sql(e)))
    }
}

impl From<UnknownName> for StoreError {
    fn from(e: UnknownName) -> StoreError {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs the `auth` migrations.
pub async fn migrate(store: &Store) -> Result<()> {
    store.migrate(COMPONENT, MIGRATIONS).await?;
    Ok(())
}

/// ACLs in the state store.
#[derive(Debug, Clone)]
pub struct AclStore {
    store: Store,
}

impl AclStore {
    /// Opens over `store` (run [`migrate`] first).
    pub fn new(store: Store) -> AclStore {
        AclStore { store }
    }

    /// Adds `acls` atomically (all validated first: one bad ACL stores nothing). Returns the
    /// new generation.
    pub async fn add(&self, acls: &[AclBinding]) -> Result<u64> {
        for a in acls {
            a.validate()?;
        }
        let mut tx = self.store.begin().await?;
        let now = weft_store::now_ms();
        for a in acls {
            sqlx::query(
                "INSERT INTO auth_acls (resource_type, resource_name, pattern_type, principal,
                     host, operation, permission, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT DO NOTHING",
            )
            .bind(a.pattern.resource_type.as_str())
            .bind(&a.pattern.name)
            .bind(a.pattern.pattern_type.as_str())
            .bind(&a.principal)
            .bind(&a.host)
            .bind(a.operation.as_str())
            .bind(a.permission.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let g = bump(&mut tx).await?;
        tx.commit().await?;
        Ok(g)
    }

    /// Removes the ACLs `filter` matches; returns them and the new generation.
    pub async fn remove(&self, filter: &AclFilter) -> Result<(Vec<AclBinding>, u64)> {
        let mut tx = self.store.begin().await?;
        let all = list_in(&mut tx).await?;
        let hits: Vec<AclBinding> = all.into_iter().filter(|a| filter.matches(a)).collect();
        for a in &hits {
            sqlx::query(
                "DELETE FROM auth_acls WHERE resource_type = $1 AND resource_name = $2
                   AND pattern_type = $3 AND principal = $4 AND host = $5 AND operation = $6
                   AND permission = $7",
            )
            .bind(a.pattern.resource_type.as_str())
            .bind(&a.pattern.name)
            .bind(a.pattern.pattern_type.as_str())
            .bind(&a.principal)
            .bind(&a.host)
            .bind(a.operation.as_str())
            .bind(a.permission.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let g = bump(&mut tx).await?;
        tx.commit().await?;
        Ok((hits, g))
    }

    /// The ACLs `filter` matches, sorted.
    pub async fn list(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let mut tx = self.store.begin().await?;
        let mut out: Vec<AclBinding> = list_in(&mut tx)
            .await?
            .into_iter()
            .filter(|a| filter.matches(a))
            .collect();
        tx.commit().await?;
        out.sort();
        Ok(out)
    }

    /// Every ACL and the generation they belong to, read in one transaction.
    pub async fn load(&self) -> Result<(Vec<AclBinding>, u64)> {
        let mut tx = self.store.begin().await?;
        let acls = list_in(&mut tx).await?;
        let g = generation_in(&mut tx).await?;
        tx.commit().await?;
        Ok((acls, g))
    }

    pub async fn generation(&self) -> Result<u64> {
        let mut tx = self.store.begin().await?;
        let g = generation_in(&mut tx).await?;
        tx.commit().await?;
        Ok(g)
    }

    /// Reloads `authorizer` when the stored generation differs from its own; returns whether
    /// it did. Call it on a timer (or after a change notification) in every process.
    pub async fn reload_if_changed(&self, authorizer: &Authorizer) -> Result<bool> {
        if self.generation().await? == authorizer.generation() {
            return Ok(false);
        }
        let (acls, g) = self.load().await?;
        authorizer.replace(acls, g);
        Ok(true)
    }
}

async fn bump(tx: &mut Tx) -> Result<u64> {
    sqlx::query("UPDATE auth_generation SET value = value + 1 WHERE name = 'acls'")
        .execute(&mut **tx)
        .await?;
    generation_in(tx).await
}

async fn generation_in(tx: &mut Tx) -> Result<u64> {
    let row = sqlx::query("SELECT value FROM auth_generation WHERE name = 'acls'")
        .fetch_one(&mut **tx)
        .await?;
    let v: i64 = row.try_get("value")?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("acl generation {v}")))
}

async fn list_in(tx: &mut Tx) -> Result<Vec<AclBinding>> {
    let rows = sqlx::query(
        "SELECT resource_type, resource_name, pattern_type, principal, host, operation,
                permission FROM auth_acls",
    )
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AclBinding {
                pattern: ResourcePattern {
                    resource_type: r.try_get::<String, _>("resource_type")?.parse()?,
                    name: r.try_get("resource_name")?,
                    pattern_type: r.try_get::<String, _>("pattern_type")?.parse()?,
                },
                principal: r.try_get("principal")?,
                host: r.try_get("host")?,
                operation: r.try_get::<String, _>("operation")?.parse()?,
                permission: r.try_get::<String, _>("permission")?.parse()?,
            })
        })
        .collect()
}

/// SCRAM credentials in the state store (for SASL SCRAM and PLAIN, HTTP Basic, and later
/// Describe/AlterUserScramCredentials).
#[derive(Debug, Clone)]
pub struct ScramStore {
    store: Store,
}

fn mech_name(m: ScramMechanism) -> &'static str {
    m.as_str()
}

impl ScramStore {
    pub fn new(store: Store) -> ScramStore {
        ScramStore { store }
    }

    /// Creates or replaces `user`'s credential for `mech`.
    pub async fn upsert(
        &self,
        user: &str,
        mech: ScramMechanism,
        cred: &ScramCredential,
    ) -> Result<()> {
        if user.is_empty() {
            return Err(StoreError::Corrupt("empty user name".into()));
        }
        let mut tx = self.store.begin().await?;
        sqlx::query("DELETE FROM auth_scram_credentials WHERE user_name = $1 AND mechanism = $2")
            .bind(user)
            .bind(mech_name(mech))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO auth_scram_credentials (user_name, mechanism, salt, stored_key,
                 server_key, iterations, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user)
        .bind(mech_name(mech))
        .bind(B64.encode(&cred.salt))
        .bind(B64.encode(&cred.stored_key))
        .bind(B64.encode(&cred.server_key))
        .bind(i64::from(cred.iterations))
        .bind(weft_store::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, user: &str, mech: ScramMechanism) -> Result<Option<ScramCredential>> {
        let mut tx = self.store.begin().await?;
        let row = sqlx::query(
            "SELECT salt, stored_key, server_key, iterations FROM auth_scram_credentials
             WHERE user_name = $1 AND mechanism = $2",
        )
        .bind(user)
        .bind(mech_name(mech))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(r) = row else { return Ok(None) };
        let b = |col: &str| -> Result<Vec<u8>> {
            let s: String = r.try_get(col)?;
            B64.decode(s)
                .map_err(|_| StoreError::Corrupt(format!("{col} of {user}")))
        };
        let iterations: i64 = r.try_get("iterations")?;
        Ok(Some(ScramCredential {
            salt: b("salt")?,
            stored_key: b("stored_key")?,
            server_key: b("server_key")?,
            iterations: u32::try_from(iterations)
                .map_err(|_| StoreError::Corrupt(format!("iterations of {user}")))?,
        }))
    }

    /// Deletes `user`'s credential for `mech`; whether there was one.
    pub async fn delete(&self, user: &str, mech: ScramMechanism) -> Result<bool> {
        let mut tx = self.store.begin().await?;
        let n = sqlx::query(
            "DELETE FROM auth_scram_credentials WHERE user_name = $1 AND mechanism = $2",
        )
        .bind(user)
        .bind(mech_name(mech))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Whether `password` is `user`'s (SASL PLAIN, HTTP Basic): checked against the
    /// SCRAM-SHA-512 credential, else the SCRAM-SHA-256 one; unknown user → `false`. The key
    /// derivation runs on the blocking pool.
    pub async fn verify_password(&self, user: &str, password: &str) -> Result<bool> {
        for mech in [ScramMechanism::Sha512, ScramMechanism::Sha256] {
            if let Some(cred) = self.get(user, mech).await? {
                let password = password.to_owned();
                return tokio::task::spawn_blocking(move || cred.verify_password(mech, &password))
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("password check panicked: {e}")));
            }
        }
        Ok(false)
    }

    /// Users and their mechanisms/iterations (what DescribeUserScramCredentials answers).
    pub async fn describe(&self) -> Result<Vec<(String, String, u32)>> {
        let mut tx = self.store.begin().await?;
        let rows = sqlx::query(
            "SELECT user_name, mechanism, iterations FROM auth_scram_credentials
             ORDER BY user_name, mechanism",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let i: i64 = r.try_get("iterations")?;
                Ok((
                    r.try_get("user_name")?,
                    r.try_get("mechanism")?,
                    u32::try_from(i).map_err(|_| StoreError::Corrupt("iterations".into()))?,
                ))
            })
            .collect()
    }
}
