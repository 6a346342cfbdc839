//! CreateAcls, DescribeAcls, DeleteAcls (v1–v3) over [`weft_auth::store::AclStore`], and
//! DescribeUserScramCredentials / AlterUserScramCredentials (v0, KIP-554) over
//! [`weft_auth::store::ScramStore`].
//!
//! Authorisation, as Kafka: creating and deleting ACLs and altering credentials need ALTER
//! on the cluster, describing them DESCRIBE on the cluster. Without a store (a broker built
//! without one) the APIs answer SECURITY_DISABLED. A change to the ACLs is applied to this
//! broker's authoriser before the response is sent.
//!
//! Kafka's wire codes are mapped here, in one table per enum; Weft's `subject` resource
//! type has no Kafka code, so its ACLs are neither shown nor deleted through these APIs.

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

/// The resource types Kafka has a code for.
const KAFKA_TYPES: &[ResourceType] = &[
    ResourceType::Topic,
    ResourceType::Group,
    ResourceType::Cluster,
    ResourceType::TransactionalId,
];

pub(crate) fn resource_type_code(t: ResourceType) -> Option<i8> {
    Some(match t {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
        ResourceType::Subject | ResourceType::Stream => return None,
    })
}

pub(crate) fn resource_type_of(code: i8) -> Option<ResourceType> {
    KAFKA_TYPES
        .iter()
        .copied()
        .find(|t| resource_type_code(*t) == Some(code))
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
/// ACL names `kafka-cluster`, a principal is `User:<name>`).
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
    Ok(acl)
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

/// The filter restricted to each resource type Kafka can name (never `subject` or `stream`).
fn kafka_filters(f: &AclFilter) -> Vec<AclFilter> {
    match f.resource_type {
        Some(ResourceType::Subject | ResourceType::Stream) => Vec::new(),
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
        let Some(rtype) = resource_type_code(a.pattern.resource_type) else {
            continue;
        };
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
        Ok(acls) => DescribeAclsResponse::default().with_resources(describe_resources(acls)),
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
        for sub in kafka_filters(&parsed) {
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
            .filter_map(|a| {
                Some(
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(resource_type_code(a.pattern.resource_type)?)
                        .with_resource_name(str(&a.pattern.name))
                        .with_pattern_type(pattern_code(a.pattern.pattern_type))
                        .with_principal(str(&a.principal))
                        .with_host(str(&a.host))
                        .with_operation(operation_code(a.operation))
                        .with_permission_type(permission_code(a.permission)),
                )
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
        for t in KAFKA_TYPES {
            let c = resource_type_code(*t).expect("code");
            assert_eq!(resource_type_of(c), Some(*t));
        }
        assert_eq!(resource_type_code(ResourceType::Subject), None);
        assert_eq!(resource_type_code(ResourceType::Stream), None);
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
}
