//! A tiny OpenID Connect issuer for tests: a std HTTP server on `127.0.0.1:0` serving
//! `/.well-known/openid-configuration`, a JWKS (`/jwks`, fetches counted) and an OAuth2
//! client-credentials token endpoint (`/token`, client id/secret as HTTP Basic — librdkafka's
//! way — or in the form body) that issues RS256 or ES256 JWTs. Tokens can also be minted
//! directly, including bad ones (expired, not yet valid, wrong issuer/audience, unknown `kid`,
//! forged signature, `alg: none`, HS256 signed with the RSA public key).
//!
//! Weft validates what this issues on its production path (JWKS fetched over HTTP). Keys are
//! the test-only PEMs in crates/weft-auth/tests/keys (never used outside tests).
//!
//! ```ignore
//! let issuer = oidc_support::Issuer::start();
//! issuer.add_client("svc-orders", "secret", &["registry-read"]);
//! let token = issuer.token("svc-orders", &["registry-read"]);
//! let toml = issuer.jwt_toml(); // the [security.jwt] table for weft.toml
//! ```

// Each test binary uses a different subset of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../weft-auth/tests/keys");

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap_or_else(|e| panic!("test key {name}: {e}"))
}

/// Default audience of issued tokens (and of [`Issuer::jwt_toml`]).
pub(crate) const AUDIENCE: &str = "weft";

/// Signing algorithm of an issued token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Es256,
}

/// Everything about one token; [`Issuer::spec`] gives a valid default.
#[derive(Debug, Clone)]
pub(crate) struct TokenSpec {
    pub(crate) sub: String,
    pub(crate) alg: Alg,
    /// `None`: the key's own kid; `Some("")`: no `kid` header.
    pub(crate) kid: Option<String>,
    pub(crate) iss: String,
    pub(crate) aud: Value,
    pub(crate) iat: u64,
    pub(crate) nbf: Option<u64>,
    pub(crate) exp: u64,
    pub(crate) scopes: Vec<String>,
    /// Extra claims merged over the standard ones.
    pub(crate) extra: Map<String, Value>,
}

/// A registered OAuth2 client (client credentials grant).
#[derive(Debug, Clone)]
struct Client {
    secret: String,
    scopes: Vec<String>,
}

struct State {
    url: String,
    audience: Mutex<Value>,
    lifetime_secs: AtomicU64,
    clients: Mutex<HashMap<String, Client>>,
    /// Serve (and sign RS256 with) the second RSA key, kid `rsa-2`.
    rotated: std::sync::atomic::AtomicBool,
    jwks_fetches: AtomicU64,
    token_requests: AtomicU64,
    discovery_requests: AtomicU64,
}

