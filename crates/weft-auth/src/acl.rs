//! ACLs and their evaluation, with Kafka's semantics.
//!
//! An [`AclBinding`] is a resource pattern (type, name, literal or prefixed) plus an entry
//! (principal, host, operation, allow or deny). [`evaluate`] decides one request:
//!
//! 1. super-users are allowed everything;
//! 2. a matching **deny** wins over any allow (a deny for `All` denies every operation; a
//!    prefixed deny beats a literal allow);
//! 3. otherwise a matching **allow** allows: for the operation itself or `All`, and the
//!    implications Kafka has — `Describe` is allowed by `Read`, `Write`, `Delete` or
//!    `Alter`; `DescribeConfigs` by `AlterConfigs` (nothing implies `IdempotentWrite`);
//! 4. otherwise the request is denied (default deny), unless no ACL at all matches the
//!    resource and `allow_if_no_acls` is set (Kafka's `allow.everyone.if.no.acl.found`).
//!
//! A pattern matches a resource name when it is literal and equal, literal `*` (every
//! resource of its type), or prefixed and a prefix of the name. An entry's principal matches
//! when equal or `User:*`; its host when equal or `*`.
//!
//! The [`Authorizer`] holds the ACLs, the super-users and a decision cache. Every change
//! bumps its generation and empties the cache, so a decision is never older than the ACLs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, RwLock};

use tracing::info;

use crate::Principal;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase, hyphenated name used in the store, the CLI and logs.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<$name, UnknownName> {
                let lower = s.to_ascii_lowercase().replace('_', "-");
                match lower.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: stringify!($name), name: s.to_owned() }),
                }
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
}

named_enum!(
    /// What an ACL protects.
    ResourceType {
        Topic = "topic",
        Group = "group",
        Subject = "subject",
        Cluster = "cluster",
        TransactionalId = "transactional-id",
        /// An event-store stream (weft-eventstore's per-stream ACLs; no Kafka code).
        Stream = "stream",
    }
);

named_enum!(
    /// How an ACL's resource name matches.
    PatternType {
        Literal = "literal",
        Prefixed = "prefixed",
    }
);

named_enum!(
    /// What a principal wants to do.
    Operation {
        Read = "read",
        Write = "write",
        Create = "create",
        Delete = "delete",
        Alter = "alter",
        Describe = "describe",
        DescribeConfigs = "describe-configs",
        AlterConfigs = "alter-configs",
        /// Kafka's IDEMPOTENT_WRITE, on the cluster only: an idempotent producer without a
        /// transactional id may get a producer id (InitProducerId). Since Kafka 3.0
        /// (KIP-679) WRITE on any topic is accepted instead.
        IdempotentWrite = "idempotent-write",
        All = "all",
    }
);

named_enum!(
    /// Allow or deny.
    Permission {
        Allow = "allow",
        Deny = "deny",
    }
);

/// The name of the one cluster resource (Kafka's `kafka-cluster`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name or an entry field that matches everything.
pub const WILDCARD: &str = "*";

/// Which resources an ACL applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

impl ResourcePattern {
    pub fn literal(resource_type: ResourceType, name: impl Into<String>) -> ResourcePattern {
        ResourcePattern {
            resource_type,
            name: name.into(),
            pattern_type: PatternType::Literal,
        }
    }

    pub fn prefixed(resource_type: ResourceType, prefix: impl Into<String>) -> ResourcePattern {
        ResourcePattern {
            resource_type,
            name: prefix.into(),
            pattern_type: PatternType::Prefixed,
        }
    }

    /// Whether this pattern covers the resource `(resource_type, name)`.
    pub fn matches(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.name == WILDCARD || self.name == name,
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }
}

/// One ACL: a pattern and who may (or may not) do what from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    /// `User:<name>` or `User:*`.
    pub principal: String,
    /// A client address or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    #[error("principal {0:?} is not User:<name> or User:*")]
    Principal(String),
    #[error("resource name is empty")]
    EmptyName,
    #[error("a cluster ACL must name {CLUSTER_NAME:?} literally")]
    ClusterName,
    #[error("host is empty")]
    EmptyHost,
    #[error("operation {0} applies to the cluster only")]
    ClusterOnly(Operation),
}

