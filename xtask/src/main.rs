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

/// Debian packages, each with the command whose presence means it is installed.
const APT_PACKAGES: &[AptPackage] = &[AptPackage {
    package: "kcat",
    command: "kcat",
}];

/// Python packages, each with the module whose import means it is installed. Installed into
/// whatever `python3` is first on PATH, the one tests run.
const PIP_PACKAGES: &[PipPackage] = &[
    PipPackage {
        package: "kafka-python",
        module: "kafka",
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
];

/// npm packages (`name` or `name@version`), installed under `<repo>/target/npm`; tests find
/// them through `NODE_PATH`, which `cargo xtask test` sets.
const NPM_PACKAGES: &[&str] = &["kafkajs@2", "kafkajs-snappy@1"];

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

/// `apt-get`, through `sudo` when not root.
fn apt_command() -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    let mut cmd = if is_root {
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
