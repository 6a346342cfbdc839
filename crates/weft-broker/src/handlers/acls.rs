//! CreateAcls, DescribeAcls, DeleteAcls (v1–v3) over [`weft_auth::store::AclStore`], and
//! DescribeUserScramCredentials / AlterUserScramCredentials (v0, KIP-554) over
//! [`weft_auth::store::ScramStore`].
//!
//! Authorisation, as Kafka: creating and deleting ACLs and altering credentials need ALTER
//! on the cluster, describing them DESCRIBE on the cluster. Without a store (a broker built
//! without one) the APIs answer SECURITY_DISABLED. A change to the ACLs is applied to this
//! broker's authoriser before the response is sent.
//!
//! Kafka's wire codes are mapped here, in one table per enum. Weft's own resource types have
//! codes of their own, far from Kafka's 0–7: `subject` (the registry) is 100 and `stream`
//! (the event store) 101 — Weft extensions, which only `weft acl` sends. A filter must name
//! them explicitly: a resource type filter of ANY (what Kafka's tools send to list or delete
//! "everything") neither returns nor deletes them, so a Java or Python admin client never
//! meets a code it cannot decode and a `kafka-acls --remove` never takes registry or
//! event-store ACLs away unseen.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
    alter_user_scram_credentials_response::AlterUserScramCredentialsResult,
    create_acls_response::AclCreationResult,
    delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl},
    describe_acls_response::{AclDescription, DescribeAclsResource},
    describe_user_scram_credentials_response::{
        CredentialInfo, DescribeUserScramCredentialsResult,
    },
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
use weft_auth::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourcePattern, ResourceType,
};

use super::str;
use crate::authz::Authz;

// ---- Kafka's codes (org.apache.kafka.common.{resource,acl}) ----

const ANY: i8 = 1;
const PATTERN_MATCH: i8 = 2;

/// The resource types Kafka has a code for: what a resource type filter of ANY covers.
const KAFKA_TYPES: &[ResourceType] = &[
    ResourceType::Topic,
    ResourceType::Group,
    ResourceType::Cluster,
    ResourceType::TransactionalId,
];

/// Weft's own resource types (codes 100 and up): only a filter naming them covers them.
const WEFT_TYPES: &[ResourceType] = &[ResourceType::Subject, ResourceType::Stream];

/// Weft extension: the registry's `subject` resource type.
pub(crate) const SUBJECT: i8 = 100;
/// Weft extension: the event store's `stream` resource type.
pub(crate) const STREAM: i8 = 101;

pub(crate) fn resource_type_code(t: ResourceType) -> i8 {
    match t {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
        ResourceType::Subject => SUBJECT,
        ResourceType::Stream => STREAM,
    }
}

pub(crate) fn resource_type_of(code: i8) -> Option<ResourceType> {
    KAFKA_TYPES
        .iter()
        .chain(WEFT_TYPES)
        .copied()
        .find(|t| resource_type_code(*t) == code)
}

pub(crate) fn pattern_code(p: PatternType) -> i8 {
    match p {
        PatternType::Literal => 3,
        PatternType::Prefixed => 4,
    }
}

pub(crate) fn pattern_of(code: i8) -> Option<PatternType> {
    PatternType::ALL
        .iter()
        .copied()
        .find(|p| pattern_code(*p) == code)
}

pub(crate) fn operation_code(o: Operation) -> i8 {
    match o {
        Operation::All => 2,
        Operation::Read => 3,
        Operation::Write => 4,
        Operation::Create => 5,
        Operation::Delete => 6,
        Operation::Alter => 7,
        Operation::Describe => 8,
        Operation::DescribeConfigs => 10,
        Operation::AlterConfigs => 11,
        Operation::IdempotentWrite => 12,
    }
}

pub(crate) fn operation_of(code: i8) -> Option<Operation> {
    Operation::ALL
        .iter()
        .copied()
        .find(|o| operation_code(*o) == code)
}

pub(crate) fn permission_code(p: Permission) -> i8 {
    match p {
        Permission::Deny => 2,
        Permission::Allow => 3,
    }
}

pub(crate) fn permission_of(code: i8) -> Option<Permission> {
    Permission::ALL
        .iter()
        .copied()
        .find(|p| permission_code(*p) == code)
}