/// A running issuer; the server thread lives as long as the test process.
pub(crate) struct Issuer {
    addr: SocketAddr,
    state: Arc<State>,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl Issuer {
    /// Binds `127.0.0.1:0` and serves on a thread.
    pub(crate) fn start() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind issuer");
        let addr = listener.local_addr().expect("issuer addr");
        let state = Arc::new(State {
            url: format!("http://{addr}"),
            audience: Mutex::new(json!(AUDIENCE)),
            lifetime_secs: AtomicU64::new(300),
            clients: Mutex::new(HashMap::new()),
            rotated: std::sync::atomic::AtomicBool::new(false),
            jwks_fetches: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            discovery_requests: AtomicU64::new(0),
        });
        let s = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || serve(conn, &s));
            }
        });
        Issuer { addr, state }
    }

    /// The issuer identifier (`iss`), `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        self.state.url.clone()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.url)
    }

    pub(crate) fn token_url(&self) -> String {
        format!("{}/token", self.state.url)
    }

    pub(crate) fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.state.url)
    }

    /// How many times the JWKS was fetched.
    pub(crate) fn jwks_fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many token requests arrived (granted or not).
    pub(crate) fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// The `aud` of tokens from the token endpoint (default [`AUDIENCE`]).
    pub(crate) fn set_audience(&self, aud: Value) {
        *self.state.audience.lock().expect("lock") = aud;
    }

    /// Lifetime of tokens from the token endpoint and [`Issuer::token`] (default 300 s).
    pub(crate) fn set_lifetime(&self, secs: u64) {
        self.state.lifetime_secs.store(secs, Ordering::SeqCst);
    }

    /// Registers a client for the client-credentials grant; its tokens carry `sub =
    /// client_id` and the granted scopes (those requested, which must be a subset of
    /// `scopes`; all of them when none are requested).
    pub(crate) fn add_client(&self, client_id: &str, secret: &str, scopes: &[&str]) {
        self.state.clients.lock().expect("lock").insert(
            client_id.to_owned(),
            Client {
                secret: secret.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
    }

    /// Switches the JWKS to the rotated set (kid `rsa-2` only) and RS256 signing to that key.
    pub(crate) fn rotate_keys(&self) {
        self.state.rotated.store(true, Ordering::SeqCst);
    }

    /// The `[security.jwt]` table validating this issuer's tokens.
    pub(crate) fn jwt_toml(&self) -> String {
        format!(
            "[security.jwt]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\njwks_url = \"{}\"\n",
            self.url(),
            self.jwks_url()
        )
    }

    /// A valid RS256 token spec for `sub` with `scopes`.
    pub(crate) fn spec(&self, sub: &str, scopes: &[&str]) -> TokenSpec {
        spec(&self.state, sub, scopes)
    }

    /// Signs `spec`.
    pub(crate) fn mint(&self, spec: &TokenSpec) -> String {
        mint(&self.state, spec)
    }

    /// A valid RS256 token for `sub` with `scopes`.
    pub(crate) fn token(&self, sub: &str, scopes: &[&str]) -> String {
        self.mint(&self.spec(sub, scopes))
    }

    /// A valid ES256 token for `sub` with `scopes`.
    pub(crate) fn token_es256(&self, sub: &str, scopes: &[&str]) -> String {
        let mut spec = self.spec(sub, scopes);
        spec.alg = Alg::Es256;
        self.mint(&spec)
    }

    /// Expired an hour ago (beyond any reasonable clock skew).
    pub(crate) fn expired(&self, sub: &str, scopes: &[&str]) -> String {
        let mut spec = self.spec(sub, scopes);
        spec.iat = now() - 7200;
        spec.nbf = Some(spec.iat);
        spec.exp = now() - 3600;
        self.mint(&spec)
    }

    /// Valid from an hour from now.
    pub(crate) fn not_yet_valid(&self, sub: &str, scopes: &[&str]) -> String {
        let mut spec = self.spec(sub, scopes);
        spec.nbf = Some(now() + 3600);
        spec.exp = now() + 7200;
        self.mint(&spec)
    }

    pub(crate) fn wrong_issuer(&self, sub: &str, scopes: &[&str]) -> String {
        let mut spec = self.spec(sub, scopes);
        spec.iss = "https://evil.example".into();
        self.mint(&spec)
    }

    pub(crate) fn wrong_audience(&self, sub: &str, scopes: &[&str]) -> String {
        let mut spec = self.spec(sub, scopes);
        spec.aud = json!("some-other-service");
        self.mint(&spec)
    }

    /// Signed with the real key but naming a `kid` the JWKS does not have.
    pub(crate) fn unknown_kid(&self, sub: &str, scopes: &[&str]) -> String {
        let mut spec = self.spec(sub, scopes);
        spec.kid = Some(format!("no-such-key-{}", now()));
        self.mint(&spec)
    }

    /// Claims `kid: rsa-1` but is signed with a different RSA private key.
    pub(crate) fn forged(&self, sub: &str, scopes: &[&str]) -> String {
        let spec = self.spec(sub, scopes);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let key = EncodingKey::from_rsa_pem(&key_file("rsa2_private.pem")).expect("rsa2 key");
        jsonwebtoken::encode(&header, &claims(&spec), &key).expect("sign token")
    }

    /// `alg: none`, empty signature.
    pub(crate) fn alg_none(&self, sub: &str, scopes: &[&str]) -> String {
        let spec = self.spec(sub, scopes);
        let header = json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims(&spec)).to_string())
        )
    }

    /// HS256 "signed" with the RSA public key (PEM bytes) as the HMAC secret, `kid: rsa-1`:
    /// the classic algorithm-confusion attack.
    pub(crate) fn hs256_with_public_key(&self, sub: &str, scopes: &[&str]) -> String {
        let spec = self.spec(sub, scopes);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let key = EncodingKey::from_secret(&key_file("rsa_public.pem"));
        jsonwebtoken::encode(&header, &claims(&spec), &key).expect("sign token")
    }
}

