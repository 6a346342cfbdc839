//! Project automation: `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! `cargo xtask test [ARGS…]` is THE test command. It installs the test prerequisites that are
//! missing — and only those — then runs every test of the workspace. Extra arguments go to
//! `cargo test` (e.g. `cargo xtask test -p weft -- --nocapture`). Its exit code is the tests'.
//!
//! To add a prerequisite, append it to one of the lists below.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Debian packages, each with the command (or absolute file path) whose presence means it is
/// installed.
const APT_PACKAGES: &[AptPackage] = &[
    AptPackage {
        package: "kcat",
        command: "kcat",
    },
    // TLS tests (crates/weft/tests/security_tls.rs): curl as an HTTPS client, openssl to
    // check `weft dev-certs` output.
    AptPackage {
        package: "curl",
        command: "curl",
    },
    AptPackage {
        package: "openssl",
        command: "openssl",
    },
    // librdkafka as the security tests build it (rdkafka features `ssl`, `curl`: SCRAM,
    // SASL_SSL, OAUTHBEARER OIDC). A path: the header whose presence means it is installed.
    AptPackage {
        package: "libssl-dev",
        command: "/usr/include/openssl/ssl.h",
    },
    AptPackage {
        package: "libcurl4-openssl-dev",
        command: "curl-config",
    },
    // Headless browser for the /ui dashboard test (crates/weft/tests/observe_serve.rs),
    // driven over the DevTools protocol by a Node script (no npm package, no download).
    AptPackage {
        package: "chromium",
        command: "chromium",
    },
];

/// Python packages, each with the module whose import means it is installed. Installed into
/// whatever `python3` is first on PATH, the one tests run.
const PIP_PACKAGES: &[PipPackage] = &[
    // crates/weft/tests/observe_serve.rs: the Prometheus client's OpenMetrics parser reads
    // /metrics with exemplars.
    PipPackage {
        package: "prometheus-client",
        module: "prometheus_client",
    },
    PipPackage {
        package: "kafka-python",
        module: "kafka",
    },
    // aiokafka (crates/weft-broker/tests/aiokafka.rs): an asyncio client with its own
    // protocol implementation, a fourth independent client besides librdkafka, kafka-python
    // and kafkajs.
    PipPackage {
        package: "aiokafka",
        module: "aiokafka",
    },
    // The gateway tests (crates/weft/tests/gateway_*.rs): webhook signatures verified by the
    // Standard Webhooks reference library, a WebSocket client, an OpenAPI 3.1 validator.
    PipPackage {
        package: "standardwebhooks",
        module: "standardwebhooks",
    },
    PipPackage {
        package: "websockets",
        module: "websockets",
    },
    PipPackage {
        package: "openapi-spec-validator",
        module: "openapi_spec_validator",
    },
    // Property-based API testing against the gateway's /openapi.json
    // (crates/weft/tests/gateway_schemathesis.rs).
    PipPackage {
        package: "schemathesis",
        module: "schemathesis",
    },
    // kafka-python's codecs: without them it cannot produce or read snappy, lz4, zstd.
    PipPackage {
        package: "python-snappy",
        module: "snappy",
    },
    PipPackage {
        package: "lz4",
        module: "lz4",
    },
    PipPackage {
        package: "zstandard",
        module: "zstandard",
    },
    // Confluent's client with its schema-registry extras (fastavro, jsonschema, protobuf,
    // httpx2, authlib, attrs, cachetools), for tests/registry_confluent.rs. Importing the
    // three serializer modules is what proves every extra is there.
    PipPackage {
        package: "confluent-kafka[avro,json,protobuf,schemaregistry]",
        module: "confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.protobuf, \
                 confluent_kafka.schema_registry.json_schema",
    },
];

/// npm packages (`name` or `name@version`), installed under `<repo>/target/npm`; tests find
/// them through `NODE_PATH`, which `cargo xtask test` sets. `lz4js` and `zstd-codec` are
/// pure JavaScript/WebAssembly (no native build): the kafkajs compat script wraps them as
/// its LZ4 and ZSTD codecs, because `@kafkajs/zstd` does not build on Node 20.
const NPM_PACKAGES: &[&str] = &[
    "kafkajs@2",
    "kafkajs-snappy@1",
    "lz4js@0.2",
    "zstd-codec@0.1",
    // WebSocket for the dashboard test's DevTools script on Node < 22 (observe_serve.rs).
    "ws@8",
    // AsyncAPI 3.0 validation of the gateway's /asyncapi.json (tests/gateway_rest.rs).
    "@asyncapi/parser@3",
];

struct AptPackage {
    package: &'static str,
    command: &'static str,
}