/// SCRAM mechanism codes of the SCRAM credential APIs.
fn scram_mechanism_of(code: i8) -> Option<ScramMechanism> {
    match code {
        1 => Some(ScramMechanism::Sha256),
        2 => Some(ScramMechanism::Sha512),
        _ => None,
    }
}

fn scram_mechanism_code(name: &str) -> Option<i8> {
    match name {
        "SCRAM-SHA-256" => Some(1),
        "SCRAM-SHA-512" => Some(2),
        _ => None,
    }
}

fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(str(s))
}

// ---- ACL requests → weft-auth types ----

/// One ACL to create, checked as Kafka checks it (no ANY/MATCH/UNKNOWN codes, a cluster
/// ACL names `kafka-cluster`, a principal is `User:<name>`); a `subject` or `stream` ACL
/// takes only the operations the registry and event store ask for.
fn binding(
    rtype: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    host: &str,
    op: i8,
    perm: i8,
) -> Result<AclBinding, String> {
    let resource_type =
        resource_type_of(rtype).ok_or_else(|| format!("invalid resource type {rtype}"))?;
    let pattern_type =
        pattern_of(pattern).ok_or_else(|| format!("invalid pattern type {pattern}"))?;
    let operation =
        operation_of(op).ok_or_else(|| format!("invalid or unsupported operation {op}"))?;
    let permission =
        permission_of(perm).ok_or_else(|| format!("invalid permission type {perm}"))?;
    let acl = AclBinding {
        pattern: ResourcePattern {
            resource_type,
            name: name.to_owned(),
            pattern_type,
        },
        principal: principal.to_owned(),
        host: host.to_owned(),
        operation,
        permission,
    };
    acl.validate().map_err(|e| e.to_string())?;
    if WEFT_TYPES.contains(&resource_type) && !weft_type_operation(operation) {
        return Err(format!(
            "operation {operation} does not apply to {resource_type} ACLs"
        ));
    }
    Ok(acl)
}

/// Whether a `subject` or `stream` ACL may carry `op`: nothing in the registry or the event
/// store asks CREATE (registering creates) or IDEMPOTENT_WRITE (cluster only).
fn weft_type_operation(op: Operation) -> bool {
    !matches!(op, Operation::Create | Operation::IdempotentWrite)
}

/// A describe/delete filter (ANY = no constraint; MATCH = every pattern covering the name).
#[allow(clippy::too_many_arguments)] // the seven fields of Kafka's filter, as the wire has them
fn filter(
    rtype: i8,
    name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
    host: Option<&str>,
    op: i8,
    perm: i8,
) -> Result<AclFilter, String> {
    let resource_type = match rtype {
        ANY => None,
        c => Some(resource_type_of(c).ok_or_else(|| format!("invalid resource type filter {c}"))?),
    };
    let (pattern_type, name, covering) = match pattern {
        ANY => (None, name.map(str::to_owned), None),
        PATTERN_MATCH => (None, None, name.map(str::to_owned)),
        c => (
            Some(pattern_of(c).ok_or_else(|| format!("invalid pattern type filter {c}"))?),
            name.map(str::to_owned),
            None,
        ),
    };
    let operation = match op {
        ANY => None,
        c => Some(operation_of(c).ok_or_else(|| format!("invalid operation filter {c}"))?),
    };
    let permission = match perm {
        ANY => None,
        c => Some(permission_of(c).ok_or_else(|| format!("invalid permission filter {c}"))?),
    };
    Ok(AclFilter {
        resource_type,
        name,
        pattern_type,
        principal: principal.map(str::to_owned),
        host: host.map(str::to_owned),
        operation,
        permission,
        covering,
    })
}

/// Whether `acl` is within what the wire filter `f` may return: a filter naming a resource
/// type (Kafka's or Weft's) covers that type; ANY covers Kafka's types only.
fn covered(f: &AclFilter, acl: &AclBinding) -> bool {
    f.resource_type.is_some() || KAFKA_TYPES.contains(&acl.pattern.resource_type)
}

