//! Authorisation of Kafka requests, Kafka's way (`KafkaApis` + `AclAuthorizer`): every
//! handler asks [`Authz`] whether the connection's principal may do an operation on each
//! resource the request names, and answers the protocol's error for what it may not
//! (TOPIC_/GROUP_/CLUSTER_AUTHORIZATION_FAILED), leaving the rest of the request to run.
//!
//! The decisions are [`weft_auth::Authorizer`]'s (deny wins, default deny, super-users,
//! cached per principal/host/operation/resource); its ACLs come from the state store
//! ([`weft_auth::store::AclStore`]) and are reloaded by the task [`Authorization::open`] starts
//! whenever the store's generation moves (another process, or this broker's own
//! CreateAcls/DeleteAcls, which reload at once). Every denial is logged at info by the
//! authorizer with principal, host, operation and resource; never a credential.
//!
//! With authorisation off (the default) every check allows and the broker behaves as
//! before; the ACL and SCRAM admin APIs still work when stores are configured, so ACLs and
//! users can be prepared before authorisation is turned on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use weft_auth::acl::{CLUSTER_NAME, WILDCARD};
use weft_auth::store::{AclStore, ScramStore};
use weft_auth::{
    AclFilter, Authorizer, AuthorizerConfig, Operation, PatternType, Permission, Principal,
    ResourceType, SecurityConfig,
};

use crate::session::Session;

/// Why [`Authorization::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizationError {
    #[error("[security] super_users: {0}")]
    SuperUser(#[from] weft_auth::principal::InvalidPrincipal),
    #[error("acl store: {0}")]
    Store(#[from] weft_auth::store::StoreError),
}

/// The broker's authoriser and the stores behind the admin APIs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Authorization {
    enabled: bool,
    super_users: Arc<HashSet<Principal>>,
    authorizer: Arc<Authorizer>,
    acls: Option<AclStore>,
    scram: Option<ScramStore>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization::disabled()
    }
}

impl Authorization {
    /// Everything allowed; no ACL or SCRAM store (the admin APIs answer SECURITY_DISABLED).
    pub fn disabled() -> Authorization {
        Authorization::with_authorizer(AuthorizerConfig::default(), None, None)
    }

    /// The `[security]` settings that concern authorisation, as an [`AuthorizerConfig`]
    /// (share one [`Authorizer`] built from it between the broker and HTTP listeners).
    pub fn authorizer_config(
        security: &SecurityConfig,
    ) -> Result<AuthorizerConfig, weft_auth::principal::InvalidPrincipal> {
        let super_users = security
            .super_users
            .iter()
            .map(|s| s.parse::<Principal>())
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(AuthorizerConfig {
            enabled: security.authorization,
            super_users,
            allow_if_no_acls: security.allow_if_no_acls,
        })
    }

    /// An authoriser over `config` with optional ACL and SCRAM stores (migrated by the
    /// caller: `weft_auth::store::migrate`). Load the ACLs with [`Authorization::reload`]
    /// before serving.
    pub fn with_authorizer(
        config: AuthorizerConfig,
        acls: Option<AclStore>,
        scram: Option<ScramStore>,
    ) -> Authorization {
        Authorization {
            enabled: config.enabled,
            super_users: Arc::new(config.super_users.clone()),
            authorizer: Arc::new(Authorizer::new(config)),
            acls,
            scram,
        }
    }

