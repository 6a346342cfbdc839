//! `weft acl add|list|remove`: ACLs through Kafka's admin APIs (CreateAcls, DescribeAcls,
//! DeleteAcls v1), so they work against `weft serve` and any Kafka broker with an
//! authoriser.
//!
//! The rdkafka crate does not expose librdkafka's ACL or SCRAM admin calls (only through its
//! unsafe FFI, which this workspace forbids), so these commands speak the protocol directly
//! with the `kafka-protocol` codec over a [`Wire`] to the first bootstrap server (PLAINTEXT,
//! SSL, SASL_PLAINTEXT or SASL_SSL from `--command-config` / `-X`). `weft user` does too.
//!
//! `subject` (registry) and `stream` (event store) ACLs travel with Weft's own resource type
//! codes, 100 and 101 (a Kafka broker refuses them as invalid). A resource type filter of
//! ANY does not cover them on Weft's broker, so `list`/`remove` without a resource reach
//! them only with `--all-types` (one filter per family).

use std::process::ExitCode;

use anyhow::bail;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use weft_auth::{Operation, PatternType, Permission, ResourceType};

use super::ClientArgs;
use super::wire::{Wire, describe_code};

// ---- Kafka codes of the ACL enums (org.apache.kafka.common.{resource,acl}) ----

const ANY: i8 = 1;
const MATCH: i8 = 2;
/// Weft extensions (weft-broker's `handlers::acls`): only an explicit filter covers them.
const SUBJECT: i8 = 100;
const STREAM: i8 = 101;

fn resource_code(t: ResourceType) -> i8 {
    match t {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
        ResourceType::Subject => SUBJECT,
        ResourceType::Stream => STREAM,
    }
}

fn resource_name(code: i8) -> &'static str {
    ResourceType::ALL
        .iter()
        .find(|t| resource_code(**t) == code)
        .map_or("unknown", |t| t.as_str())
}

/// The resource type filters that cover every ACL: ANY (Kafka's types) and Weft's own.
const ALL_TYPES: [i8; 3] = [ANY, SUBJECT, STREAM];

fn pattern_code(p: PatternType) -> i8 {
    match p {
        PatternType::Literal => 3,
        PatternType::Prefixed => 4,
    }
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        3 => "literal",
        4 => "prefixed",
        _ => "unknown",
    }
}

fn operation_code(o: Operation) -> i8 {
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

fn operation_name(code: i8) -> String {
    Operation::ALL
        .iter()
        .find(|o| operation_code(**o) == code)
        .map_or_else(|| format!("operation-{code}"), |o| o.as_str().to_owned())
}

fn permission_code(p: Permission) -> i8 {
    match p {
        Permission::Deny => 2,
        Permission::Allow => 3,
    }
}

fn permission_name(code: i8) -> &'static str {
    match code {
        2 => "deny",
        3 => "allow",
        _ => "unknown",
    }
}

// ---- arguments ----

#[derive(Debug, clap::Args)]
pub(crate) struct AclArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    action: Action,
}

/// Which resource: exactly one of these for `add`; at most one for `list`/`remove`.
#[derive(Debug, Clone, clap::Args)]
struct Resource {
    /// A topic (with --prefixed: every topic starting with it; `*`: every topic)
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group (with --prefixed: every group starting with it; `*`: every group)
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// The cluster (creating topics, ACL administration, listing groups…)
    #[arg(long, group = "resource")]
    cluster: bool,
    /// A transactional id
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// A registry subject (with --prefixed: every subject starting with it; `*`: every
    /// subject). Operations: read, write, delete, alter, describe, describe-configs,
    /// alter-configs, all
    #[arg(long, group = "resource")]
    subject: Option<String>,
    /// An event-store stream (with --prefixed: a category such as `order-`; `$all`: the
    /// all-streams read). Operations as for --subject
    #[arg(long, group = "resource")]
    stream: Option<String>,
}

