use super::*;

/// Runs the RFC example exchange and checks every server message byte for byte.
#[allow(clippy::too_many_arguments)] // one argument per line of the RFC's example
fn rfc_vector(
    mech: ScramMechanism,
    password: &str,
    client_first: &str,
    server_nonce: &str,
    salt_b64: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let salt = B64.decode(salt_b64).expect("salt");
    let cred = ScramCredential::derive(mech, password, &salt, 4096);
    let mut s = ScramServer::with_nonce(mech, server_nonce.into());
    let first = s
        .client_first(client_first.as_bytes())
        .expect("client-first");
    assert_eq!(first.username, "user");
    let sf = s.server_first(Some(&cred)).expect("server-first");
    assert_eq!(std::str::from_utf8(&sf).expect("utf8"), server_first);
    let ok = s
        .client_final(client_final.as_bytes())
        .expect("client-final");
    assert_eq!(
        std::str::from_utf8(&ok.server_final).expect("utf8"),
        server_final
    );
    assert_eq!(ok.principal, Principal::user("user"));
    // The client helper produces the RFC's client-final too.
    let bare = client_first.trim_start_matches("n,,");
    assert_eq!(
        client::final_message(mech, password, bare, server_first).as_deref(),
        Some(client_final)
    );
    // And the credential verifies the password for PLAIN.
    assert!(cred.verify_password(mech, password));
    assert!(!cred.verify_password(mech, "pencil2"));
}