    /// The broker's authorisation from `[security]` over the state store: migrates the
    /// `auth` tables, loads the ACLs and starts a task reloading them every `reload_every`
    /// while the returned value (or a clone of it) is alive — so ACL changes made by
    /// another process sharing the store reach this broker within one period.
    pub async fn open(
        security: &SecurityConfig,
        store: weft_store::Store,
        reload_every: Duration,
    ) -> Result<Authorization, AuthorizationError> {
        weft_auth::store::migrate(&store).await?;
        let config = Authorization::authorizer_config(security)?;
        let auth = Authorization::with_authorizer(
            config,
            Some(AclStore::new(store.clone())),
            Some(ScramStore::new(store)),
        );
        auth.reload().await?;
        info!(
            enabled = auth.enabled,
            super_users = auth.super_users.len(),
            acls = auth.authorizer.list(&AclFilter::default()).len(),
            "kafka authorization ready"
        );
        let weak = Arc::downgrade(&auth.authorizer);
        let acls = auth.acls.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(reload_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                // The broker (and every clone of its config) is gone: stop.
                let Some(authorizer) = weak.upgrade() else {
                    return;
                };
                let Some(store) = &acls else { return };
                match store.reload_if_changed(&authorizer).await {
                    Ok(true) => info!(generation = authorizer.generation(), "acls reloaded"),
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "reloading acls failed; keeping the previous ones"),
                }
            }
        });
        Ok(auth)
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The authoriser (to share its decisions and cache with other listeners).
    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    pub(crate) fn acl_store(&self) -> Option<&AclStore> {
        self.acls.as_ref()
    }

    pub(crate) fn scram_store(&self) -> Option<&ScramStore> {
        self.scram.as_ref()
    }

    /// Loads the stored ACLs when their generation differs from the authoriser's; whether
    /// it did.
    pub async fn reload(&self) -> Result<bool, weft_auth::store::StoreError> {
        match &self.acls {
            Some(store) => store.reload_if_changed(&self.authorizer).await,
            None => Ok(false),
        }
    }
}

/// One connection's view of the authoriser: what handlers call.
#[derive(Clone, Copy)]
pub(crate) struct Authz<'a> {
    pub(crate) auth: &'a Authorization,
    pub(crate) session: &'a Session,
}