impl Resource {
    fn get(&self) -> Option<(ResourceType, String)> {
        if let Some(t) = &self.topic {
            Some((ResourceType::Topic, t.clone()))
        } else if let Some(g) = &self.group {
            Some((ResourceType::Group, g.clone()))
        } else if self.cluster {
            Some((
                ResourceType::Cluster,
                weft_auth::acl::CLUSTER_NAME.to_owned(),
            ))
        } else if let Some(t) = &self.transactional_id {
            Some((ResourceType::TransactionalId, t.clone()))
        } else if let Some(s) = &self.subject {
            Some((ResourceType::Subject, s.clone()))
        } else {
            self.stream
                .as_ref()
                .map(|s| (ResourceType::Stream, s.clone()))
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Allow or deny principals operations on a resource
    Add {
        #[command(flatten)]
        resource: Resource,
        /// The name is a prefix (every resource whose name starts with it)
        #[arg(long)]
        prefixed: bool,
        /// Principal, `User:<name>` or `User:*` (repeatable)
        #[arg(long = "principal", required = true)]
        principals: Vec<String>,
        /// Operation: read, write, create, delete, alter, describe, describe-configs,
        /// alter-configs, idempotent-write (cluster only), all (repeatable)
        #[arg(long = "operation", required = true)]
        operations: Vec<Operation>,
        /// Deny instead of allow (a deny wins over every allow)
        #[arg(long)]
        deny: bool,
        /// Client host the ACL applies to
        #[arg(long, default_value = "*")]
        host: String,
    },
    /// List ACLs (all, or those matching the filters)
    List {
        #[command(flatten)]
        resource: Resource,
        /// Only prefixed patterns (default: the exact resource name's ACLs, any pattern)
        #[arg(long, conflicts_with = "applying")]
        prefixed: bool,
        /// Every ACL that applies to the named resource: literal, `*` and prefixes of it
        #[arg(long)]
        applying: bool,
        #[arg(long)]
        principal: Option<String>,
        /// Without a resource: subject and stream ACLs too (Kafka's ANY covers neither)
        #[arg(long, conflicts_with = "resource")]
        all_types: bool,
    },
    /// Remove the ACLs matching the filters (the removed ones are printed)
    Remove {
        #[command(flatten)]
        resource: Resource,
        #[arg(long)]
        prefixed: bool,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        operation: Option<Operation>,
        /// Only deny ACLs
        #[arg(long, conflicts_with = "allow")]
        deny: bool,
        /// Only allow ACLs
        #[arg(long)]
        allow: bool,
        #[arg(long)]
        host: Option<String>,
        /// Needed to remove without naming a resource or principal (every ACL)
        #[arg(long)]
        all: bool,
        /// Without a resource: subject and stream ACLs too (Kafka's ANY covers neither)
        #[arg(long, conflicts_with = "resource")]
        all_types: bool,
    },
}

/// One ACL line: `allow User:alice read topic:orders (literal) from *`.
fn line(
    rtype: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    host: &str,
    op: i8,
    perm: i8,
) -> String {
    format!(
        "{} {principal} {} {}:{name} ({}) from {host}",
        permission_name(perm),
        operation_name(op),
        resource_name(rtype),
        pattern_name(pattern),
    )
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

pub(crate) async fn run(args: AclArgs) -> anyhow::Result<ExitCode> {
    let mut wire = Wire::connect(&args.client).await?;
    match args.action {
        Action::Add {
            resource,
            prefixed,
            principals,
            operations,
            deny,
            host,
        } => {
            let Some((rtype, name)) = resource.get() else {
                bail!(
                    "name the resource: --topic, --group, --cluster, --transactional-id, \
                     --subject or --stream"
                );
            };
            let pattern = if prefixed {
                PatternType::Prefixed
            } else {
                PatternType::Literal
            };
            let perm = if deny {
                Permission::Deny
            } else {
                Permission::Allow
            };
            let mut creations = Vec::new();
            for p in &principals {
                for op in &operations {
                    creations.push(
                        AclCreation::default()
                            .with_resource_type(resource_code(rtype))
                            .with_resource_name(s(&name))
                            .with_resource_pattern_type(pattern_code(pattern))
                            .with_principal(s(p))
                            .with_host(s(&host))
                            .with_operation(operation_code(*op))
                            .with_permission_type(permission_code(perm)),
                    );
                }
            }
            let req = CreateAclsRequest::default().with_creations(creations.clone());
            let resp = wire.call(&req, 1).await?;
            let mut failed = false;
            for (c, r) in creations.iter().zip(&resp.results) {
                let l = line(
                    c.resource_type,
                    &c.resource_name,
                    c.resource_pattern_type,
                    &c.principal,
                    &c.host,
                    c.operation,
                    c.permission_type,
                );
                if r.error_code == 0 {
                    println!("added: {l}");
                } else {
                    failed = true;
                    let m = r.error_message.as_deref().unwrap_or("");
                    eprintln!("cannot add {l}: {} {m}", describe_code(r.error_code));
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Action::List {
            resource,
            prefixed,
            applying,
            principal,
            all_types,
        } => {
            let res = resource.get();
            let rtypes = match &res {
                Some((t, _)) => vec![resource_code(*t)],
                None if all_types => ALL_TYPES.to_vec(),
                None => vec![ANY],
            };
            let pattern = if applying {
                MATCH
            } else if prefixed {
                pattern_code(PatternType::Prefixed)
            } else {
                ANY
            };
            let mut resources = Vec::new();
            for rtype in rtypes {
                let req = DescribeAclsRequest::default()
                    .with_resource_type_filter(rtype)
                    .with_resource_name_filter(res.as_ref().map(|(_, n)| s(n)))
                    .with_pattern_type_filter(pattern)
                    .with_principal_filter(principal.as_deref().map(s))
                    .with_host_filter(None)
                    .with_operation(ANY)
                    .with_permission_type(ANY);
                let resp = wire.call(&req, 1).await?;
                if resp.error_code != 0 {
                    let m = resp.error_message.as_deref().unwrap_or("");
                    bail!("cannot list ACLs: {} {m}", describe_code(resp.error_code));
                }
                resources.extend(resp.resources);
            }
            for r in &resources {
                for a in &r.acls {
                    println!(
                        "{}",
                        line(
                            r.resource_type,
                            &r.resource_name,
                            r.pattern_type,
                            &a.principal,
                            &a.host,
                            a.operation,
                            a.permission_type
                        )
                    );
                }
            }
        }
        Action::Remove {
            resource,
            prefixed,
            principal,
            operation,
            deny,
            allow,
            host,
            all,
            all_types,
        } => {
            let res = resource.get();
            if res.is_none() && principal.is_none() && !all {
                bail!("name a resource or --principal, or pass --all to remove every ACL");
            }
            let rtypes = match &res {
                Some((t, _)) => vec![resource_code(*t)],
                None if all_types => ALL_TYPES.to_vec(),
                None => vec![ANY],
            };
            let pattern = if prefixed {
                pattern_code(PatternType::Prefixed)
            } else if res.is_some() {
                pattern_code(PatternType::Literal)
            } else {
                ANY
            };
            let perm = if deny {
                permission_code(Permission::Deny)
            } else if allow {
                permission_code(Permission::Allow)
            } else {
                ANY
            };
            let filters: Vec<DeleteAclsFilter> = rtypes
                .iter()
                .map(|rtype| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(*rtype)
                        .with_resource_name_filter(res.as_ref().map(|(_, n)| s(n)))
                        .with_pattern_type_filter(pattern)
                        .with_principal_filter(principal.as_deref().map(s))
                        .with_host_filter(host.as_deref().map(s))
                        .with_operation(operation.map_or(ANY, operation_code))
                        .with_permission_type(perm)
                })
                .collect();
            let wanted = filters.len();
            let req = DeleteAclsRequest::default().with_filters(filters);
            let resp = wire.call(&req, 1).await?;
            if resp.filter_results.len() != wanted {
                bail!(
                    "the broker sent {} results for {wanted} filters",
                    resp.filter_results.len()
                );
            }
            let mut removed = 0;
            for r in &resp.filter_results {
                if r.error_code != 0 {
                    let m = r.error_message.as_deref().unwrap_or("");
                    bail!("cannot remove ACLs: {} {m}", describe_code(r.error_code));
                }
                removed += r.matching_acls.len();
            }
            for a in resp.filter_results.iter().flat_map(|r| &r.matching_acls) {
                println!(
                    "removed: {}",
                    line(
                        a.resource_type,
                        &a.resource_name,
                        a.pattern_type,
                        &a.principal,
                        &a.host,
                        a.operation,
                        a.permission_type
                    )
                );
            }
            if removed == 0 {
                eprintln!("no ACL matched");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
