//! `weft dev-certs`: a local CA, a server certificate and a client certificate for trying TLS
//! and mutual TLS locally, and the `weft.toml` and client settings that use them.
//!
//! Not for production: the CA's private key is thrown away, so re-running makes a new CA
//! (clients must trust the new `ca.pem`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub(crate) struct DevCertsArgs {
    /// Directory for ca.pem, server.pem, server.key, client.pem and client.key (created if
    /// missing; existing files are replaced)
    #[arg(long, default_value = "weft-certs")]
    dir: PathBuf,
    /// Host names and IP addresses the server certificate is valid for (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    hosts: Vec<String>,
    /// Common name of the client certificate: the principal `User:<name>` under mutual TLS
    #[arg(long, default_value = "weft-client")]
    client_name: String,
}

pub(crate) async fn run(args: DevCertsArgs) -> anyhow::Result<ExitCode> {
    let hosts: Vec<String> = args
        .hosts
        .iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    anyhow::ensure!(!hosts.is_empty(), "--hosts names no host");
    anyhow::ensure!(
        !args.client_name.trim().is_empty(),
        "--client-name is empty"
    );
    // Key generation and file writes: off the reactor.
    let dir = args.dir.clone();
    let client_name = args.client_name.clone();
    let files = tokio::task::spawn_blocking(move || {
        weft_tls::dev::write_dev_certs(&dir, &hosts, &client_name)
            .with_context(|| format!("cannot write certificates into {}", dir.display()))?;
        let dir = std::fs::canonicalize(&dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        anyhow::Ok((weft_tls::dev::DevCertFiles::in_dir(&dir), hosts))
    })
    .await
    .context("certificate generation panicked")??;
    print!("{}", instructions(&files.0, &files.1, &args.client_name));
    Ok(ExitCode::SUCCESS)
}

/// What to put in `weft.toml` and what clients need, with the absolute paths written.
fn instructions(
    files: &weft_tls::dev::DevCertFiles,
    hosts: &[String],
    client_name: &str,
) -> String {
    let p = |path: &Path| path.display().to_string();
    let (ca, cert, key) = (
        p(&files.ca_cert),
        p(&files.server_cert),
        p(&files.server_key),
    );
    let (client_cert, client_key) = (p(&files.client_cert), p(&files.client_key));
    let host = hosts.first().map_or("localhost", String::as_str);
    // IPv6 literals need brackets in URLs and host:port pairs.
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    // A listener binds an IP address; clients are told the certificate's first name.
    let bind = hosts
        .iter()
        .find_map(|h| h.parse::<std::net::IpAddr>().ok())
        .map_or("127.0.0.1".to_owned(), |ip| match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        });
    format!(
        r#"Wrote a development CA and certificates:
  {ca}  CA certificate (what clients trust)
  {cert}  server certificate for {hosts}
  {key}  server private key
  {client_cert}  client certificate, CN={client_name} (principal User:{client_name})
  {client_key}  client private key

weft.toml:

[security]
# a TLS Kafka listener beside the plaintext kafka_listen (SASL_SSL://… for SASL over TLS)
listeners = ["SSL://{bind}:9093"]
# what Metadata tells clients: a name the server certificate covers
advertised_listeners = ["SSL://{host}:9093"]

[security.tls]
cert_file = "{cert}"
key_file = "{key}"
# mutual TLS: clients present a certificate signed by this CA (principal User:<CN>)
# client_ca_file = "{ca}"
# client_auth = "required"   # or "requested"

[security.http]
tls = true   # HTTPS on the HTTP and schema-registry listeners

Certificate and key files are reloaded when they change: replace them (write, then rename)
to rotate without a restart.

Clients:
  librdkafka, kcat:  -X security.protocol=ssl -X ssl.ca.location={ca}
    mutual TLS, add: -X ssl.certificate.location={client_cert} -X ssl.key.location={client_key}
  kafka-python:      security_protocol="SSL", ssl_cafile="{ca}"
    mutual TLS, add: ssl_certfile="{client_cert}", ssl_keyfile="{client_key}"
  curl:              curl --cacert {ca} https://{host}:8080/healthz
    mutual TLS, add: --cert {client_cert} --key {client_key}
  schema registry:   https://{host}:8081 with the same CA (Confluent clients: ssl.ca.location)
"#,
        hosts = hosts.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_name_every_file_and_bracket_ipv6() {
        let files = weft_tls::dev::DevCertFiles::in_dir(Path::new("/c"));
        let text = instructions(&files, &["::1".to_owned()], "alice");
        for needle in [
            "cert_file = \"/c/server.pem\"",
            "key_file = \"/c/server.key\"",
            "ssl.ca.location=/c/ca.pem",
            "--cacert /c/ca.pem https://[::1]:8080/healthz",
            "ssl.certificate.location=/c/client.pem",
            "CN=alice (principal User:alice)",
            "listeners = [\"SSL://[::1]:9093\"]",
            "advertised_listeners = [\"SSL://[::1]:9093\"]",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn the_kafka_listener_binds_an_ip_and_advertises_the_certificate_name() {
        let files = weft_tls::dev::DevCertFiles::in_dir(Path::new("/c"));
        let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let text = instructions(&files, &hosts, "alice");
        assert!(
            text.contains("listeners = [\"SSL://127.0.0.1:9093\"]"),
            "{text}"
        );
        assert!(
            text.contains("advertised_listeners = [\"SSL://localhost:9093\"]"),
            "{text}"
        );
        let only_names = instructions(&files, &["weft.local".to_owned()], "alice");
        assert!(only_names.contains("listeners = [\"SSL://127.0.0.1:9093\"]"));
    }
}