#[test]
fn rfc7677_scram_sha_256_example() {
    rfc_vector(
        ScramMechanism::Sha256,
        "pencil",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

#[test]
fn rfc5802_scram_sha_1_example() {
    rfc_vector(
        ScramMechanism::Sha1,
        "pencil",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
}

/// A full exchange through the client helper, with a chosen password.
fn exchange(
    mech: ScramMechanism,
    stored_for: &str,
    tried: &str,
) -> Result<ScramSuccess, ScramError> {
    let cred = ScramCredential::generate(mech, stored_for, 4096).expect("credential");
    let mut s = ScramServer::new(mech);
    let bare = "n=alice,r=clientnonce123";
    s.client_first(format!("n,,{bare}").as_bytes())?;
    let sf = String::from_utf8(s.server_first(Some(&cred))?).expect("utf8");
    let cf = client::final_message(mech, tried, bare, &sf).expect("client final");
    s.client_final(cf.as_bytes())
}

#[test]
fn sha512_round_trip_and_wrong_password() {
    let ok = exchange(ScramMechanism::Sha512, "secret", "secret").expect("succeeds");
    assert_eq!(ok.principal, Principal::user("alice"));
    let err = exchange(ScramMechanism::Sha512, "secret", "wrong").expect_err("fails");
    assert_eq!(err, ScramError::InvalidProof);
    assert_eq!(err.server_final(), b"e=invalid-proof");
}

#[test]
fn unknown_user_fails_like_a_wrong_password_with_a_stable_salt() {
    let mech = ScramMechanism::Sha256;
    let first = |user: &str| {
        let mut s = ScramServer::with_nonce(mech, "srv".into());
        s.client_first(format!("n,,n={user},r=abc").as_bytes())
            .expect("first");
        let sf = String::from_utf8(s.server_first(None).expect("server-first")).expect("utf8");
        (s, sf)
    };
    let (mut s, sf) = first("ghost");
    assert_eq!(first("ghost").1, sf, "same salt for the same unknown user");
    assert_ne!(first("other").1, sf);
    let cf = client::final_message(mech, "anything", "n=ghost,r=abc", &sf).expect("final");
    assert_eq!(s.client_final(cf.as_bytes()), Err(ScramError::InvalidProof));
}

#[test]
fn client_first_errors() {
    for (msg, err) in [
        (
            "p=tls-unique,,n=u,r=x",
            ScramError::ChannelBindingNotSupported,
        ),
        ("x,,n=u,r=x", ScramError::InvalidEncoding),
        ("n,,m=ext,n=u,r=x", ScramError::ExtensionsNotSupported),
        ("n,,n=u=41,r=x", ScramError::InvalidUsernameEncoding),
        ("n,,n=,r=x", ScramError::InvalidUsernameEncoding),
        ("n,,n=u", ScramError::InvalidEncoding),
        ("n,,n=u,r=", ScramError::InvalidEncoding),
        ("n,,n=u,r=a b", ScramError::InvalidEncoding),
        ("n,a=bob,n=alice,r=x", ScramError::Impersonation),
        ("n,b=bob,n=alice,r=x", ScramError::InvalidEncoding),
        ("n", ScramError::InvalidEncoding),
        ("", ScramError::InvalidEncoding),
    ] {
        let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "s".into());
        assert_eq!(s.client_first(msg.as_bytes()), Err(err), "{msg}");
        // A failed exchange stays failed.
        assert_eq!(s.server_first(None), Err(ScramError::OutOfOrder));
    }
    let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "s".into());
    let ok = s
        .client_first(b"y,a=alice,n=alice,r=x,tokenauth=true")
        .expect("y flag, matching authzid, Kafka's tokenauth extension");
    assert_eq!(ok.extensions, vec!["tokenauth=true"]);
    let mut s = ScramServer::with_nonce(ScramMechanism::Sha256, "s".into());
    let long = vec![b'a'; MAX_MESSAGE_BYTES + 1];
    assert_eq!(s.client_first(&long), Err(ScramError::TooLong));
}

#[test]
fn client_final_errors() {
    let mech = ScramMechanism::Sha256;
    let cred = ScramCredential::derive(mech, "pw", b"salt", 4096);
    let start = |header: &str| {
        let mut s = ScramServer::with_nonce(mech, "SRV".into());
        s.client_first(format!("{header}n=u,r=CLI").as_bytes())
            .expect("first");
        s.server_first(Some(&cred)).expect("server-first");
        s
    };
    let proof = "p=AAAA";
    for (header, msg, err) in [
        // c= must echo the gs2 header: "n,," is "biws"; "y,," is "eSws".
        (
            "n,,",
            format!("c=eSws,r=CLISRV,{proof}"),
            ScramError::ChannelBindingsDontMatch,
        ),
        (
            "y,,",
            format!("c=biws,r=CLISRV,{proof}"),
            ScramError::ChannelBindingsDontMatch,
        ),
        (
            "n,,",
            format!("c=biws,r=CLIXXX,{proof}"),
            ScramError::NonceMismatch,
        ),
        (
            "n,,",
            format!("c=biws,r=CLISRV,{proof}"),
            ScramError::InvalidProof,
        ),
        (
            "n,,",
            "c=biws,r=CLISRV".to_owned(),
            ScramError::InvalidEncoding,
        ),
        (
            "n,,",
            format!("r=CLISRV,{proof}"),
            ScramError::InvalidEncoding,
        ),
        (
            "n,,",
            "c=biws,r=CLISRV,p=!!".to_owned(),
            ScramError::InvalidEncoding,
        ),
        (
            "n,,",
            format!("c=%%,r=CLISRV,{proof}"),
            ScramError::InvalidEncoding,
        ),
    ] {
        let mut s = start(header);
        assert_eq!(s.client_final(msg.as_bytes()), Err(err), "{header} {msg}");
        assert_eq!(s.client_final(msg.as_bytes()), Err(ScramError::OutOfOrder));
    }
    // Out of order: client-final first.
    let mut s = ScramServer::with_nonce(mech, "SRV".into());
    assert_eq!(
        s.client_final(b"c=biws,r=x,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
fn credential_bounds() {
    let m = ScramMechanism::Sha512;
    assert_eq!(
        ScramCredential::generate(m, "pw", 4095),
        Err(CredentialError::Iterations)
    );
    assert_eq!(
        ScramCredential::generate(m, "pw", 16385),
        Err(CredentialError::Iterations)
    );
    assert_eq!(
        ScramCredential::generate(m, "", 4096),
        Err(CredentialError::EmptyPassword)
    );
    let a = ScramCredential::generate(m, "pw", 4096).expect("ok");
    let b = ScramCredential::generate(m, "pw", 4096).expect("ok");
    assert_ne!(a.salt, b.salt, "fresh salt each time");
    assert_eq!(a.stored_key.len(), 64);
    assert!(!format!("{a:?}").contains("stored"));
}

#[test]
fn salted_password_from_the_admin_api_gives_the_same_credential() {
    let m = ScramMechanism::Sha512;
    let salted = m.hi(b"pw", b"salty", 4096);
    let from_api = ScramCredential::from_salted_password(m, &salted, b"salty", 4096).expect("ok");
    assert_eq!(from_api, ScramCredential::derive(m, "pw", b"salty", 4096));
    assert!(from_api.verify_password(m, "pw"));
    assert_eq!(
        ScramCredential::from_salted_password(m, &salted, b"", 4096),
        Err(CredentialError::EmptySalt)
    );
    assert_eq!(
        ScramCredential::from_salted_password(m, &salted, b"s", 100),
        Err(CredentialError::Iterations)
    );
}

/// librdkafka < 2.6.1 repeats the client nonce in client-final (`r=<c><c><s>`) and proves
/// over that message; that exact form is accepted, any other variation is not.
#[test]
fn librdkafka_doubled_client_nonce_is_accepted_and_nothing_looser() {
    let mech = ScramMechanism::Sha512;
    let cred = ScramCredential::derive(mech, "pw", b"salt", 4096);
    let bare = "n=u,r=CLI";
    let final_with = |r: &str, password: &str| {
        let mut s = ScramServer::with_nonce(mech, "SRV".into());
        s.client_first(format!("n,,{bare}").as_bytes())
            .expect("first");
        let sf =
            String::from_utf8(s.server_first(Some(&cred)).expect("server-first")).expect("utf8");
        let salted = mech.hi(password.as_bytes(), b"salt", 4096);
        let client_key = mech.hmac(&salted, &[b"Client Key"]);
        let without_proof = format!("c=biws,r={r}");
        let auth = format!("{bare},{sf},{without_proof}");
        let sig = mech.hmac(&mech.hash(&client_key), &[auth.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(k, s)| k ^ s).collect();
        s.client_final(format!("{without_proof},p={}", B64.encode(proof)).as_bytes())
    };
    assert!(final_with("CLISRV", "pw").is_ok(), "the standard form");
    let ok = final_with("CLICLISRV", "pw").expect("librdkafka's doubled form");
    assert_eq!(ok.principal, Principal::user("u"));
    assert_eq!(
        final_with("CLICLISRV", "bad"),
        Err(ScramError::InvalidProof),
        "the doubled form still needs the right proof"
    );
    for r in [
        "CLICLICLISRV",
        "SRVCLI",
        "CLISRVSRV",
        "CLI",
        "SRV",
        "CLICLI",
    ] {
        assert_eq!(final_with(r, "pw"), Err(ScramError::NonceMismatch), "{r}");
    }
}