struct PipPackage {
    package: &'static str,
    module: &'static str,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("test") => test(&rest),
        Some("help" | "--help" | "-h") | None => {
            eprintln!("usage: cargo xtask test [CARGO TEST ARGS…]");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`; usage: cargo xtask test [CARGO TEST ARGS…]");
            Ok(ExitCode::from(2))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("xtask: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn test(extra: &[String]) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let npm_prefix = root.join("target").join("npm");
    ensure_apt(APT_PACKAGES)?;
    ensure_pip(PIP_PACKAGES)?;
    ensure_npm(NPM_PACKAGES, &npm_prefix)?;
    // Kept until the tests are done; dropping it stops the throwaway cluster.
    let postgres = ensure_postgres(&root)?;
    let mariadb = ensure_mariadb(&root)?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let node_path = npm_prefix.join("node_modules");
    // `--all-targets` builds benches and runs them once each in test mode (quick), but
    // skips doc tests, so those run in a second pass.
    let passes: [&[&str]; 2] = [
        &["test", "--workspace", "--all-targets"],
        &["test", "--workspace", "--doc"],
    ];
    for pass in passes {
        eprintln!("xtask: cargo {} {}", pass.join(" "), extra.join(" "));
        let status = Command::new(&cargo)
            .args(pass)
            .args(extra)
            .current_dir(&root)
            .env("NODE_PATH", &node_path)
            .envs(
                postgres
                    .as_ref()
                    .map(|pg| (POSTGRES_URL_VAR, pg.url.as_str())),
            )
            .envs(mariadb.as_ref().map(|m| (MYSQL_URL_VAR, m.url.as_str())))
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            // Exit with the tests' own code; a signal death has none, so report failure.
            let code = status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1);
            return Ok(ExitCode::from(code));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the outbox tests find MariaDB/MySQL (`crates/weft/tests/outbox_support`).
const MYSQL_URL_VAR: &str = "WEFT_TEST_MYSQL_URL";

/// A MariaDB server started for this test run (no grant tables: a throwaway on loopback),
/// killed and removed on drop.
struct ThrowawayMariaDb {
    url: String,
    dir: PathBuf,
    child: std::process::Child,
}

/// MariaDB for the outbox tests: `$WEFT_TEST_MYSQL_URL` when set, else the server on
/// 127.0.0.1:3306 when one answers, else Debian's MariaDB (installed when missing) as a
/// throwaway server on a spare port, whose URL the tests get.
fn ensure_mariadb(root: &Path) -> anyhow::Result<Option<ThrowawayMariaDb>> {
    if std::env::var_os(MYSQL_URL_VAR).is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    let default = std::net::SocketAddr::from(([127, 0, 0, 1], 3306));
    if std::net::TcpStream::connect_timeout(&default, std::time::Duration::from_secs(2)).is_ok() {
        return Ok(None);
    }
    let server = Path::new("/usr/sbin/mariadbd");
    if !server.is_file() {
        eprintln!("xtask: nothing answers on {default}; installing Debian's mariadb-server");
        apt_install(&["mariadb-server"])?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a spare port")?
        .port();
    let dir = root.join("target").join(format!("mariadb-test-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // As root the server runs as Debian's `mysql` user, which must own the directory.
    let user: Vec<String> = if is_root() {
        run(Command::new("chown").arg("mysql:mysql").arg(&dir))?;
        vec!["--user=mysql".into()]
    } else {
        Vec::new()
    };
    let data = dir.join("data");
    run(Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(&user)
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .stdout(std::process::Stdio::null()))?;
    let log = std::fs::File::create(dir.join("server.log")).context("cannot create server.log")?;
    let child = Command::new(server)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .args(&user)
        .arg("--skip-grant-tables")
        .stderr(log)
        .spawn()
        .context("cannot start mariadbd")?;
    let db = ThrowawayMariaDb {
        url: format!("mysql://root@127.0.0.1:{port}/mysql"),
        dir,
        child,
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..120 {
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok() {
            eprintln!("xtask: throwaway MariaDB at {}", db.url);
            return Ok(Some(db));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    bail!(
        "MariaDB did not start; see {}",
        db.dir.join("server.log").display()
    )
}

impl Drop for ThrowawayMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the state-store tests find PostgreSQL (`weft_store::testing`).
const POSTGRES_URL_VAR: &str = "WEFT_TEST_POSTGRES_URL";

/// A PostgreSQL cluster started for this test run, stopped and removed on drop.
struct ThrowawayPostgres {
    url: String,
    bin: PathBuf,
    dir: PathBuf,
    /// Run the server's tools as this OS user (initdb refuses to run as root).
    user: Option<&'static str>,
}

/// PostgreSQL for the tests: `$WEFT_TEST_POSTGRES_URL` when set, else the server on
/// 127.0.0.1:5432 when one answers, else Debian's PostgreSQL (installed when missing) as a
/// throwaway cluster on a spare port with trust auth, whose URL the tests get.
fn ensure_postgres(root: &Path) -> anyhow::Result<Option<ThrowawayPostgres>> {
    if std::env::var_os(POSTGRES_URL_VAR).is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    let default = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    if std::net::TcpStream::connect_timeout(&default, std::time::Duration::from_secs(2)).is_ok() {
        return Ok(None);
    }
    let bin = match postgres_bin() {
        Some(bin) => bin,
        None => {
            eprintln!("xtask: nothing answers on {default}; installing Debian's postgresql");
            apt_install(&["postgresql"])?;
            postgres_bin()
                .context("postgresql installed but no initdb under /usr/lib/postgresql")?
        }
    };
    // A spare port: bind port 0, note it, release it for the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a spare port")?
        .port();
    let dir = root.join("target").join(format!("pg-test-{port}"));
    let user = is_root().then_some("postgres");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pg = ThrowawayPostgres {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        bin,
        dir,
        user,
    };
    if let Some(user) = user {
        run(Command::new("chown")
            .args([&format!("{user}:{user}")])
            .arg(&pg.dir))?;
    }
    let data = pg.dir.join("data");
    run(pg
        .tool("initdb")
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data))?;
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {}",
        pg.dir.display()
    );
    run(pg
        .tool("pg_ctl")
        .args(["-w", "-D"])
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(pg.dir.join("server.log"))
        .arg("start"))?;
    eprintln!("xtask: throwaway PostgreSQL at {}", pg.url);
    Ok(Some(pg))
}

impl ThrowawayPostgres {
    /// One of the server's programs, as the cluster's OS user.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .tool("pg_ctl")
            .args(["-m", "fast", "-D"])
            .arg(&data)
            .arg("stop")
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // xtask lives at <root>/xtask.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn ensure_apt(packages: &[AptPackage]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = packages
        .iter()
        .filter(|p| !on_path(p.command))
        .map(|p| p.package)
        .collect();
    // The installers themselves, when a list needs them.
    if !PIP_PACKAGES.is_empty() && !succeeds("python3", &["-m", "pip", "--version"]) {
        missing.push("python3-pip");
    }
    if !NPM_PACKAGES.is_empty() && !on_path("npm") {
        missing.push("npm");
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let install = |missing: &[&str]| {
        apt_command()
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing)
            .status()
            .map(|s| s.success())
    };
    // A fresh machine may have empty package lists: update once and retry.
    if !install(&missing).context("cannot run apt-get")? {
        eprintln!("xtask: apt-get install failed; running apt-get update and retrying");
        let updated = apt_command()
            .arg("update")
            .status()
            .context("cannot run apt-get")?;
        if !updated.success() || !install(&missing).context("cannot run apt-get")? {
            bail!("could not install Debian packages: {}", missing.join(" "));
        }
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// `apt-get install` of `packages`, with one `apt-get update` and retry on failure.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let install = || {
        apt_command()
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .status()
            .map(|s| s.success())
    };
    if install().context("cannot run apt-get")? {
        return Ok(());
    }
    let updated = apt_command()
        .arg("update")
        .status()
        .context("cannot run apt-get")?;
    if !updated.success() || !install().context("cannot run apt-get")? {
        bail!("could not install Debian packages: {}", packages.join(" "));
    }
    Ok(())
}

/// `apt-get`, through `sudo` when not root.
fn apt_command() -> Command {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("apt-get");
        sudo
    };
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn ensure_pip(packages: &[PipPackage]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|p| !succeeds("python3", &["-c", &format!("import {}", p.module)]))
        .map(|p| p.package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Python packages: {}", missing.join(" "));
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .args(&missing)
            .status()
            .map(|s| s.success())
    };
    if pip(&[]).context("cannot run python3 -m pip")? {
        return Ok(());
    }
    // Debian's own python3 refuses `pip install` outside a venv (PEP 668). These are test
    // tools on a build machine, so installing beside the system packages is acceptable.
    eprintln!("xtask: retrying pip with --break-system-packages");
    if pip(&["--break-system-packages"]).context("cannot run python3 -m pip")? {
        return Ok(());
    }
    bail!("could not install Python packages: {}", missing.join(" "))
}

fn ensure_npm(packages: &[&str], prefix: &Path) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|spec| {
            !prefix
                .join("node_modules")
                .join(npm_name(spec))
                .join("package.json")
                .is_file()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing npm packages into {}: {}",
        prefix.display(),
        missing.join(" ")
    );
    std::fs::create_dir_all(prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(prefix)
        .args(&missing)
        .status()
        .context("cannot run npm")?;
    if !status.success() {
        bail!("could not install npm packages: {}", missing.join(" "));
    }
    Ok(())
}

/// `kafkajs@2` → `kafkajs`; `@scope/pkg@1` → `@scope/pkg`.
fn npm_name(spec: &str) -> &str {
    match spec.rfind('@') {
        Some(at) if at > 0 => &spec[..at],
        _ => spec,
    }
}

fn on_path(command: &str) -> bool {
    if command.starts_with('/') {
        return Path::new(command).is_file();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(command))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

fn succeeds(program: impl AsRef<OsStr>, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_names() {
        let cases = [
            ("kafkajs", "kafkajs"),
            ("kafkajs@2", "kafkajs"),
            ("@scope/pkg", "@scope/pkg"),
            ("@scope/pkg@1.2.3", "@scope/pkg"),
        ];
        for (spec, name) in cases {
            assert_eq!(npm_name(spec), name, "{spec}");
        }
    }
}
