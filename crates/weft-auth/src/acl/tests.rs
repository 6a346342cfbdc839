use proptest::prelude::*;

use super::*;
use Operation::*;
use Permission::*;
use ResourceType::*;

fn alice() -> Principal {
    Principal::user("alice")
}

fn acl(pattern: ResourcePattern, principal: &str, op: Operation, perm: Permission) -> AclBinding {
    AclBinding::new(pattern, principal, op, perm)
}

fn req<'a>(p: &'a Principal, op: Operation, rt: ResourceType, name: &'a str) -> Request<'a> {
    Request {
        principal: p,
        host: "10.0.0.1",
        operation: op,
        resource_type: rt,
        name,
    }
}

/// One case: ACLs, a request by alice on `(rt, name)`, and the expected decision.
fn check(acls: &[AclBinding], op: Operation, rt: ResourceType, name: &str, expected: Decision) {
    let p = alice();
    let got = evaluate(acls, &req(&p, op, rt, name), false);
    assert_eq!(got, expected, "{op} {rt}:{name} with {acls:#?}");
}

#[test]
fn literal_prefixed_and_wildcard_patterns() {
    let lit = [acl(
        ResourcePattern::literal(Topic, "orders"),
        "User:alice",
        Read,
        Allow,
    )];
    check(&lit, Read, Topic, "orders", Decision::AllowedByAcl);
    check(&lit, Read, Topic, "orders-eu", Decision::DeniedNoMatch);
    check(&lit, Read, Group, "orders", Decision::DeniedNoMatch);
    let pre = [acl(
        ResourcePattern::prefixed(Topic, "orders"),
        "User:alice",
        Read,
        Allow,
    )];
    check(&pre, Read, Topic, "orders-eu", Decision::AllowedByAcl);
    check(&pre, Read, Topic, "order", Decision::DeniedNoMatch);
    let star = [acl(
        ResourcePattern::literal(Topic, "*"),
        "User:*",
        Write,
        Allow,
    )];
    check(&star, Write, Topic, "anything", Decision::AllowedByAcl);
    // A prefixed "*" is a prefix, not a wildcard.
    let pstar = [acl(
        ResourcePattern::prefixed(Topic, "*"),
        "User:alice",
        Write,
        Allow,
    )];
    check(&pstar, Write, Topic, "anything", Decision::DeniedNoMatch);
    // Someone else's allow does not help alice.
    let bob = [acl(
        ResourcePattern::literal(Topic, "orders"),
        "User:bob",
        Read,
        Allow,
    )];
    check(&bob, Read, Topic, "orders", Decision::DeniedNoMatch);
}

#[test]
fn deny_wins_and_prefixed_deny_beats_literal_allow() {
    let acls = [
        acl(
            ResourcePattern::literal(Topic, "orders-eu"),
            "User:alice",
            Read,
            Allow,
        ),
        acl(
            ResourcePattern::prefixed(Topic, "orders"),
            "User:alice",
            Read,
            Deny,
        ),
    ];
    check(&acls, Read, Topic, "orders-eu", Decision::DeniedByAcl);
    // A deny for everyone applies to alice too.
    let acls = [
        acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            All,
            Allow,
        ),
        acl(ResourcePattern::literal(Topic, "*"), "User:*", Write, Deny),
    ];
    check(&acls, Write, Topic, "t", Decision::DeniedByAcl);
    check(&acls, Read, Topic, "t", Decision::AllowedByAcl);
    // Deny All denies everything, even Describe.
    let acls = [
        acl(
            ResourcePattern::literal(Group, "g"),
            "User:alice",
            Read,
            Allow,
        ),
        acl(
            ResourcePattern::literal(Group, "g"),
            "User:alice",
            All,
            Deny,
        ),
    ];
    check(&acls, Describe, Group, "g", Decision::DeniedByAcl);
    // Deny Read does not deny Describe (Kafka: denies match the operation or All only).
    let acls = [
        acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            Read,
            Allow,
        ),
        acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            Write,
            Allow,
        ),
        acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            Read,
            Deny,
        ),
    ];
    check(&acls, Describe, Topic, "t", Decision::AllowedByAcl);
    check(&acls, Read, Topic, "t", Decision::DeniedByAcl);
}

