//! ACLs and SCRAM credentials in the state store, on SQLite and on PostgreSQL.

use weft_auth::acl::{AclFilter, Authorizer, AuthorizerConfig, Operation, Permission};
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
use weft_auth::store::{self, AclStore, ScramStore, StoreError};
use weft_auth::{AclBinding, Principal, ResourcePattern, ResourceType};
use weft_store::Backend;
use weft_store::testing::TestDb;

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn allow(pattern: ResourcePattern, who: &str, op: Operation) -> AclBinding {
    AclBinding::new(pattern, who, op, Permission::Allow)
}

#[tokio::test]
async fn acls_persist_filter_and_drive_the_authorizer_across_processes() {
    for backend in BACKENDS {
        eprintln!("--- backend {backend:?}");
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store::migrate(&store).await.expect("migrate");
        // Migrating twice is a no-op.
        store::migrate(&store).await.expect("migrate again");
        let acls = AclStore::new(store.clone());
        assert_eq!(acls.generation().await.expect("generation"), 0);

        let a1 = allow(
            ResourcePattern::literal(ResourceType::Topic, "orders"),
            "User:alice",
            Operation::Read,
        );
        let a2 = allow(
            ResourcePattern::prefixed(ResourceType::Group, "app-"),
            "User:alice",
            Operation::Read,
        );
        let deny = AclBinding::new(
            ResourcePattern::prefixed(ResourceType::Topic, "ord"),
            "User:*",
            Operation::Write,
            Permission::Deny,
        );
        let g = acls
            .add(&[a1.clone(), a2.clone(), deny.clone()])
            .await
            .expect("add");
        assert_eq!(g, 1);
        // Adding an existing ACL is a no-op (the generation still moves).
        acls.add(std::slice::from_ref(&a1))
            .await
            .expect("add again");
        assert_eq!(
            acls.list(&AclFilter::default()).await.expect("list").len(),
            3
        );

        // A bad ACL in a batch stores nothing.
        let bad = allow(
            ResourcePattern::literal(ResourceType::Topic, "x"),
            "alice",
            Operation::Read,
        );
        let good = allow(
            ResourcePattern::literal(ResourceType::Topic, "y"),
            "User:bob",
            Operation::Read,
        );
        let err = acls.add(&[good, bad]).await.expect_err("refused");
        assert!(matches!(err, StoreError::InvalidAcl(_)), "{err}");
        assert_eq!(
            acls.list(&AclFilter::default()).await.expect("list").len(),
            3
        );

        let topics = acls
            .list(&AclFilter {
                resource_type: Some(ResourceType::Topic),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(topics, {
            let mut v = vec![a1.clone(), deny.clone()];
            v.sort();
            v
        });

        // Two "processes": authorizers reloading from the same database.
        let config = AuthorizerConfig {
            enabled: true,
            ..Default::default()
        };
        let p1 = Authorizer::new(config.clone());
        let p2 = Authorizer::new(config);
        assert!(acls.reload_if_changed(&p1).await.expect("reload"));
        assert!(!acls.reload_if_changed(&p1).await.expect("no change"));
        assert!(acls.reload_if_changed(&p2).await.expect("reload"));
        let alice = Principal::user("alice");
        assert!(
            p1.authorize(&alice, "h", Operation::Read, ResourceType::Topic, "orders")
                .is_allowed()
        );
        assert!(
            p1.authorize(
                &alice,
                "h",
                Operation::Describe,
                ResourceType::Group,
                "app-1"
            )
            .is_allowed()
        );
        assert!(
            !p1.authorize(&alice, "h", Operation::Write, ResourceType::Topic, "orders")
                .is_allowed()
        );

        // A change made through one process reaches the other on its next reload.
        let (removed, _) = acls
            .remove(&AclFilter {
                name: Some("orders".into()),
                ..Default::default()
            })
            .await
            .expect("remove");
        assert_eq!(removed, vec![a1.clone()]);
        assert!(
            p2.authorize(&alice, "h", Operation::Read, ResourceType::Topic, "orders")
                .is_allowed()
        );
        assert!(acls.reload_if_changed(&p2).await.expect("reload"));
        assert!(
            !p2.authorize(&alice, "h", Operation::Read, ResourceType::Topic, "orders")
                .is_allowed()
        );

        // State survives reopening the store.
        store.close().await;
        let reopened = db.open().await;
        store::migrate(&reopened).await.expect("migrate");
        let (all, g) = AclStore::new(reopened.clone()).load().await.expect("load");
        assert_eq!(all.len(), 2);
        assert_eq!(
            g, 3,
            "add, add again, remove; the refused batch moved nothing"
        );
        reopened.close().await;
    }
}

#[tokio::test]
async fn scram_credentials_round_trip_and_verify() {
    for backend in BACKENDS {
        eprintln!("--- backend {backend:?}");
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        store::migrate(&store).await.expect("migrate");
        let creds = ScramStore::new(store.clone());
        let m = ScramMechanism::Sha512;
        assert_eq!(creds.get("alice", m).await.expect("get"), None);
        let c = ScramCredential::generate(m, "s3cret", 4096).expect("credential");
        creds.upsert("alice", m, &c).await.expect("upsert");
        let back = creds.get("alice", m).await.expect("get").expect("stored");
        assert_eq!(back, c);
        assert!(back.verify_password(m, "s3cret"));
        assert!(!back.verify_password(m, "wrong"));
        // Other mechanism: separate credential.
        assert_eq!(
            creds
                .get("alice", ScramMechanism::Sha256)
                .await
                .expect("get"),
            None
        );
        // Replacing changes the password.
        let c2 = ScramCredential::generate(m, "new", 8192).expect("credential");
        creds.upsert("alice", m, &c2).await.expect("upsert");
        let back = creds.get("alice", m).await.expect("get").expect("stored");
        assert!(back.verify_password(m, "new") && !back.verify_password(m, "s3cret"));
        assert_eq!(
            creds.describe().await.expect("describe"),
            vec![("alice".to_owned(), "SCRAM-SHA-512".to_owned(), 8192)]
        );
        // No column holds the password.
        let row: (String, String, String) = weft_store::sqlx::query_as(
            "SELECT salt, stored_key, server_key FROM auth_scram_credentials",
        )
        .fetch_one(store.pool())
        .await
        .expect("row");
        assert!(![row.0, row.1, row.2].iter().any(|v| v.contains("new")));
        assert!(creds.delete("alice", m).await.expect("delete"));
        assert!(!creds.delete("alice", m).await.expect("delete again"));
        assert!(creds.upsert("", m, &c).await.is_err());
        store.close().await;
    }
}
