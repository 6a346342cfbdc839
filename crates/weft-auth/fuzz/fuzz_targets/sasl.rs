//! The SASL exchanges a Kafka connection runs on client bytes: PLAIN, both steps of SCRAM
//! (client-first, then client-final against a real credential) and OAUTHBEARER's client
//! response. The first byte picks the parser; none may panic, and SCRAM must never accept a
//! proof it was not given by the real password (the credential's password is not in the
//! input space the fuzzer can reach by chance, so any success is a finding).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weft_auth::sasl::scram::{ScramCredential, ScramMechanism, ScramServer};
use weft_auth::sasl::{oauthbearer, plain};

fn credential() -> &'static ScramCredential {
    static C: OnceLock<ScramCredential> = OnceLock::new();
    C.get_or_init(|| {
        ScramCredential::derive(ScramMechanism::Sha256, "a long password the fuzzer won't guess", b"salt", 4096)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let _ = plain::parse(rest);
        }
        1 => {
            let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "srv".into());
            let _ = s.client_first(rest);
        }
        2 => {
            // A valid client-first, then the fuzzed client-final.
            let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "srv".into());
            if s.client_first(b"n,,n=user,r=cli").is_ok() && s.server_first(Some(credential())).is_ok() {
                assert!(s.client_final(rest).is_err(), "a forged proof was accepted");
            }
        }
        _ => {
            let _ = oauthbearer::parse_client_response(rest);
        }
    }
});