impl AclBinding {
    /// An ACL for any host.
    pub fn new(
        pattern: ResourcePattern,
        principal: impl Into<String>,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            pattern,
            principal: principal.into(),
            host: WILDCARD.to_owned(),
            operation,
            permission,
        }
    }

    /// Refuses what could never match or would match by accident (an empty prefix is
    /// refused: write a literal `*` to mean every resource).
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if self.principal != "User:*" && self.principal.parse::<Principal>().is_err() {
            return Err(InvalidAcl::Principal(self.principal.clone()));
        }
        if self.pattern.name.is_empty() {
            return Err(InvalidAcl::EmptyName);
        }
        if self.pattern.resource_type == ResourceType::Cluster
            && (self.pattern.name != CLUSTER_NAME
                || self.pattern.pattern_type != PatternType::Literal)
        {
            return Err(InvalidAcl::ClusterName);
        }
        if self.host.is_empty() {
            return Err(InvalidAcl::EmptyHost);
        }
        // As kafka-acls refuses it: an IDEMPOTENT_WRITE on a topic or group is never asked.
        if self.operation == Operation::IdempotentWrite
            && self.pattern.resource_type != ResourceType::Cluster
        {
            return Err(InvalidAcl::ClusterOnly(self.operation));
        }
        Ok(())
    }

    fn entry_matches(&self, principal: &str, host: &str) -> bool {
        (self.principal == "User:*" || self.principal == principal)
            && (self.host == WILDCARD || self.host == host)
    }
}

/// Selects ACLs to list or delete: `None` matches anything (Kafka's `ANY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern_type: Option<PatternType>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
    /// Kafka's `MATCH` pattern filter: ACLs whose pattern covers this resource name (the
    /// literal name, the literal `*`, prefixes of it), combined with the fields above.
    pub covering: Option<String>,
}

impl AclFilter {
    /// Every ACL that applies to `(resource_type, name)` — what `kafka-acls --list
    /// --resource-pattern-type match` shows.
    pub fn covering(resource_type: ResourceType, name: impl Into<String>) -> AclFilter {
        AclFilter {
            resource_type: Some(resource_type),
            covering: Some(name.into()),
            ..AclFilter::default()
        }
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        fn eq<T: PartialEq>(f: &Option<T>, v: &T) -> bool {
            f.as_ref().is_none_or(|f| f == v)
        }
        eq(&self.resource_type, &acl.pattern.resource_type)
            && eq(&self.name, &acl.pattern.name)
            && eq(&self.pattern_type, &acl.pattern.pattern_type)
            && eq(&self.principal, &acl.principal)
            && eq(&self.host, &acl.host)
            && eq(&self.operation, &acl.operation)
            && eq(&self.permission, &acl.permission)
            && self
                .covering
                .as_ref()
                .is_none_or(|n| acl.pattern.matches(acl.pattern.resource_type, n))
    }
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Authorisation is off.
    AllowedDisabled,
    AllowedSuperUser,
    AllowedByAcl,
    /// No ACL matches the resource and `allow_if_no_acls` is set.
    AllowedNoAcls,
    DeniedByAcl,
    /// Default deny: no allow ACL matched.
    DeniedNoMatch,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(
            self,
            Decision::AllowedDisabled
                | Decision::AllowedSuperUser
                | Decision::AllowedByAcl
                | Decision::AllowedNoAcls
        )
    }
}

/// The allow-ACL operations that grant `op`.
fn granting(op: Operation) -> &'static [Operation] {
    use Operation::*;
    match op {
        Describe => &[Describe, Read, Write, Delete, Alter, All],
        DescribeConfigs => &[DescribeConfigs, AlterConfigs, All],
        Read => &[Read, All],
        Write => &[Write, All],
        Create => &[Create, All],
        Delete => &[Delete, All],
        Alter => &[Alter, All],
        AlterConfigs => &[AlterConfigs, All],
        IdempotentWrite => &[IdempotentWrite, All],
        All => &[All],
    }
}

/// One request to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub host: &'a str,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub name: &'a str,
}

/// The rules in the module docs, over any list of ACLs (super-users checked by the caller).
pub fn evaluate<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    req: &Request<'_>,
    allow_if_no_acls: bool,
) -> Decision {
    let principal = req.principal.to_string();
    let mut any_for_resource = false;
    let mut allowed = false;
    for acl in acls {
        if !acl.pattern.matches(req.resource_type, req.name) {
            continue;
        }
        any_for_resource = true;
        if !acl.entry_matches(&principal, req.host) {
            continue;
        }
        match acl.permission {
            Permission::Deny => {
                if acl.operation == req.operation || acl.operation == Operation::All {
                    return Decision::DeniedByAcl;
                }
            }
            Permission::Allow => {
                if granting(req.operation).contains(&acl.operation) {
                    allowed = true;
                }
            }
        }
    }
    if allowed {
        Decision::AllowedByAcl
    } else if !any_for_resource && allow_if_no_acls {
        Decision::AllowedNoAcls
    } else {
        Decision::DeniedNoMatch
    }
}

/// Settings of the [`Authorizer`] (from `weft.toml` once wired).
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    /// Off: everything is allowed (the embedded default).
    pub enabled: bool,
    pub super_users: HashSet<Principal>,
    /// Kafka's `allow.everyone.if.no.acl.found`; off by default.
    pub allow_if_no_acls: bool,
}