#[test]
fn implied_operations() {
    for granting in [Read, Write, Delete, Alter, Describe, All] {
        let a = [acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            granting,
            Allow,
        )];
        check(&a, Describe, Topic, "t", Decision::AllowedByAcl);
    }
    for not_granting in [Create, DescribeConfigs, AlterConfigs] {
        let a = [acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            not_granting,
            Allow,
        )];
        check(&a, Describe, Topic, "t", Decision::DeniedNoMatch);
    }
    for granting in [DescribeConfigs, AlterConfigs, All] {
        let a = [acl(
            ResourcePattern::literal(Topic, "t"),
            "User:alice",
            granting,
            Allow,
        )];
        check(&a, DescribeConfigs, Topic, "t", Decision::AllowedByAcl);
    }
    // Implications go one way: Describe grants neither Read nor AlterConfigs.
    let a = [acl(
        ResourcePattern::literal(Topic, "t"),
        "User:alice",
        Describe,
        Allow,
    )];
    check(&a, Read, Topic, "t", Decision::DeniedNoMatch);
    let a = [acl(
        ResourcePattern::literal(Topic, "t"),
        "User:alice",
        DescribeConfigs,
        Allow,
    )];
    check(&a, AlterConfigs, Topic, "t", Decision::DeniedNoMatch);
    // All grants every operation.
    let a = [acl(
        ResourcePattern::literal(Cluster, CLUSTER_NAME),
        "User:alice",
        All,
        Allow,
    )];
    for op in Operation::ALL {
        check(&a, *op, Cluster, CLUSTER_NAME, Decision::AllowedByAcl);
    }
}

#[test]
fn hosts() {
    let mut a = acl(
        ResourcePattern::literal(Topic, "t"),
        "User:alice",
        Read,
        Allow,
    );
    a.host = "10.0.0.2".into();
    check(&[a.clone()], Read, Topic, "t", Decision::DeniedNoMatch);
    a.host = "10.0.0.1".into();
    check(&[a], Read, Topic, "t", Decision::AllowedByAcl);
}

#[test]
fn authorizer_default_deny_super_users_disabled_and_no_acl_fallback() {
    let mut config = AuthorizerConfig {
        enabled: true,
        ..Default::default()
    };
    config.super_users.insert(Principal::user("admin"));
    let auth = Authorizer::new(config.clone());
    assert_eq!(
        auth.authorize(&alice(), "h", Read, Topic, "t"),
        Decision::DeniedNoMatch
    );
    assert_eq!(
        auth.authorize(
            &Principal::user("admin"),
            "h",
            Delete,
            Cluster,
            CLUSTER_NAME
        ),
        Decision::AllowedSuperUser
    );
    assert_eq!(
        Authorizer::new(AuthorizerConfig::default()).authorize(&alice(), "h", All, Topic, "t"),
        Decision::AllowedDisabled
    );
    config.allow_if_no_acls = true;
    let open = Authorizer::new(config);
    assert_eq!(
        open.authorize(&alice(), "h", Read, Topic, "t"),
        Decision::AllowedNoAcls
    );
    // Once any ACL names the resource, the fallback no longer applies.
    open.add([acl(
        ResourcePattern::prefixed(Topic, "t"),
        "User:bob",
        Read,
        Allow,
    )]);
    assert_eq!(
        open.authorize(&alice(), "h", Read, Topic, "t"),
        Decision::DeniedNoMatch
    );
}

