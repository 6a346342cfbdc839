//! `weft user add|list|remove`: SCRAM users through Kafka's admin APIs
//! (AlterUserScramCredentials, DescribeUserScramCredentials v0, KIP-554), against `weft
//! serve` or any Kafka broker.
//!
//! As KIP-554 has it, the password never leaves this process: the command draws a random
//! salt, computes `SaltedPassword = Hi(password, salt, iterations)` (PBKDF2 with the
//! mechanism's HMAC, RFC 5802) and sends salt, iterations and salted password; the broker
//! keeps only the derived StoredKey and ServerKey.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use sha2::{Sha256, Sha512};

use super::ClientArgs;
use super::wire::{Wire, describe_code};

#[derive(Debug, clap::Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mechanism {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    /// The mechanism code of the SCRAM credential APIs.
    fn code(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    fn name(code: i8) -> String {
        match code {
            1 => "SCRAM-SHA-256".into(),
            2 => "SCRAM-SHA-512".into(),
            c => format!("mechanism-{c}"),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with this mechanism's HMAC, one block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => hi::<Hmac<Sha256>>(password, salt, iterations),
            Mechanism::ScramSha512 => hi::<Hmac<Sha512>>(password, salt, iterations),
        }
    }
}

fn hi<M: Mac + hmac::digest::KeyInit>(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mac = |data: &[&[u8]]| {
        // HMAC takes keys of any length: this cannot fail.
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(password)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for d in data {
            m.update(d);
        }
        m.finalize().into_bytes().to_vec()
    };
    let mut u = mac(&[salt, &1u32.to_be_bytes()]);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = mac(&[&u]);
        for (o, x) in out.iter_mut().zip(&u) {
            *o ^= x;
        }
    }
    out
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a user or change its password (SCRAM credentials; also used by SASL PLAIN)
    Add {
        name: String,
        /// The password (prefer --password-stdin: command lines are visible to other users)
        #[arg(
            long,
            env = "WEFT_USER_PASSWORD",
            hide_env_values = true,
            conflicts_with = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
        /// Mechanism(s) to store a credential for (repeatable; default both)
        #[arg(long = "mechanism")]
        mechanisms: Vec<Mechanism>,
        /// PBKDF2 iterations (Kafka accepts 4096–16384)
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// List users and their mechanisms (all, or the named ones)
    List { names: Vec<String> },
    /// Delete a user's credentials (all mechanisms unless --mechanism)
    Remove {
        name: String,
        #[arg(long = "mechanism")]
        mechanisms: Vec<Mechanism>,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

const BOTH: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

pub(crate) async fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let mut wire = Wire::connect(&args.client).await?;
    match args.action {
        Action::Add {
            name,
            password,
            password_stdin,
            mechanisms,
            iterations,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut all = String::new();
                    std::io::stdin()
                        .read_to_string(&mut all)
                        .context("reading the password from stdin")?;
                    all.lines().next().unwrap_or("").to_owned()
                }
                (None, false) => {
                    bail!("give the password with --password-stdin or WEFT_USER_PASSWORD")
                }
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            let mechanisms = if mechanisms.is_empty() {
                BOTH.to_vec()
            } else {
                mechanisms
            };
            let upsertions = mechanisms
                .iter()
                .map(|m| {
                    let mut salt = vec![0u8; 32];
                    weft_auth::random_bytes(&mut salt);
                    let salted = m.salted_password(password.as_bytes(), &salt, iterations);
                    ScramCredentialUpsertion::default()
                        .with_name(s(&name))
                        .with_mechanism(m.code())
                        .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
                        .with_salt(salt.into())
                        .with_salted_password(salted.into())
                })
                .collect();
            let req = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
            let resp = wire.call(&req, 0).await?;
            for r in &resp.results {
                if r.error_code != 0 {
                    let m = r.error_message.as_deref().unwrap_or("");
                    bail!(
                        "cannot store user {}: {} {m}",
                        r.user,
                        describe_code(r.error_code)
                    );
                }
            }
            let names: Vec<String> = mechanisms
                .iter()
                .map(|m| Mechanism::name(m.code()))
                .collect();
            println!(
                "stored user {name} ({}, {iterations} iterations)",
                names.join(", ")
            );
        }
        Action::List { names } => {
            let users = (!names.is_empty()).then(|| {
                names
                    .iter()
                    .map(|n| UserName::default().with_name(s(n)))
                    .collect()
            });
            let req = DescribeUserScramCredentialsRequest::default().with_users(users);
            let resp = wire.call(&req, 0).await?;
            if resp.error_code != 0 {
                let m = resp.error_message.as_deref().unwrap_or("");
                bail!("cannot list users: {} {m}", describe_code(resp.error_code));
            }
            let mut failed = false;
            for r in &resp.results {
                if r.error_code != 0 {
                    failed = true;
                    let m = r.error_message.as_deref().unwrap_or("");
                    eprintln!("{}: {} {m}", r.user, describe_code(r.error_code));
                    continue;
                }
                let creds: Vec<String> = r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        format!(
                            "{} ({} iterations)",
                            Mechanism::name(c.mechanism),
                            c.iterations
                        )
                    })
                    .collect();
                println!("{} {}", r.user, creds.join(", "));
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Action::Remove { name, mechanisms } => {
            let mechanisms = if mechanisms.is_empty() {
                // Only the mechanisms the user has: deleting a missing one is an error.
                let req = DescribeUserScramCredentialsRequest::default()
                    .with_users(Some(vec![UserName::default().with_name(s(&name))]));
                let resp = wire.call(&req, 0).await?;
                let r = resp.results.first();
                if resp.error_code != 0 || r.is_none_or(|r| r.error_code != 0) {
                    let code = r
                        .map_or(resp.error_code, |r| r.error_code)
                        .max(resp.error_code);
                    bail!("cannot remove user {name}: {}", describe_code(code));
                }
                r.map(|r| r.credential_infos.iter().map(|c| c.mechanism).collect())
                    .unwrap_or_default()
            } else {
                mechanisms.iter().map(|m| m.code()).collect::<Vec<i8>>()
            };
            let deletions = mechanisms
                .iter()
                .map(|m| {
                    ScramCredentialDeletion::default()
                        .with_name(s(&name))
                        .with_mechanism(*m)
                })
                .collect();
            let req = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
            let resp = wire.call(&req, 0).await?;
            for r in &resp.results {
                if r.error_code != 0 {
                    let m = r.error_message.as_deref().unwrap_or("");
                    bail!(
                        "cannot remove user {}: {} {m}",
                        r.user,
                        describe_code(r.error_code)
                    );
                }
            }
            println!("removed user {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: the salted password, checked through the
    /// ClientKey/StoredKey weft-auth derives from it and from the password itself.
    #[test]
    fn salted_password_matches_weft_auth_derivation() {
        use weft_auth::sasl::scram::{ScramCredential, ScramMechanism};
        let salt = b"W22ZaJ0SNY7soEsUEjb6gQ==";
        for (ours, theirs) in [
            (Mechanism::ScramSha256, ScramMechanism::Sha256),
            (Mechanism::ScramSha512, ScramMechanism::Sha512),
        ] {
            let salted = ours.salted_password(b"pencil", salt, 4096);
            let from_salted =
                ScramCredential::from_salted_password(theirs, &salted, salt, 4096).expect("valid");
            let derived = ScramCredential::derive(theirs, "pencil", salt, 4096);
            assert_eq!(from_salted, derived);
            assert!(from_salted.verify_password(theirs, "pencil"));
            assert!(!from_salted.verify_password(theirs, "pencil2"));
        }
    }
}
