//! Whole SASL exchanges over the state store and the JWT validator (what the Kafka listener
//! will drive), and HTTP Basic against the same users. SQLite and PostgreSQL.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use weft_auth::http::{HttpAuthenticator, StoreAuthenticator};
use weft_auth::jwt::{JwtConfig, JwtValidator, KeySource, StaticKey};
use weft_auth::sasl::Mechanism;
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism, client};
use weft_auth::sasl::session::{SaslConfig, SaslSession, SaslStep};
use weft_auth::store::{self, ScramStore};
use weft_auth::{Principal, SystemClock};
use weft_store::Backend;
use weft_store::testing::TestDb;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");

fn now() -> u64 {
    use weft_auth::Clock as _;
    SystemClock.now_secs()
}

fn token(exp: u64) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k".into());
    let claims = json!({"sub": "svc", "exp": exp});
    jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key"),
    )
    .expect("sign")
}

fn validator() -> Arc<JwtValidator> {
    let key = StaticKey::from_pem(Some("k".into()), Algorithm::RS256, RSA_PUBLIC).expect("key");
    Arc::new(JwtValidator::new(
        JwtConfig {
            leeway_secs: 0,
            ..JwtConfig::default()
        },
        KeySource::Static(vec![key]),
        Arc::new(SystemClock),
    ))
}