/// The store filters a wire filter deletes with: itself when it names a type, else one per
/// Kafka type (ANY never deletes `subject` or `stream` ACLs).
fn deletion_filters(f: &AclFilter) -> Vec<AclFilter> {
    match f.resource_type {
        Some(_) => vec![f.clone()],
        None => KAFKA_TYPES
            .iter()
            .map(|t| AclFilter {
                resource_type: Some(*t),
                ..f.clone()
            })
            .collect(),
    }
}

// ---- handlers ----

const NO_ACL_STORE: &str = "no ACL store is configured";
const NO_SCRAM_STORE: &str = "no credential store is configured";

/// Why a whole request is refused: its error and message.
type Refusal = (ResponseError, &'static str);

/// `store` once the principal may `op` the cluster; else what refuses the whole request
/// (SECURITY_DISABLED with `missing` when there is no store, checked first).
fn admit<S>(
    az: Authz<'_>,
    store: Option<S>,
    missing: &'static str,
    op: Operation,
) -> Result<S, Refusal> {
    let store = store.ok_or((ResponseError::SecurityDisabled, missing))?;
    if !az.cluster(op) {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            "Authorization failed.",
        ));
    }
    Ok(store)
}

pub(crate) async fn create_acls(az: Authz<'_>, r: CreateAclsRequest) -> CreateAclsResponse {
    let store = match admit(az, az.auth.acl_store(), NO_ACL_STORE, Operation::Alter) {
        Ok(store) => store,
        Err((e, m)) => {
            let each = |_| {
                AclCreationResult::default()
                    .with_error_code(e.code())
                    .with_error_message(msg(m))
            };
            return CreateAclsResponse::default()
                .with_results(r.creations.iter().map(each).collect());
        }
    };
    let parsed: Vec<Result<AclBinding, String>> = r
        .creations
        .iter()
        .map(|c| {
            binding(
                c.resource_type,
                c.resource_name.as_str(),
                c.resource_pattern_type,
                c.principal.as_str(),
                c.host.as_str(),
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .cloned()
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        store.add(&valid).await.map(|_| ())
    };
    if let Err(e) = &stored {
        warn!(error = %e, "storing acls failed");
    } else if !valid.is_empty() {
        info!(principal = %az.session.principal, acls = valid.len(), "acls created");
        if let Err(e) = az.auth.reload().await {
            warn!(error = %e, "reloading acls after a change failed");
        }
    }
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(m), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(msg(m)),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(msg(format!("storing the ACL failed: {e}"))),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// ACLs grouped by resource pattern, as DescribeAcls answers them.
fn describe_resources(acls: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut out: Vec<DescribeAclsResource> = Vec::new();
    let mut last: Option<ResourcePattern> = None;
    for a in acls {
        let rtype = resource_type_code(a.pattern.resource_type);
        let d = AclDescription::default()
            .with_principal(str(&a.principal))
            .with_host(str(&a.host))
            .with_operation(operation_code(a.operation))
            .with_permission_type(permission_code(a.permission));
        match out.last_mut() {
            Some(res) if last.as_ref() == Some(&a.pattern) => res.acls.push(d),
            _ => {
                out.push(
                    DescribeAclsResource::default()
                        .with_resource_type(rtype)
                        .with_resource_name(str(&a.pattern.name))
                        .with_pattern_type(pattern_code(a.pattern.pattern_type))
                        .with_acls(vec![d]),
                );
                last = Some(a.pattern.clone());
            }
        }
    }
    out
}

pub(crate) async fn describe_acls(
    az: Authz<'_>,
    r: DescribeAclsRequest,
    _version: i16,
) -> DescribeAclsResponse {
    let err = |e: ResponseError, m: String| {
        DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(msg(m))
    };
    let store = match admit(az, az.auth.acl_store(), NO_ACL_STORE, Operation::Describe) {
        Ok(store) => store,
        Err((e, m)) => return err(e, m.into()),
    };
    let f = match filter(
        r.resource_type_filter,
        r.resource_name_filter.as_ref().map(|s| s.as_str()),
        r.pattern_type_filter,
        r.principal_filter.as_ref().map(|s| s.as_str()),
        r.host_filter.as_ref().map(|s| s.as_str()),
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(m) => return err(ResponseError::InvalidRequest, m),
    };
    match store.list(&f).await {
        // Sorted by pattern first (AclBinding's order), so one pass groups them.
        Ok(mut acls) => {
            acls.retain(|a| covered(&f, a));
            DescribeAclsResponse::default().with_resources(describe_resources(acls))
        }
        Err(e) => {
            warn!(error = %e, "listing acls failed");
            err(
                ResponseError::UnknownServerError,
                format!("listing ACLs failed: {e}"),
            )
        }
    }
}

pub(crate) async fn delete_acls(az: Authz<'_>, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let store = match admit(az, az.auth.acl_store(), NO_ACL_STORE, Operation::Alter) {
        Ok(store) => store,
        Err((e, m)) => {
            let each = |_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(msg(m))
            };
            return DeleteAclsResponse::default()
                .with_filter_results(r.filters.iter().map(each).collect());
        }
    };
    let mut results = Vec::with_capacity(r.filters.len());
    let mut removed_any = false;
    for f in &r.filters {
        let parsed = filter(
            f.resource_type_filter,
            f.resource_name_filter.as_ref().map(|s| s.as_str()),
            f.pattern_type_filter,
            f.principal_filter.as_ref().map(|s| s.as_str()),
            f.host_filter.as_ref().map(|s| s.as_str()),
            f.operation,
            f.permission_type,
        );
        let parsed = match parsed {
            Ok(p) => p,
            Err(m) => {
                results.push(
                    DeleteAclsFilterResult::default()
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(msg(m)),
                );
                continue;
            }
        };
        let mut matching = Vec::new();
        let mut failed = None;
        for sub in deletion_filters(&parsed) {
            match store.remove(&sub).await {
                Ok((removed, _)) => matching.extend(removed),
                Err(e) => {
                    warn!(error = %e, "deleting acls failed");
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        removed_any |= !matching.is_empty();
        let matching_acls = matching
            .into_iter()
            .map(|a| {
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(resource_type_code(a.pattern.resource_type))
                    .with_resource_name(str(&a.pattern.name))
                    .with_pattern_type(pattern_code(a.pattern.pattern_type))
                    .with_principal(str(&a.principal))
                    .with_host(str(&a.host))
                    .with_operation(operation_code(a.operation))
                    .with_permission_type(permission_code(a.permission))
            })
            .collect();
        let mut res = DeleteAclsFilterResult::default().with_matching_acls(matching_acls);
        if let Some(m) = failed {
            res = res
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(msg(format!("deleting ACLs failed: {m}")));
        }
        results.push(res);
    }
    if removed_any {
        info!(principal = %az.session.principal, "acls deleted");
    }
    // Always: a removal that found nothing still bumped the store's generation.
    if let Err(e) = az.auth.reload().await {
        warn!(error = %e, "reloading acls after a change failed");
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

pub(crate) async fn describe_user_scram_credentials(
    az: Authz<'_>,
    r: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let err = |e: ResponseError, m: String| {
        DescribeUserScramCredentialsResponse::default()
            .with_error_code(e.code())
            .with_error_message(msg(m))
    };
    let store = match admit(
        az,
        az.auth.scram_store(),
        NO_SCRAM_STORE,
        Operation::Describe,
    ) {
        Ok(store) => store,
        Err((e, m)) => return err(e, m.into()),
    };
    let stored = match store.describe().await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "listing scram credentials failed");
            return err(
                ResponseError::UnknownServerError,
                format!("listing credentials failed: {e}"),
            );
        }
    };
    let infos = |user: &str| -> Vec<CredentialInfo> {
        stored
            .iter()
            .filter(|(u, _, _)| u == user)
            .filter_map(|(_, m, i)| {
                Some(
                    CredentialInfo::default()
                        .with_mechanism(scram_mechanism_code(m)?)
                        .with_iterations(i32::try_from(*i).unwrap_or(i32::MAX)),
                )
            })
            .collect()
    };
    let results = match r.users.as_deref() {
        // null or empty: every user with a credential.
        None | Some([]) => {
            let mut users: Vec<&str> = stored.iter().map(|(u, _, _)| u.as_str()).collect();
            users.dedup();
            users
                .into_iter()
                .map(|u| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(str(u))
                        .with_credential_infos(infos(u))
                })
                .collect()
        }
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let user = n.name.as_str();
                let res = DescribeUserScramCredentialsResult::default().with_user(n.name.clone());
                if names[..i].iter().any(|m| m.name == n.name) {
                    return res
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(msg(format!("user {user} named twice")));
                }
                let found = infos(user);
                if found.is_empty() {
                    res.with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(msg(format!(
                            "attempt to describe a user credential that does not exist: {user}"
                        )))
                } else {
                    res.with_credential_infos(found)
                }
            })
            .collect(),
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's checked changes: mechanisms to delete, credentials to store.
type UserChanges = (Vec<ScramMechanism>, Vec<(ScramMechanism, ScramCredential)>);

/// What AlterUserScramCredentials does to one user: deletions and upsertions, or the
/// error that refuses all of that user's changes (Kafka refuses a user's changes together).
pub(crate) async fn alter_user_scram_credentials(
    az: Authz<'_>,
    r: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut users: Vec<StrBytes> = Vec::new();
    for n in r
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(r.upsertions.iter().map(|u| &u.name))
    {
        if !users.contains(n) {
            users.push(n.clone());
        }
    }
    let result = |user: &StrBytes, e: Option<(ResponseError, String)>| {
        let res = AlterUserScramCredentialsResult::default().with_user(user.clone());
        match e {
            Some((e, m)) => res.with_error_code(e.code()).with_error_message(msg(m)),
            None => res,
        }
    };
    let store = match admit(az, az.auth.scram_store(), NO_SCRAM_STORE, Operation::Alter) {
        Ok(store) => store,
        Err((e, m)) => {
            let each = |u| result(u, Some((e, m.to_owned())));
            return AlterUserScramCredentialsResponse::default()
                .with_results(users.iter().map(each).collect());
        }
    };
    let mut results = Vec::with_capacity(users.len());
    for user in &users {
        let name = user.as_str();
        let dels: Vec<_> = r.deletions.iter().filter(|d| &d.name == user).collect();
        let ups: Vec<_> = r.upsertions.iter().filter(|u| &u.name == user).collect();
        // Checked for the whole user before anything of it is written.
        let check = || -> Result<UserChanges, (ResponseError, String)> {
            if name.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "empty user name".into(),
                ));
            }
            let mut mechs: Vec<i8> = Vec::new();
            for m in dels
                .iter()
                .map(|d| d.mechanism)
                .chain(ups.iter().map(|u| u.mechanism))
            {
                if mechs.contains(&m) {
                    return Err((
                        ResponseError::DuplicateResource,
                        format!(
                            "a user credential cannot be altered twice in the same request: {name}"
                        ),
                    ));
                }
                mechs.push(m);
            }
            let mech = |code: i8| {
                scram_mechanism_of(code).ok_or_else(|| {
                    (
                        ResponseError::UnsupportedSaslMechanism,
                        format!("unknown SCRAM mechanism {code}"),
                    )
                })
            };
            let d = dels
                .iter()
                .map(|d| mech(d.mechanism))
                .collect::<Result<Vec<_>, _>>()?;
            let u = ups
                .iter()
                .map(|u| {
                    let m = mech(u.mechanism)?;
                    let iterations = u32::try_from(u.iterations).map_err(|_| {
                        (
                            ResponseError::UnacceptableCredential,
                            format!("iterations {}", u.iterations),
                        )
                    })?;
                    if u.salted_password.is_empty() {
                        return Err((
                            ResponseError::UnacceptableCredential,
                            "empty salted password".into(),
                        ));
                    }
                    let cred = ScramCredential::from_salted_password(
                        m,
                        &u.salted_password,
                        &u.salt,
                        iterations,
                    )
                    .map_err(|e| (ResponseError::UnacceptableCredential, e.to_string()))?;
                    Ok((m, cred))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((d, u))
        };
        let (dels, ups) = match check() {
            Ok(x) => x,
            Err(e) => {
                results.push(result(user, Some(e)));
                continue;
            }
        };
        let mut failure = None;
        for m in dels {
            match store.delete(name, m).await {
                Ok(true) => info!(
                    user = name,
                    mechanism = m.as_str(),
                    "scram credential deleted"
                ),
                Ok(false) => {
                    failure = Some((
                        ResponseError::ResourceNotFound,
                        format!(
                            "attempt to delete a user credential that does not exist: {name} {}",
                            m.as_str()
                        ),
                    ));
                    break;
                }
                Err(e) => {
                    failure = Some((ResponseError::UnknownServerError, e.to_string()));
                    break;
                }
            }
        }
        if failure.is_none() {
            for (m, cred) in ups {
                match store.upsert(name, m, &cred).await {
                    Ok(()) => info!(
                        user = name,
                        mechanism = m.as_str(),
                        "scram credential stored"
                    ),
                    Err(e) => {
                        failure = Some((ResponseError::UnknownServerError, e.to_string()));
                        break;
                    }
                }
            }
        }
        results.push(result(user, failure));
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(resource_type_of(resource_type_code(*t)), Some(*t));
        }
        assert_eq!(resource_type_code(ResourceType::Subject), 100);
        assert_eq!(resource_type_code(ResourceType::Stream), 101);
        // Every type is either Kafka's (codes 2–5) or Weft's (100 and up), never both.
        for t in ResourceType::ALL {
            let c = resource_type_code(*t);
            assert_ne!(KAFKA_TYPES.contains(t), WEFT_TYPES.contains(t), "{t}");
            assert_eq!(KAFKA_TYPES.contains(t), (2..=7).contains(&c), "{t}");
        }
        for unknown in [0, 6, 7, 8, 99, 102, -1] {
            assert_eq!(resource_type_of(unknown), None, "{unknown}");
        }
        for o in Operation::ALL {
            assert_eq!(operation_of(operation_code(*o)), Some(*o));
        }
        assert_eq!(operation_of(12), Some(Operation::IdempotentWrite));
        for p in PatternType::ALL {
            assert_eq!(pattern_of(pattern_code(*p)), Some(*p));
        }
        for p in Permission::ALL {
            assert_eq!(permission_of(permission_code(*p)), Some(*p));
        }
        // ANY, MATCH, UNKNOWN and codes Weft has no operation for are not bindings.
        for bad in [0, 1, 9, 13, 14, 99] {
            assert_eq!(operation_of(bad), None, "{bad}");
        }
        assert_eq!(pattern_of(ANY), None);
        assert_eq!(pattern_of(PATTERN_MATCH), None);
        assert_eq!(resource_type_of(ANY), None);
        assert_eq!(weft_auth::acl::CLUSTER_NAME, "kafka-cluster");
    }

    // ---- the handlers over a real (SQLite) ACL store: Weft's resource types on the wire ----

    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use weft_auth::AuthorizerConfig;
    use weft_auth::store::AclStore;

    use crate::authz::Authorization;
    use crate::authz::tests::session;

    const LITERAL: i8 = 3;
    const PREFIXED: i8 = 4;
    const READ: i8 = 3;
    const WRITE: i8 = 4;
    const ALLOW: i8 = 3;
    const TOPIC: i8 = 2;

    /// (resource type, name, pattern, principal, operation) of one described or deleted ACL.
    type Row = (i8, String, i8, String, i8);

    /// An enabled authoriser over a fresh SQLite state store; `User:admin` a super-user.
    async fn broker() -> (tempfile::TempDir, Authorization) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = weft_store::Store::open_sqlite(&dir.path().join("state.db"))
            .await
            .expect("store");
        weft_auth::store::migrate(&store).await.expect("migrate");
        let config = AuthorizerConfig {
            enabled: true,
            super_users: ["User:admin".parse().expect("principal")].into(),
            allow_if_no_acls: false,
        };
        let auth = Authorization::with_authorizer(config, Some(AclStore::new(store)), None);
        (dir, auth)
    }

    fn creation(rtype: i8, name: &str, pattern: i8, op: i8) -> AclCreation {
        AclCreation::default()
            .with_resource_type(rtype)
            .with_resource_name(str(name))
            .with_resource_pattern_type(pattern)
            .with_principal(str("User:alice"))
            .with_host(str("*"))
            .with_operation(op)
            .with_permission_type(ALLOW)
    }

    /// Creates `acls` as `principal`; the error code of each creation.
    async fn create(auth: &Authorization, principal: &str, acls: Vec<AclCreation>) -> Vec<i16> {
        let s = session(principal);
        let r = CreateAclsRequest::default().with_creations(acls);
        let resp = create_acls(Authz::new(auth, &s), r).await;
        resp.results.iter().map(|r| r.error_code).collect()
    }

    /// DescribeAcls with a resource type, name and pattern filter (everything else ANY).
    async fn describe(
        auth: &Authorization,
        rtype: i8,
        name: Option<&str>,
        pattern: i8,
    ) -> Vec<Row> {
        let s = session("User:admin");
        let r = DescribeAclsRequest::default()
            .with_resource_type_filter(rtype)
            .with_resource_name_filter(name.map(str))
            .with_pattern_type_filter(pattern)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(ANY)
            .with_permission_type(ANY);
        let resp = describe_acls(Authz::new(auth, &s), r, 3).await;
        assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
        resp.resources
            .iter()
            .flat_map(|res| {
                res.acls.iter().map(|a| {
                    (
                        res.resource_type,
                        res.resource_name.to_string(),
                        res.pattern_type,
                        a.principal.to_string(),
                        a.operation,
                    )
                })
            })
            .collect()
    }

    /// DeleteAcls with one filter of that resource type, name and pattern (else ANY).
    async fn delete(auth: &Authorization, rtype: i8, name: Option<&str>, pattern: i8) -> Vec<Row> {
        let s = session("User:admin");
        let f = DeleteAclsFilter::default()
            .with_resource_type_filter(rtype)
            .with_resource_name_filter(name.map(str))
            .with_pattern_type_filter(pattern)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(ANY)
            .with_permission_type(ANY);
        let resp = delete_acls(
            Authz::new(auth, &s),
            DeleteAclsRequest::default().with_filters(vec![f]),
        )
        .await;
        let [res] = resp.filter_results.as_slice() else {
            panic!("one result per filter: {resp:?}");
        };
        assert_eq!(res.error_code, 0, "{:?}", res.error_message);
        res.matching_acls
            .iter()
            .map(|a| {
                (
                    a.resource_type,
                    a.resource_name.to_string(),
                    a.pattern_type,
                    a.principal.to_string(),
                    a.operation,
                )
            })
            .collect()
    }

    fn row(rtype: i8, name: &str, pattern: i8, op: i8) -> Row {
        (rtype, name.to_owned(), pattern, "User:alice".to_owned(), op)
    }

    /// Whether the broker's authoriser lets alice `op` the resource (the change applied).
    fn alice_may(auth: &Authorization, op: Operation, rtype: ResourceType, name: &str) -> bool {
        let alice = "User:alice".parse().expect("principal");
        auth.authorizer()
            .authorize(&alice, "127.0.0.1", op, rtype, name)
            .is_allowed()
    }

    #[tokio::test]
    async fn subject_and_stream_acls_need_an_explicit_resource_type_filter() {
        let (_dir, auth) = broker().await;
        let topic = row(TOPIC, "orders", LITERAL, READ);
        let subject = row(SUBJECT, "a-", PREFIXED, READ);
        let stream = row(STREAM, "order-", PREFIXED, WRITE);
        let created = create(
            &auth,
            "User:admin",
            vec![
                creation(TOPIC, "orders", LITERAL, READ),
                creation(SUBJECT, "a-", PREFIXED, READ),
                creation(STREAM, "order-", PREFIXED, WRITE),
            ],
        )
        .await;
        assert_eq!(created, [0, 0, 0]);
        // Applied to the broker's authoriser before the answer (what the registry shares).
        assert!(alice_may(
            &auth,
            Operation::Read,
            ResourceType::Subject,
            "a-orders"
        ));
        assert!(alice_may(
            &auth,
            Operation::Write,
            ResourceType::Stream,
            "order-1"
        ));
        assert!(!alice_may(
            &auth,
            Operation::Read,
            ResourceType::Subject,
            "b-orders"
        ));

        // What each describe filter returns.
        let cases: &[(i8, Option<&str>, i8, &[&Row])] = &[
            // ANY, as kafka-acls --list and kafka-python's describe_acls send it: Kafka's only.
            (ANY, None, ANY, &[&topic]),
            (ANY, Some("a-"), ANY, &[]),
            (ANY, Some("a-orders"), PATTERN_MATCH, &[]),
            (SUBJECT, None, ANY, &[&subject]),
            (SUBJECT, Some("a-"), PREFIXED, &[&subject]),
            (SUBJECT, Some("a-"), LITERAL, &[]),
            (SUBJECT, Some("a-orders"), PATTERN_MATCH, &[&subject]),
            (SUBJECT, Some("order-1"), PATTERN_MATCH, &[]),
            (STREAM, None, ANY, &[&stream]),
            (STREAM, Some("order-1"), PATTERN_MATCH, &[&stream]),
            (TOPIC, None, ANY, &[&topic]),
        ];
        for (rtype, name, pattern, want) in cases {
            let got = describe(&auth, *rtype, *name, *pattern).await;
            let want: Vec<Row> = want.iter().map(|r| (*r).clone()).collect();
            assert_eq!(got, want, "filter {rtype} {name:?} {pattern}");
        }

        // DeleteAcls with ANY everywhere (kafka-acls --remove of everything): Kafka's only.
        assert_eq!(delete(&auth, ANY, None, ANY).await, [topic]);
        assert_eq!(
            describe(&auth, SUBJECT, None, ANY).await,
            std::slice::from_ref(&subject)
        );
        assert_eq!(
            describe(&auth, STREAM, None, ANY).await,
            std::slice::from_ref(&stream)
        );
        assert!(alice_may(
            &auth,
            Operation::Read,
            ResourceType::Subject,
            "a-orders"
        ));

        // An explicit filter deletes them, answered with their Weft codes.
        assert_eq!(
            delete(&auth, SUBJECT, Some("a-"), LITERAL).await,
            Vec::<Row>::new()
        );
        assert_eq!(
            delete(&auth, SUBJECT, Some("a-"), PREFIXED).await,
            [subject]
        );
        assert!(!alice_may(
            &auth,
            Operation::Read,
            ResourceType::Subject,
            "a-orders"
        ));
        assert_eq!(
            describe(&auth, STREAM, None, ANY).await,
            std::slice::from_ref(&stream)
        );
        assert_eq!(delete(&auth, STREAM, None, ANY).await, [stream]);
        assert!(!alice_may(
            &auth,
            Operation::Write,
            ResourceType::Stream,
            "order-1"
        ));
        assert_eq!(describe(&auth, SUBJECT, None, ANY).await, Vec::<Row>::new());
    }

    #[tokio::test]
    async fn subject_and_stream_creations_are_checked() {
        let (_dir, auth) = broker().await;
        let invalid = ResponseError::InvalidRequest.code();
        let cases: &[(AclCreation, i16)] = &[
            (
                creation(SUBJECT, "a", LITERAL, operation_code(Operation::Create)),
                invalid,
            ),
            (
                creation(
                    STREAM,
                    "s",
                    LITERAL,
                    operation_code(Operation::IdempotentWrite),
                ),
                invalid,
            ),
            (creation(SUBJECT, "", PREFIXED, READ), invalid),
            (creation(102, "a", LITERAL, READ), invalid),
            (creation(ANY, "a", LITERAL, READ), invalid),
        ];
        for (c, want) in cases {
            assert_eq!(
                create(&auth, "User:admin", vec![c.clone()]).await,
                [*want],
                "{c:?}"
            );
        }
        for op in [
            Operation::Read,
            Operation::Write,
            Operation::Delete,
            Operation::Alter,
            Operation::Describe,
            Operation::DescribeConfigs,
            Operation::AlterConfigs,
            Operation::All,
        ] {
            for rtype in [SUBJECT, STREAM] {
                let c = creation(rtype, "x", LITERAL, operation_code(op));
                assert_eq!(
                    create(&auth, "User:admin", vec![c]).await,
                    [0],
                    "{op} {rtype}"
                );
            }
        }
        // As every ACL change: ALTER on the cluster (bob has none).
        let c = creation(SUBJECT, "y", LITERAL, READ);
        assert_eq!(
            create(&auth, "User:bob", vec![c]).await,
            [ResponseError::ClusterAuthorizationFailed.code()]
        );
        assert_eq!(
            describe(&auth, SUBJECT, Some("y"), ANY).await,
            Vec::<Row>::new()
        );
    }
}