#[test]
fn cache_is_invalidated_on_every_change() {
    let auth = Authorizer::new(AuthorizerConfig {
        enabled: true,
        ..Default::default()
    });
    let p = alice();
    assert!(!auth.authorize(&p, "h", Read, Topic, "t").is_allowed());
    assert_eq!(auth.cached_decisions(), 1);
    let g0 = auth.generation();
    auth.add([acl(
        ResourcePattern::literal(Topic, "t"),
        "User:alice",
        Read,
        Allow,
    )]);
    assert_eq!(auth.generation(), g0 + 1);
    assert_eq!(auth.cached_decisions(), 0);
    assert!(auth.authorize(&p, "h", Read, Topic, "t").is_allowed());
    let removed = auth.remove(&AclFilter {
        principal: Some("User:alice".into()),
        ..Default::default()
    });
    assert_eq!(removed.len(), 1);
    assert!(!auth.authorize(&p, "h", Read, Topic, "t").is_allowed());
    auth.replace(
        vec![acl(
            ResourcePattern::literal(Topic, "t"),
            "User:*",
            Read,
            Allow,
        )],
        42,
    );
    assert_eq!(auth.generation(), 42);
    assert!(auth.authorize(&p, "h", Read, Topic, "t").is_allowed());
}

#[test]
fn filters_exact_and_covering() {
    let acls = [
        acl(
            ResourcePattern::literal(Topic, "orders-eu"),
            "User:alice",
            Read,
            Allow,
        ),
        acl(
            ResourcePattern::literal(Topic, "*"),
            "User:*",
            Describe,
            Allow,
        ),
        acl(
            ResourcePattern::prefixed(Topic, "orders"),
            "User:bob",
            Write,
            Deny,
        ),
        acl(
            ResourcePattern::prefixed(Topic, "ordersX"),
            "User:bob",
            Write,
            Deny,
        ),
        acl(
            ResourcePattern::literal(Topic, "orders"),
            "User:bob",
            Write,
            Allow,
        ),
        acl(
            ResourcePattern::literal(Group, "orders-eu"),
            "User:alice",
            Read,
            Allow,
        ),
    ];
    let hits = |f: &AclFilter| -> Vec<usize> {
        acls.iter()
            .enumerate()
            .filter(|(_, a)| f.matches(a))
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(
        hits(&AclFilter::covering(Topic, "orders-eu")),
        vec![0, 1, 2]
    );
    assert_eq!(hits(&AclFilter::default()), vec![0, 1, 2, 3, 4, 5]);
    let exact = AclFilter {
        name: Some("orders".into()),
        pattern_type: Some(PatternType::Prefixed),
        ..Default::default()
    };
    assert_eq!(hits(&exact), vec![2]);
    let by_principal = AclFilter {
        principal: Some("User:bob".into()),
        permission: Some(Deny),
        ..Default::default()
    };
    assert_eq!(hits(&by_principal), vec![2, 3]);
}

#[test]
fn validation_refuses_bad_acls() {
    let ok = acl(
        ResourcePattern::literal(Topic, "t"),
        "User:alice",
        Read,
        Allow,
    );
    assert_eq!(ok.validate(), Ok(()));
    let mut a = ok.clone();
    a.principal = "alice".into();
    assert!(matches!(a.validate(), Err(InvalidAcl::Principal(_))));
    let a = acl(ResourcePattern::prefixed(Topic, ""), "User:*", Read, Allow);
    assert_eq!(a.validate(), Err(InvalidAcl::EmptyName));
    let a = acl(
        ResourcePattern::literal(Cluster, "c"),
        "User:*",
        Alter,
        Allow,
    );
    assert_eq!(a.validate(), Err(InvalidAcl::ClusterName));
}

#[test]
fn names_round_trip() {
    for op in Operation::ALL {
        assert_eq!(op.as_str().parse::<Operation>(), Ok(*op));
    }
    assert_eq!("DESCRIBE_CONFIGS".parse::<Operation>(), Ok(DescribeConfigs));
    assert_eq!(
        "transactional-id".parse::<ResourceType>(),
        Ok(TransactionalId)
    );
    assert_eq!("IDEMPOTENT_WRITE".parse::<Operation>(), Ok(IdempotentWrite));
    assert!("cluster-action".parse::<Operation>().is_err());
}

/// IDEMPOTENT_WRITE on the cluster: granted by itself or `All`, by nothing else (Kafka's
/// `AclAuthorizer` implies no operation from it nor it from any), denied by a deny of itself
/// or of `All`; and it grants nothing but itself.
#[test]
fn idempotent_write_decisions() {
    let cluster = || ResourcePattern::literal(Cluster, CLUSTER_NAME);
    let one = |op, perm| acl(cluster(), "User:alice", op, perm);
    const ALLOW: Decision = Decision::AllowedByAcl;
    const NONE: Decision = Decision::DeniedNoMatch;
    const DENY: Decision = Decision::DeniedByAcl;
    let cases: Vec<(Vec<AclBinding>, Operation, Decision)> = vec![
        (vec![], IdempotentWrite, NONE),
        (vec![one(IdempotentWrite, Allow)], IdempotentWrite, ALLOW),
        (vec![one(All, Allow)], IdempotentWrite, ALLOW),
        (
            vec![acl(cluster(), "User:*", IdempotentWrite, Allow)],
            IdempotentWrite,
            ALLOW,
        ),
        (vec![one(Write, Allow)], IdempotentWrite, NONE),
        (vec![one(Alter, Allow)], IdempotentWrite, NONE),
        (vec![one(Create, Allow)], IdempotentWrite, NONE),
        (
            vec![one(IdempotentWrite, Allow), one(IdempotentWrite, Deny)],
            IdempotentWrite,
            DENY,
        ),
        (
            vec![one(IdempotentWrite, Allow), one(All, Deny)],
            IdempotentWrite,
            DENY,
        ),
        // A deny of another operation does not touch it.
        (
            vec![one(IdempotentWrite, Allow), one(Write, Deny)],
            IdempotentWrite,
            ALLOW,
        ),
        // It grants nothing else, not even DESCRIBE on the cluster.
        (vec![one(IdempotentWrite, Allow)], Describe, NONE),
        (vec![one(IdempotentWrite, Allow)], Write, NONE),
        (vec![one(IdempotentWrite, Allow)], Alter, NONE),
        // Another principal's grant is not alice's.
        (
            vec![acl(cluster(), "User:bob", IdempotentWrite, Allow)],
            IdempotentWrite,
            NONE,
        ),
    ];
    for (acls, op, expected) in cases {
        check(&acls, op, Cluster, CLUSTER_NAME, expected);
    }
    // Through the authoriser (its cache included) and without a denial log.
    let auth = Authorizer::new(AuthorizerConfig {
        enabled: true,
        ..AuthorizerConfig::default()
    });
    auth.replace(vec![one(IdempotentWrite, Allow)], 1);
    let p = alice();
    let ask = |op| auth.authorize_quietly(&p, "10.0.0.1", op, Cluster, CLUSTER_NAME);
    assert_eq!(ask(IdempotentWrite), Decision::AllowedByAcl);
    assert_eq!(ask(Alter), Decision::DeniedNoMatch);
    assert_eq!(
        auth.authorize(&p, "10.0.0.1", IdempotentWrite, Cluster, CLUSTER_NAME),
        Decision::AllowedByAcl
    );
}

#[test]
fn idempotent_write_is_a_cluster_operation() {
    let on = |pattern| acl(pattern, "User:alice", IdempotentWrite, Allow).validate();
    assert_eq!(on(ResourcePattern::literal(Cluster, CLUSTER_NAME)), Ok(()));
    for pattern in [
        ResourcePattern::literal(Topic, "t"),
        ResourcePattern::prefixed(Topic, "t"),
        ResourcePattern::literal(Group, "*"),
        ResourcePattern::literal(TransactionalId, "tx"),
    ] {
        assert_eq!(on(pattern), Err(InvalidAcl::ClusterOnly(IdempotentWrite)));
    }
}

// ---- properties ----

fn arb_acl() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![Topic, Group]),
        prop::sample::select(vec!["a", "ab", "abc", "b", "*"]),
        prop::sample::select(vec![PatternType::Literal, PatternType::Prefixed]),
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(Operation::ALL.to_vec()),
        prop::sample::select(vec![Allow, Deny]),
    )
        .prop_map(|(rt, name, pt, p, op, perm)| {
            acl(
                ResourcePattern {
                    resource_type: rt,
                    name: name.into(),
                    pattern_type: pt,
                },
                p,
                op,
                perm,
            )
        })
}