type CacheKey = (Principal, String, Operation, ResourceType, String);

/// Bound on cached decisions; the cache is emptied when full (simple and enough: it refills
/// with the hot keys).
const CACHE_CAPACITY: usize = 10_000;

/// Decides requests against the current ACLs, caching decisions per
/// (principal, host, operation, resource).
pub struct Authorizer {
    config: AuthorizerConfig,
    acls: RwLock<Acls>,
    cache: Mutex<HashMap<CacheKey, Decision>>,
}

struct Acls {
    by_type: HashMap<ResourceType, Vec<AclBinding>>,
    generation: u64,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("config", &self.config)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Authorizer {
        Authorizer {
            config,
            acls: RwLock::new(Acls {
                by_type: HashMap::new(),
                generation: 0,
            }),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The number of changes applied so far (the store's generation after
    /// [`Authorizer::replace`]).
    pub fn generation(&self) -> u64 {
        self.acls
            .read()
            .map(|a| a.generation)
            .unwrap_or_else(|p| p.into_inner().generation)
    }

    /// Replaces every ACL (a reload from the store) and records the store's generation.
    pub fn replace(&self, acls: Vec<AclBinding>, generation: u64) {
        let mut by_type: HashMap<ResourceType, Vec<AclBinding>> = HashMap::new();
        for acl in acls {
            by_type
                .entry(acl.pattern.resource_type)
                .or_default()
                .push(acl);
        }
        let mut guard = self.acls.write().unwrap_or_else(|p| p.into_inner());
        guard.by_type = by_type;
        guard.generation = generation;
        // Emptied while the write lock is held: no reader can cache a decision made on the
        // old ACLs after this point (readers fill the cache under the read lock).
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Adds ACLs in memory (already validated and stored) and bumps the generation.
    pub fn add(&self, new: impl IntoIterator<Item = AclBinding>) {
        let mut guard = self.acls.write().unwrap_or_else(|p| p.into_inner());
        for acl in new {
            let list = guard.by_type.entry(acl.pattern.resource_type).or_default();
            if !list.contains(&acl) {
                list.push(acl);
            }
        }
        guard.generation += 1;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Removes the ACLs `filter` matches, returning them, and bumps the generation.
    pub fn remove(&self, filter: &AclFilter) -> Vec<AclBinding> {
        let mut guard = self.acls.write().unwrap_or_else(|p| p.into_inner());
        let mut removed = Vec::new();
        for list in guard.by_type.values_mut() {
            list.retain(|a| {
                let hit = filter.matches(a);
                if hit {
                    removed.push(a.clone());
                }
                !hit
            });
        }
        guard.generation += 1;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        removed
    }

    pub fn list(&self, filter: &AclFilter) -> Vec<AclBinding> {
        let guard = self.acls.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<AclBinding> = guard
            .by_type
            .values()
            .flatten()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// The settings this authoriser was built with.
    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    /// Like [`Authorizer::authorize`] but a denial is not logged: for a check with a
    /// fallback, which logs only if the fallback denies too (Kafka's `logIfDenied = false`,
    /// as KafkaApis asks IDEMPOTENT_WRITE before WRITE on any topic), and for filtering
    /// lists, where a hidden item is not a refused request (the registry's subject lists).
    pub fn authorize_quietly(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        self.decide(principal, host, operation, resource_type, name)
    }

    /// Decides `operation` on `(resource_type, name)` for `principal` connecting from
    /// `host`. A denial is logged with principal, host, operation and resource.
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        let decision = self.decide(principal, host, operation, resource_type, name);
        if !decision.is_allowed() {
            info!(
                principal = %principal,
                host,
                operation = operation.as_str(),
                resource_type = resource_type.as_str(),
                resource = name,
                reason = ?decision,
                "authorization denied"
            );
        }
        decision
    }

    fn decide(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        if !self.config.enabled {
            return Decision::AllowedDisabled;
        }
        if self.config.super_users.contains(principal) {
            return Decision::AllowedSuperUser;
        }
        let key = (
            principal.clone(),
            host.to_owned(),
            operation,
            resource_type,
            name.to_owned(),
        );
        let acls = self.acls.read().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return *d;
        }
        let req = Request {
            principal,
            host,
            operation,
            resource_type,
            name,
        };
        let decision = evaluate(
            acls.by_type.get(&resource_type).into_iter().flatten(),
            &req,
            self.config.allow_if_no_acls,
        );
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, decision);
        drop(cache);
        drop(acls);
        decision
    }

    /// How many decisions are cached (for tests of invalidation).
    pub fn cached_decisions(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests;
