//! The `weft` binary. See `cli.rs` for how subcommands are laid out.

mod cli;
mod cmd;
mod http;
mod http_auth;
mod http_conn;
mod jwks;
mod kafka_listeners;
mod logging;
mod registry_source;
mod serve;
mod settings;
mod supervisor;
mod tls_client;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Topic(args) => cmd::topic::run(args).await,
        Command::Acl(args) => cmd::acl::run(args).await,
        Command::User(args) => cmd::user::run(args).await,
        Command::Produce(args) => cmd::produce::run(args).await,
        Command::Consume(args) => cmd::consume::run(args).await,
        Command::Group(args) => cmd::group::run(args).await,
        Command::Bench(args) => cmd::bench::run(args).await,
        Command::Schema(args) => cmd::schema::run(args).await,
        Command::Dlq(args) => cmd::dlq::run(args).await,
        Command::Outbox(args) => cmd::outbox::run(args).await,
        Command::Events(args) => cmd::events::run(args).await,
        Command::DevCerts(args) => cmd::dev_certs::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // Once logging is up the error goes there (JSON stays JSON); before that, plainly.
            if tracing::dispatcher::has_been_set() {
                tracing::error!(error = %format!("{err:#}"), "fatal error");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}