impl<'a> Authz<'a> {
    pub(crate) fn new(auth: &'a Authorization, session: &'a Session) -> Authz<'a> {
        Authz { auth, session }
    }

    fn host(&self) -> String {
        self.session.peer.ip().to_string()
    }

    pub(crate) fn allowed(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        if !self.auth.enabled {
            return true;
        }
        self.auth
            .authorizer
            .authorize(&self.session.principal, &self.host(), op, rt, name)
            .is_allowed()
    }

    pub(crate) fn topic(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::Topic, name)
    }

    pub(crate) fn group(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::Group, name)
    }

    pub(crate) fn cluster(&self, op: Operation) -> bool {
        self.allowed(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether an idempotent producer without a transactional id may get a producer id
    /// (InitProducerId), as KafkaApis decides it: IDEMPOTENT_WRITE on the cluster, else
    /// (Kafka 3.0+, KIP-679) WRITE on any topic. The first check is quiet (Kafka's
    /// `logIfDenied = false`): a denial is logged only when the fallback denies too.
    pub(crate) fn idempotent_producer(&self) -> bool {
        if !self.auth.enabled {
            return true;
        }
        let cluster = self.auth.authorizer.authorize_quietly(
            &self.session.principal,
            &self.host(),
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            CLUSTER_NAME,
        );
        cluster.is_allowed() || self.any_topic(Operation::Write)
    }

    /// Kafka's `authorizeByResourceType` (KIP-679): whether some topic exists, or could,
    /// that the principal may do `op` on — an allow ACL for the principal (or `User:*`)
    /// and host whose pattern no deny ACL of the principal covers. With
    /// `allow_if_no_acls` (`allow.everyone.if.no.acl.found`) anything short of a deny of
    /// every topic (literal `*`) allows, as in Kafka's `AclAuthorizer`. What an idempotent
    /// producer's InitProducerId needs (WRITE on any topic) when it lacks IDEMPOTENT_WRITE
    /// on the cluster.
    pub(crate) fn any_topic(&self, op: Operation) -> bool {
        if !self.auth.enabled || self.auth.super_users.contains(&self.session.principal) {
            return true;
        }
        let principal = self.session.principal.to_string();
        let host = self.host();
        let acls = self.auth.authorizer.list(&AclFilter {
            resource_type: Some(ResourceType::Topic),
            ..AclFilter::default()
        });
        let applies = |a: &&weft_auth::AclBinding| {
            (a.principal == "User:*" || a.principal == principal)
                && (a.host == WILDCARD || a.host == host)
                && (a.operation == op || a.operation == Operation::All)
        };
        let denies: Vec<_> = acls
            .iter()
            .filter(applies)
            .filter(|a| a.permission == Permission::Deny)
            .collect();
        let deny_all = denies
            .iter()
            .any(|d| d.pattern.pattern_type == PatternType::Literal && d.pattern.name == WILDCARD);
        if self.auth.authorizer.config().allow_if_no_acls && !deny_all {
            return true;
        }
        let denied = |name: &str, prefixed: bool| {
            denies.iter().any(|d| match d.pattern.pattern_type {
                PatternType::Literal => {
                    d.pattern.name == WILDCARD || (!prefixed && d.pattern.name == name)
                }
                PatternType::Prefixed => name.starts_with(&d.pattern.name),
            })
        };
        let allowed = acls
            .iter()
            .filter(applies)
            .filter(|a| a.permission == Permission::Allow)
            .any(|a| match a.pattern.pattern_type {
                PatternType::Literal if a.pattern.name == WILDCARD => !denied(WILDCARD, true),
                PatternType::Literal => !denied(&a.pattern.name, false),
                PatternType::Prefixed => !denied(&a.pattern.name, true),
            });
        if !allowed {
            info!(
                principal = %self.session.principal,
                host,
                operation = op.as_str(),
                resource_type = "topic",
                resource = "<any>",
                "authorization denied"
            );
        }
        allowed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use weft_auth::{AclBinding, ResourcePattern};

    /// An enabled authoriser holding `acls`, with `super_users`.
    pub(crate) fn authorization(acls: Vec<AclBinding>, super_users: &[&str]) -> Authorization {
        let config = AuthorizerConfig {
            enabled: true,
            super_users: super_users
                .iter()
                .map(|s| s.parse().expect("principal"))
                .collect(),
            allow_if_no_acls: false,
        };
        let a = Authorization::with_authorizer(config, None, None);
        a.authorizer.replace(acls, 1);
        a
    }

    pub(crate) fn session(principal: &str) -> Session {
        Session {
            principal: principal.parse().expect("principal"),
            peer: "127.0.0.1:5000".parse().expect("addr"),
        }
    }

    pub(crate) fn acl(
        pattern: ResourcePattern,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding::new(pattern, principal, op, perm)
    }

    #[test]
    fn any_topic_write_follows_kip_679() {
        use Operation::*;
        use Permission::*;
        use ResourceType::Topic;
        let lit = |n: &str| ResourcePattern::literal(Topic, n);
        let pre = |n: &str| ResourcePattern::prefixed(Topic, n);
        let allow = |p| acl(p, "User:alice", Write, Allow);
        let deny = |p| acl(p, "User:alice", Write, Deny);
        let cases: Vec<(Vec<AclBinding>, bool)> = vec![
            (vec![], false),
            (vec![allow(lit("orders"))], true),
            (vec![acl(lit("orders"), "User:alice", All, Allow)], true),
            (vec![acl(lit("orders"), "User:*", Write, Allow)], true),
            (vec![acl(lit("orders"), "User:alice", Read, Allow)], false),
            (vec![acl(lit("orders"), "User:bob", Write, Allow)], false),
            (vec![allow(lit("orders")), deny(lit("orders"))], false),
            (vec![allow(lit("orders")), deny(pre("ord"))], false),
            (vec![allow(pre("orders-")), deny(pre("orders-eu"))], true),
            (
                vec![
                    allow(pre("orders-")),
                    acl(lit(WILDCARD), "User:*", Write, Deny),
                ],
                false,
            ),
            (vec![acl(lit(WILDCARD), "User:alice", Write, Allow)], true),
        ];
        for (acls, want) in cases {
            let auth = authorization(acls.clone(), &[]);
            let s = session("User:alice");
            assert_eq!(Authz::new(&auth, &s).any_topic(Write), want, "{acls:?}");
        }
        let auth = authorization(vec![], &["User:alice"]);
        let s = session("User:alice");
        assert!(Authz::new(&auth, &s).any_topic(Write), "super-user");
        let off = Authorization::disabled();
        assert!(Authz::new(&off, &s).any_topic(Write), "authorisation off");
    }

    /// `allow.everyone.if.no.acl.found`: Kafka's `authorizeByResourceType` allows unless a
    /// deny of every topic (literal `*`) applies.
    #[test]
    fn any_topic_with_allow_if_no_acls() {
        use Operation::*;
        use Permission::*;
        use ResourceType::Topic;
        let cases: Vec<(Vec<AclBinding>, bool)> = vec![
            (vec![], true),
            (
                vec![acl(
                    ResourcePattern::literal(Topic, "t"),
                    "User:bob",
                    Write,
                    Allow,
                )],
                true,
            ),
            (
                vec![acl(
                    ResourcePattern::prefixed(Topic, "t"),
                    "User:alice",
                    Write,
                    Deny,
                )],
                true,
            ),
            (
                vec![acl(
                    ResourcePattern::literal(Topic, WILDCARD),
                    "User:alice",
                    Write,
                    Deny,
                )],
                false,
            ),
            (
                vec![acl(
                    ResourcePattern::literal(Topic, WILDCARD),
                    "User:*",
                    All,
                    Deny,
                )],
                false,
            ),
        ];
        for (acls, want) in cases {
            let config = AuthorizerConfig {
                enabled: true,
                allow_if_no_acls: true,
                ..AuthorizerConfig::default()
            };
            let auth = Authorization::with_authorizer(config, None, None);
            auth.authorizer.replace(acls.clone(), 1);
            let s = session("User:alice");
            assert_eq!(Authz::new(&auth, &s).any_topic(Write), want, "{acls:?}");
        }
    }

    /// InitProducerId without a transactional id, KafkaApis' decision: IDEMPOTENT_WRITE on
    /// the cluster OR WRITE on any topic (KIP-679).
    #[test]
    fn idempotent_producer_needs_idempotent_write_or_write_on_a_topic() {
        use Operation::*;
        use Permission::*;
        use ResourceType::{Cluster, Topic};
        let cluster = || ResourcePattern::literal(Cluster, CLUSTER_NAME);
        let topic = || ResourcePattern::literal(Topic, "orders");
        let alice = |p, op, perm| acl(p, "User:alice", op, perm);
        let cases: Vec<(&str, Vec<AclBinding>, bool)> = vec![
            ("nothing", vec![], false),
            (
                "idempotent-write",
                vec![alice(cluster(), IdempotentWrite, Allow)],
                true,
            ),
            (
                "all on the cluster",
                vec![alice(cluster(), All, Allow)],
                true,
            ),
            ("write on a topic", vec![alice(topic(), Write, Allow)], true),
            (
                "both",
                vec![
                    alice(cluster(), IdempotentWrite, Allow),
                    alice(topic(), Write, Allow),
                ],
                true,
            ),
            // An OR: a deny of one path leaves the other.
            (
                "idempotent-write denied, write on a topic",
                vec![
                    alice(cluster(), IdempotentWrite, Deny),
                    alice(topic(), Write, Allow),
                ],
                true,
            ),
            (
                "idempotent-write, write on every topic denied",
                vec![
                    alice(cluster(), IdempotentWrite, Allow),
                    alice(ResourcePattern::literal(Topic, WILDCARD), Write, Deny),
                ],
                true,
            ),
            (
                "idempotent-write allowed and denied",
                vec![
                    alice(cluster(), IdempotentWrite, Allow),
                    alice(cluster(), All, Deny),
                ],
                false,
            ),
            (
                "write on the cluster is not idempotent-write",
                vec![alice(cluster(), Write, Allow)],
                false,
            ),
            (
                "alter on the cluster",
                vec![alice(cluster(), Alter, Allow)],
                false,
            ),
            ("read on a topic", vec![alice(topic(), Read, Allow)], false),
            (
                "bob's idempotent-write",
                vec![acl(cluster(), "User:bob", IdempotentWrite, Allow)],
                false,
            ),
            (
                "everyone's idempotent-write",
                vec![acl(cluster(), "User:*", IdempotentWrite, Allow)],
                true,
            ),
        ];
        let s = session("User:alice");
        for (name, acls, want) in cases {
            let auth = authorization(acls, &[]);
            assert_eq!(Authz::new(&auth, &s).idempotent_producer(), want, "{name}");
        }
        let auth = authorization(vec![], &["User:alice"]);
        assert!(Authz::new(&auth, &s).idempotent_producer(), "super-user");
        let off = Authorization::disabled();
        assert!(
            Authz::new(&off, &s).idempotent_producer(),
            "authorisation off"
        );
    }
}
