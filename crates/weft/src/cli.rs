//! Command-line surface of the `weft` binary.
//!
//! Every subcommand is one variant of [`Command`] whose arguments live in the module that runs
//! it (one module per command group). To add a command group (`weft topic …`, `weft produce`,
//! `weft consume`, `weft bench`): write a module with an `Args` struct deriving
//! [`clap::Args`] (or a `Subcommand` enum for a group) and an `async fn run(args) ->
//! anyhow::Result<ExitCode>`, add a variant here and one match arm in `main.rs`.

use clap::{Parser, Subcommand};

use crate::settings::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "Weft: an event-integration platform in one binary"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the Weft server: storage engine, HTTP listener (and, later, the Kafka broker)
    Serve(ServeArgs),
    // New command groups go here, e.g. `Topic(topic::TopicArgs)`.
    /// Create, list, describe, alter and delete topics on any Kafka-protocol broker
    Topic(crate::cmd::topic::TopicArgs),
    /// Add, list and remove ACLs (Kafka's CreateAcls/DescribeAcls/DeleteAcls)
    Acl(crate::cmd::acl::AclArgs),
    /// Add, list and remove SCRAM users (Kafka's Alter/DescribeUserScramCredentials)
    User(crate::cmd::user::UserArgs),
    /// Write stdin lines as records to a topic
    Produce(crate::cmd::produce::ProduceArgs),
    /// Print the records of a topic
    Consume(crate::cmd::consume::ConsumeArgs),
    /// List and describe consumer groups (offsets, lag) and reset their offsets
    Group(crate::cmd::group::GroupArgs),
    /// Load generator: producer and consumer throughput, end-to-end latency
    Bench(crate::cmd::bench::BenchArgs),
    /// Register, check, get, list, diff and deprecate schemas on the schema registry
    Schema(crate::cmd::schema::SchemaArgs),
    /// List, inspect and redrive dead-letter topics
    Dlq(crate::cmd::dlq::DlqArgs),
    /// Transactional outbox: create the outbox table, show the relay's status
    Outbox(crate::cmd::outbox::OutboxArgs),
    /// Append, read and replay event-store streams over the HTTP API
    Events(crate::cmd::events::EventsArgs),
    /// Generate a local CA, a server and a client certificate for trying TLS (not for production)
    DevCerts(crate::cmd::dev_certs::DevCertsArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