fn arb_request() -> impl Strategy<Value = (ResourceType, &'static str, Operation, &'static str)> {
    (
        prop::sample::select(vec![Topic, Group]),
        prop::sample::select(vec!["a", "ab", "abc", "b", "c"]),
        prop::sample::select(Operation::ALL.to_vec()),
        prop::sample::select(vec!["alice", "bob", "carol"]),
    )
}

/// The rules written the slow, obvious way, straight from Kafka's documentation.
fn model(acls: &[AclBinding], p: &str, op: Operation, rt: ResourceType, name: &str) -> bool {
    let applies = |a: &AclBinding| {
        a.pattern.resource_type == rt
            && (a.principal == "User:*" || a.principal == format!("User:{p}"))
            && match a.pattern.pattern_type {
                PatternType::Literal => a.pattern.name == "*" || a.pattern.name == name,
                PatternType::Prefixed => name.starts_with(a.pattern.name.as_str()),
            }
    };
    let denied = acls
        .iter()
        .any(|a| applies(a) && a.permission == Deny && (a.operation == op || a.operation == All));
    let implied = |granted: Operation| {
        granted == op
            || granted == All
            || (op == Describe && matches!(granted, Read | Write | Delete | Alter))
            || (op == DescribeConfigs && granted == AlterConfigs)
    };
    let allowed = acls
        .iter()
        .any(|a| applies(a) && a.permission == Allow && implied(a.operation));
    !denied && allowed
}

