//! The fuzz target's entry points on random bytes, on stable in every `cargo test`: no
//! parser panics, and no client-final is accepted without the password.

use proptest::prelude::*;

use super::scram::{ScramCredential, ScramMechanism, ScramServer};
use super::{oauthbearer, plain};

/// Bytes that look like SASL messages often enough to get past the first checks.
fn saslish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "[nyp]?,(a=[a-z=23CD]{0,4})?,(n=[a-z=,23CD]{0,6})?,?(r=[!-~]{0,8})?(,[a-z]{1,3}=[a-z]{0,3}){0,2}"
            .prop_map(String::into_bytes),
        "(c=[A-Za-z0-9+/=]{0,8})?,?(r=[a-z]{0,8})?,?(p=[A-Za-z0-9+/=]{0,44})?"
            .prop_map(String::into_bytes),
        "[ny],(a=[a-z]{0,3})?,\x01((auth|k)=[ -~]{0,12}\x01){0,3}\x01?".prop_map(String::into_bytes),
        "[a-z]{0,3}\x00[a-z]{0,3}\x00[a-z\x00]{0,3}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(data in saslish()) {
        let _ = plain::parse(&data);
        let _ = oauthbearer::parse_client_response(&data);
        let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "srv".into());
        if s.client_first(&data).is_ok() {
            let _ = s.server_first(None);
        }
    }

    #[test]
    fn no_client_final_passes_without_the_password(data in saslish()) {
        // Low iteration count: what is tested is the message handling, not the KDF.
        let cred = ScramCredential::derive(ScramMechanism::Sha256, "pw", b"salt", 2);
        let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "srv".into());
        s.client_first(b"n,,n=user,r=cli").expect("valid client-first");
        s.server_first(Some(&cred)).expect("in order");
        prop_assert!(s.client_final(&data).is_err());
    }
}