/// A valid RS256 token spec for `sub` with `scopes`.
fn spec(state: &State, sub: &str, scopes: &[&str]) -> TokenSpec {
    let now = now();
    TokenSpec {
        sub: sub.to_owned(),
        alg: Alg::Rs256,
        kid: None,
        iss: state.url.clone(),
        aud: state.audience.lock().expect("lock").clone(),
        iat: now,
        nbf: Some(now),
        exp: now + state.lifetime_secs.load(Ordering::SeqCst),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        extra: Map::new(),
    }
}

/// Signs `spec`.
fn mint(state: &State, spec: &TokenSpec) -> String {
    let rotated = state.rotated.load(Ordering::SeqCst);
    let (alg, own_kid, key) = match spec.alg {
        Alg::Rs256 if rotated => (
            Algorithm::RS256,
            "rsa-2",
            EncodingKey::from_rsa_pem(&key_file("rsa2_private.pem")).expect("rsa2 key"),
        ),
        Alg::Rs256 => (
            Algorithm::RS256,
            "rsa-1",
            EncodingKey::from_rsa_pem(&key_file("rsa_private.pem")).expect("rsa key"),
        ),
        Alg::Es256 => (
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_pem(&key_file("ec_private.pem")).expect("ec key"),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = match spec.kid.as_deref() {
        None => Some(own_kid.to_owned()),
        Some("") => None,
        Some(k) => Some(k.to_owned()),
    };
    jsonwebtoken::encode(&header, &claims(spec), &key).expect("sign token")
}

fn claims(spec: &TokenSpec) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("iss".into(), json!(spec.iss));
    c.insert("sub".into(), json!(spec.sub));
    c.insert("aud".into(), spec.aud.clone());
    c.insert("iat".into(), json!(spec.iat));
    if let Some(nbf) = spec.nbf {
        c.insert("nbf".into(), json!(nbf));
    }
    c.insert("exp".into(), json!(spec.exp));
    if !spec.scopes.is_empty() {
        c.insert("scope".into(), json!(spec.scopes.join(" ")));
    }
    for (k, v) in &spec.extra {
        c.insert(k.clone(), v.clone());
    }
    c
}

/// One request per connection (`Connection: close`).
fn serve(conn: TcpStream, state: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => {
            state.discovery_requests.fetch_add(1, Ordering::SeqCst);
            (
                200,
                json!({
                    "issuer": state.url,
                    "jwks_uri": format!("{}/jwks", state.url),
                    "token_endpoint": format!("{}/token", state.url),
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported":
                        ["client_secret_basic", "client_secret_post"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    "response_types_supported": ["token"],
                    "subject_types_supported": ["public"],
                }),
            )
        }
        ("GET", "/jwks") => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let file = if state.rotated.load(Ordering::SeqCst) {
                "jwks_rotated.json"
            } else {
                "jwks.json"
            };
            let jwks: Value = serde_json::from_slice(&key_file(file)).expect("test jwks is json");
            (200, jwks)
        }
        ("POST", "/token") => {
            state.token_requests.fetch_add(1, Ordering::SeqCst);
            token_response(state, &headers, &body)
        }
        _ => (404, json!({"error": "not_found"})),
    };
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

/// RFC 6749 section 4.4 (client credentials) with section 5.2 errors.
fn token_response(state: &State, headers: &HashMap<String, String>, body: &[u8]) -> (u16, Value) {
    let form: HashMap<String, String> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (400, json!({"error": "unsupported_grant_type"}));
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (form_decode(u), form_decode(p)))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(i), Some(s)) => (i.clone(), s.clone()),
            _ => return (401, json!({"error": "invalid_client"})),
        },
    };
    let client = state.clients.lock().expect("lock").get(&id).cloned();
    let Some(client) = client.filter(|c| c.secret == secret) else {
        return (401, json!({"error": "invalid_client"}));
    };
    let requested: Vec<String> = form
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if requested.iter().any(|s| !client.scopes.contains(s)) {
        return (400, json!({"error": "invalid_scope"}));
    }
    let scopes = if requested.is_empty() {
        client.scopes.clone()
    } else {
        requested
    };
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let token = mint(state, &spec(state, &id, &scope_refs));
    (
        200,
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": state.lifetime_secs.load(Ordering::SeqCst),
            "scope": scopes.join(" "),
        }),
    )
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