proptest! {
    #[test]
    fn evaluation_matches_the_model(
        acls in prop::collection::vec(arb_acl(), 0..12),
        (rt, name, op, who) in arb_request(),
    ) {
        let p = Principal::user(who);
        let got = evaluate(&acls, &req(&p, op, rt, name), false).is_allowed();
        prop_assert_eq!(got, model(&acls, who, op, rt, name));
    }

    #[test]
    fn a_matching_deny_always_wins(
        acls in prop::collection::vec(arb_acl(), 0..12),
        (rt, name, op, who) in arb_request(),
        prefixed in any::<bool>(),
    ) {
        let mut acls = acls;
        let pattern = if prefixed {
            ResourcePattern::prefixed(rt, &name[..1])
        } else {
            ResourcePattern::literal(rt, name)
        };
        acls.push(acl(pattern, &format!("User:{who}"), op, Deny));
        let p = Principal::user(who);
        prop_assert_eq!(evaluate(&acls, &req(&p, op, rt, name), true), Decision::DeniedByAcl);
    }

    #[test]
    fn adding_an_allow_never_denies_and_adding_a_deny_never_allows(
        acls in prop::collection::vec(arb_acl(), 0..12),
        extra in arb_acl(),
        (rt, name, op, who) in arb_request(),
    ) {
        let p = Principal::user(who);
        let before = evaluate(&acls, &req(&p, op, rt, name), false).is_allowed();
        let mut more = acls.clone();
        more.push(extra.clone());
        let after = evaluate(&more, &req(&p, op, rt, name), false).is_allowed();
        match extra.permission {
            Allow => prop_assert!(!before || after),
            Deny => prop_assert!(before || !after),
        }
    }

    /// The cached authorizer agrees with a fresh evaluation after any sequence of changes.
    #[test]
    fn cached_decisions_follow_changes(
        steps in prop::collection::vec(
            (arb_acl(), any::<bool>(), prop::collection::vec(arb_request(), 1..6)), 1..8),
    ) {
        let auth = Authorizer::new(AuthorizerConfig { enabled: true, ..Default::default() });
        let mut current: Vec<AclBinding> = Vec::new();
        for (acl, add, requests) in steps {
            if add {
                if !current.contains(&acl) {
                    current.push(acl.clone());
                }
                auth.add([acl]);
            } else {
                let filter = AclFilter {
                    resource_type: Some(acl.pattern.resource_type),
                    principal: Some(acl.principal.clone()),
                    ..Default::default()
                };
                current.retain(|a| !filter.matches(a));
                auth.remove(&filter);
            }
            for (rt, name, op, who) in requests {
                let p = Principal::user(who);
                // Twice: the second answer comes from the cache.
                for _ in 0..2 {
                    let got = auth.authorize(&p, "10.0.0.1", op, rt, name).is_allowed();
                    prop_assert_eq!(got, model(&current, who, op, rt, name));
                }
            }
        }
    }
}