fn failed(step: &SaslStep) -> &str {
    match step {
        SaslStep::Failure { message } => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_scram_and_oauthbearer_exchanges() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        eprintln!("--- backend {backend:?}");
        let db = TestDb::new(backend).await;
        let st = db.open().await;
        store::migrate(&st).await.expect("migrate");
        let creds = ScramStore::new(st.clone());
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let c = ScramCredential::generate(mech, "alice-pw", 4096).expect("credential");
            creds.upsert("alice", mech, &c).await.expect("upsert");
        }
        let config = Arc::new(SaslConfig {
            mechanisms: Mechanism::ALL.to_vec(),
            credentials: Some(creds.clone()),
            jwt: Some(validator()),
            internal: None,
        });

        // PLAIN: right password, wrong password, unknown user (same message).
        let mut s = SaslSession::start(config.clone(), "PLAIN").expect("offered");
        assert_eq!(
            s.step(b"\0alice\0alice-pw").await,
            SaslStep::Success {
                principal: Principal::user("alice"),
                response: Vec::new(),
                expires_at: None
            }
        );
        let mut s = SaslSession::start(config.clone(), "PLAIN").expect("offered");
        let wrong = s.step(b"\0alice\0nope").await;
        let mut s = SaslSession::start(config.clone(), "PLAIN").expect("offered");
        let unknown = s.step(b"\0mallory\0nope").await;
        assert_eq!(failed(&wrong), failed(&unknown));
        // A finished exchange accepts nothing more.
        assert!(failed(&s.step(b"\0alice\0alice-pw").await).contains("already finished"));

        // SCRAM, both hashes, right and wrong password.
        for (name, mech) in [
            ("SCRAM-SHA-256", ScramMechanism::Sha256),
            ("SCRAM-SHA-512", ScramMechanism::Sha512),
        ] {
            for (password, ok) in [("alice-pw", true), ("wrong", false)] {
                let mut s = SaslSession::start(config.clone(), name).expect("offered");
                let bare = "n=alice,r=fuzzynonce";
                let SaslStep::Continue(server_first) =
                    s.step(format!("n,,{bare}").as_bytes()).await
                else {
                    panic!("{name}: expected server-first");
                };
                let server_first = String::from_utf8(server_first).expect("utf8");
                let fin =
                    client::final_message(mech, password, bare, &server_first).expect("final");
                let step = s.step(fin.as_bytes()).await;
                if ok {
                    let SaslStep::Success {
                        principal,
                        response,
                        ..
                    } = step
                    else {
                        panic!("{name}: {step:?}");
                    };
                    assert_eq!(principal, Principal::user("alice"));
                    assert!(response.starts_with(b"v="));
                } else {
                    assert!(failed(&step).contains("invalid user name or password"));
                }
            }
        }

        // OAUTHBEARER: a valid token; an expired one gets RFC 7628's error JSON, then the
        // client's 0x01 ends the exchange in failure.
        let exp = now() + 600;
        let mut s = SaslSession::start(config.clone(), "OAUTHBEARER").expect("offered");
        let msg = format!("n,,\x01auth=Bearer {}\x01\x01", token(exp));
        assert_eq!(
            s.step(msg.as_bytes()).await,
            SaslStep::Success {
                principal: Principal::user("svc"),
                response: Vec::new(),
                expires_at: Some(exp)
            }
        );
        let mut s = SaslSession::start(config.clone(), "OAUTHBEARER").expect("offered");
        let msg = format!("n,,\x01auth=Bearer {}\x01\x01", token(now() - 600));
        assert_eq!(
            s.step(msg.as_bytes()).await,
            SaslStep::Continue(br#"{"status":"invalid_token"}"#.to_vec())
        );
        assert!(failed(&s.step(b"\x01").await).contains("token refused"));
        // authzid must match the token's principal.
        let mut s = SaslSession::start(config.clone(), "OAUTHBEARER").expect("offered");
        let msg = format!("n,a=admin,\x01auth=Bearer {}\x01\x01", token(exp));
        assert!(failed(&s.step(msg.as_bytes()).await).contains("authorization id"));

        // Mechanisms: unknown, not enabled, enabled without its backend.
        assert!(SaslSession::start(config.clone(), "GSSAPI").is_err());
        let plain_only = Arc::new(SaslConfig {
            mechanisms: vec![Mechanism::Plain, Mechanism::OAuthBearer],
            credentials: Some(creds.clone()),
            jwt: None,
            internal: None,
        });
        assert_eq!(plain_only.offered(), vec![Mechanism::Plain]);
        assert!(SaslSession::start(plain_only.clone(), "SCRAM-SHA-512").is_err());
        assert!(SaslSession::start(plain_only, "OAUTHBEARER").is_err());

        // weft serve's internal listener: PLAIN with the process's credential only; the
        // store's users are refused there even with their right password.
        let internal = weft_auth::InternalCredential::from_secret("s3cret-internal");
        let internal_only = Arc::new(SaslConfig {
            mechanisms: vec![Mechanism::Plain],
            credentials: None,
            jwt: None,
            internal: Some(internal),
        });
        assert_eq!(internal_only.offered(), vec![Mechanism::Plain]);
        assert!(SaslSession::start(internal_only.clone(), "SCRAM-SHA-512").is_err());
        for (msg, ok) in [
            (&b"\0weft-internal\0s3cret-internal"[..], true),
            (b"\0weft-internal\0wrong", false),
            (b"\0alice\0alice-pw", false),
        ] {
            let mut s = SaslSession::start(internal_only.clone(), "PLAIN").expect("offered");
            match s.step(msg).await {
                SaslStep::Success { principal, .. } => {
                    assert!(ok, "{msg:?} accepted");
                    assert_eq!(principal.to_string(), "User:weft-internal");
                }
                other => assert!(!ok, "{msg:?} refused: {other:?}"),
            }
        }
        // Elsewhere the reserved user never authenticates, even with stored credentials.
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let c = ScramCredential::generate(mech, "pw", 4096).expect("credential");
            creds
                .upsert("weft-internal", mech, &c)
                .await
                .expect("upsert");
        }
        let mut s = SaslSession::start(config.clone(), "PLAIN").expect("offered");
        assert!(failed(&s.step(b"\0weft-internal\0pw").await).contains("invalid user"));
        let mut s = SaslSession::start(config.clone(), "SCRAM-SHA-256").expect("offered");
        assert!(failed(&s.step(b"n,,n=weft-internal,r=abcdefgh").await).contains("invalid user"));

        // HTTP Basic against the same users.
        let http = StoreAuthenticator {
            jwt: Some(validator()),
            credentials: Some(creds.clone()),
        };
        assert!(http.basic("weft-internal", "pw").await.is_err(), "reserved");
        assert_eq!(
            http.basic("alice", "alice-pw").await,
            Ok(Principal::user("alice"))
        );
        assert!(http.basic("alice", "nope").await.is_err());
        assert!(http.basic("mallory", "alice-pw").await.is_err());
        assert_eq!(http.bearer(&token(exp)).await, Ok(Principal::user("svc")));
        let refused = http.bearer(&token(now() - 600)).await.expect_err("expired");
        assert_eq!(refused.description, "the token expired");
        st.close().await;
    }
}
