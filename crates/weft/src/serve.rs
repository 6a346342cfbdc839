//! `weft serve`: open the data dir, start the components, stop them on a signal.
//!
//! Order of start-up, each step only after the previous one succeeded:
//! 1. resolve settings and install logging;
//! 2. create the data dir and take its exclusive lock (`<data-dir>/.lock`);
//! 3. open the state store (`--database`, default SQLite `<data-dir>/state.db`) and apply
//!    the registry's migrations, then the storage engine (`<data-dir>/log`);
//! 4. bind every listener (a busy port fails here, naming the address);
//! 5. install the SIGINT/SIGTERM handlers, start the components, log `ready`.
//!
//! Shutdown (signal or a failed component): components are told to stop and awaited, then
//! the log is closed (flush, fsync, checkpoint), the state store's connections are closed,
//! then the lock is released by exiting.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

use crate::http::{self, AppState};
use crate::logging;
use crate::settings::{ServeArgs, Settings};
use crate::supervisor::{Shutdown, Supervisor};

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args)?;
    let observability = logging::init(settings.log_format, &settings.log_level, &settings.observe)?;
    let log_config = settings.log_config()?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config_file = settings.config_file.as_ref().map(|p| p.display().to_string()),
        data_dir = %settings.data_dir.display(),
        node_id = settings.node_id,
        kafka_listen = %settings.kafka_listen,
        kafka_advertised = settings.kafka_advertised.as_deref(),
        registry_listen = %settings.registry_listen,
        database = settings.database.as_deref().map(weft_store::redact),
        kafka_bootstrap = settings.kafka_bootstrap.as_deref(),
        // Secret values (sasl.password…) show as <redacted>.
        kafka_client = ?settings.kafka_client,
        "starting"
    );

    let _lock = lock_data_dir(&settings.data_dir)?;

    // The store's error names the URL with its password hidden.
    let store = weft_store::Store::open(&settings.database_url())
        .await
        .context("cannot open the state database")?;
    let registry = weft_registry::Registry::open(store.clone())
        .await
        .context("cannot prepare the schema registry's tables")?;

    let log_dir = settings.data_dir.join("log");
    let log = tokio::task::spawn_blocking({
        let log_dir = log_dir.clone();
        move || weft_log::Log::open(&log_dir, log_config)
    })
    .await
    .context("log open task failed")?
    .with_context(|| format!("cannot open the log in {}", log_dir.display()))?;
    let log = Arc::new(log);
    info!(dir = %log_dir.display(), "log opened");

    let outcome = run_components(&settings, Arc::clone(&log), registry, &observability).await;

    let closed = tokio::task::spawn_blocking(move || log.close())
        .await
        .context("log close task failed")
        .and_then(|r| r.context("cannot close the log cleanly"));
    match &closed {
        Ok(()) => info!("log closed"),
        Err(e) => error!(error = %format!("{e:#}"), "log close failed"),
    }
    store.close().await;
    // Spans still buffered are exported before the process exits.
    observability.shutdown().await;
    // A component failure is the root cause; report it first.
    outcome.and(closed)
}

/// Binds the listeners, starts the components and supervises them until a signal or a
/// failure. Returns once every component has stopped.
async fn run_components(
    settings: &Settings,
    log: Arc<weft_log::Log>,
    registry: weft_registry::Registry,
    observability: &logging::Observability,
) -> anyhow::Result<()> {
    // weft serve's own identity (weft_auth::internal): `User:weft-internal` with a secret
    // drawn now, kept in memory only, never logged. It is a super-user; its Kafka clients
    // use the internal listener and its HTTP clients send it as a bearer token.
    let internal = weft_auth::InternalCredential::generate();
    let mut security = settings.security.clone();
    security
        .super_users
        .push(weft_auth::internal::internal_principal().to_string());
    let security = &security;
    let http_listener = bind("http", settings.http_listen).await?;
    let http_addr = http_listener
        .local_addr()
        .context("http listener has no address")?;
    let registry_listener = bind("registry", settings.registry_listen).await?;
    let registry_addr = registry_listener
        .local_addr()
        .context("registry listener has no address")?;
    // `[security.http] tls`: HTTPS on the HTTP and registry listeners (crate::http::Https);
    // weft serve's own registry clients (gateway, event store) use `registry_client`.
    let https = http::Https::from_config(&settings.security).await?;
    let registry_client = https.registry_client_addr(registry_addr);

    // The embedded Kafka broker, unless an external cluster is used instead.
    let kafka = match settings.kafka_bootstrap {
        Some(_) => None,
        None => {
            let listener = bind("kafka", settings.kafka_listen).await?;
            let addr = listener
                .local_addr()
                .context("kafka listener has no address")?;
            let mut config = broker_config(settings, addr)?;
            // Topics with `weft.schema.validation` check records against this registry.
            config.schemas = Some(crate::registry_source::validator(registry.clone()));
            // `[security]` authorisation: ACLs and SCRAM users in the state store, reloaded
            // every second (changes from other processes sharing a PostgreSQL store).
            config.authorization = weft_broker::Authorization::open(
                security,
                registry.store().clone(),
                std::time::Duration::from_secs(1),
            )
            .await
            .context("cannot set up kafka authorization")?;
            // `[security] listeners` (SASL_PLAINTEXT…) beside this PLAINTEXT one.
            let extra = crate::kafka_listeners::prepare(security, registry.store(), None).await?;
            config.sasl = extra.sasl;
            let mut listeners = vec![(
                listener,
                weft_broker::security::Listener::plaintext(
                    config.advertised_host.clone(),
                    config.advertised_port,
                ),
            )];
            listeners.extend(extra.listeners);
            // With authorisation or SASL on, weft serve's own clients get their own
            // loopback SASL_PLAINTEXT listener (the internal credential only); it is last.
            let internal_addr = if crate::kafka_listeners::needs_internal(security) {
                let (socket, spec) = crate::kafka_listeners::internal(&internal).await?;
                let addr = socket
                    .local_addr()
                    .context("kafka internal listener has no address")?;
                listeners.push((socket, spec));
                Some(addr)
            } else {
                None
            };
            Some((listeners, addr, config, internal_addr))
        }
    };
    let kafka_addr: Option<SocketAddr> = kafka.as_ref().map(|(_, addr, _, _)| *addr);
    let kafka_internal: Option<SocketAddr> = kafka.as_ref().and_then(|(_, _, _, i)| *i);
    // `PROTOCOL://address` of the `[security] listeners`, as bound (for the `ready` line;
    // the internal listener, with its own SASL settings, is not one of them).
    let configured = |ls: &[(TcpListener, weft_broker::security::Listener)]| {
        ls.iter()
            .skip(1)
            .filter(|(_, spec)| spec.sasl.is_none())
            .filter_map(|(l, spec)| Some((spec.protocol, l.local_addr().ok()?)))
            .collect::<Vec<_>>()
    };
    let kafka_listeners: Vec<String> = kafka
        .iter()
        .flat_map(|(listeners, _, _, _)| configured(listeners))
        .map(|(protocol, addr)| format!("{protocol}://{addr}"))
        .collect();

    // Handlers go in before `ready` so a signal sent right after it is not lost.
    let stop = stop_signal()?;

    let mut sup = Supervisor::new();
    let mut listeners = vec![("http", http_addr)];
    listeners.extend(kafka_addr.map(|addr| ("kafka", addr)));
    // The `[security]` Kafka listeners are probed too (`listener:kafka-sasl_ssl`…).
    listeners.extend(
        kafka
            .iter()
            .flat_map(|(ls, _, _, _)| configured(ls))
            .map(|(protocol, addr)| (protocol.check_name(), addr)),
    );
    listeners.extend(kafka_internal.map(|addr| ("kafka-internal", addr)));
    listeners.push(("registry", registry_addr));
    let kafka_log = Arc::clone(&log);
    let state = AppState::new(listeners, settings.data_dir.clone(), log, sup.shutdown());
    // Consumer lag, sampled through the Kafka protocol from the cluster in use: the embedded
    // broker's advertised address, or the external cluster.
    let lag = weft_lag::Lag::new(settings.lag);
    // Where and how weft serve's own Kafka clients connect: the external cluster with the
    // `[kafka_client]` properties, the internal listener with the internal credential, or
    // the embedded broker's plaintext listener while security is off.
    let (lag_bootstrap, client_properties) = match (&settings.kafka_bootstrap, kafka_internal) {
        (Some(external), _) => (Some(external.clone()), settings.kafka_client.0.clone()),
        (None, Some(internal_addr)) => (
            Some(internal_addr.to_string()),
            crate::kafka_listeners::internal_client_properties(&internal),
        ),
        (None, None) => (
            kafka_addr.map(|addr| settings.kafka_advertised_or(addr)),
            Vec::new(),
        ),
    };
    // `[security.http] require_auth`: the registry wants credentials from serve's own
    // clients too; they send the internal one (accepted from loopback only).
    let registry_authorization = security.http.require_auth.then(|| internal.bearer_header());
    // The real-time gateway (REST, SSE, WebSocket, webhooks; crates/weft-gateway): a Kafka
    // client of the cluster in use that reaches the registry by its URL, mounted on the HTTP
    // listener; its own limits come from WEFT_GATEWAY_* variables until they become flags.
    let gateway = match &lag_bootstrap {
        Some(bootstrap) => {
            let mut config =
                weft_gateway::Config::new(bootstrap.clone()).with_settings(&settings.gateway)?;
            config.registry_url = Some(format!("http://{registry_client}"));
            config.registry_authorization =
                registry_authorization.clone().map(weft_gateway::Redacted);
            config.kafka_properties =
                weft_gateway::kafka::ClientProperties(client_properties.clone());
            let gateway = weft_gateway::Gateway::open(config, registry.store().clone())
                .await
                .context("cannot start the gateway")?;
            Some(gateway)
        }
        None => None,
    };
    let mut router = http::router(state).merge(http::groups_router(lag.clone()));
    if let Some(gateway) = &gateway {
        router = router.merge(gateway.router());
    }
    // The transactional outbox relay (crates/weft-outbox): one task per [[outbox.sources]],
    // publishing through the cluster in use; its status is GET /v1/outbox.
    let outbox = weft_outbox::Outbox::for_config(&settings.outbox);
    let outbox_bootstrap = lag_bootstrap.clone();
    let router = router.merge(weft_outbox::router(outbox.clone()));
    // The event store (crates/weft-eventstore): /v1/streams, tables in the state database.
    let events = weft_eventstore::EventStore::open(registry.store().clone())
        .await
        .context("cannot prepare the event store's tables")?;
    // Event types bound to a registry subject look their schema up in this registry.
    let mut lookup = weft_eventstore::HttpSchemaLookup::for_addr(registry_client);
    if let Some(authorization) = &registry_authorization {
        lookup = lookup.with_authorization(authorization);
    }
    events.set_schema_lookup(Arc::new(lookup));
    let router = router.merge(weft_eventstore::http::router(events.clone()));
    // Reclaims what stream metadata and deletes hide, every 5 minutes, in small batches.
    sup.spawn("eventstore", move |mut shutdown| async move {
        events
            .run_scavenger(std::time::Duration::from_secs(300), 500, async move {
                shutdown.requested().await
            })
            .await
            .context("event store scavenger stopped")
    });
    // Observability (crates/weft-observe): /metrics, the /ui dashboard, and request metrics
    // and a server span around every route (outermost, so it sees every answer).
    // `[security.http]`: authentication, scopes and ACLs on the HTTP and registry listeners
    // (http_auth.rs), deciding with the broker's authoriser when there is one; nothing is
    // layered when `require_auth` is off.
    let shared_authorizer = kafka
        .as_ref()
        .map(|(_, _, config, _)| config.authorization.authorizer().clone());
    let http_security =
        crate::http_auth::build(security, registry.store(), shared_authorizer, &internal).await?;
    if let Some((acls, authorizer)) = http_security.reload.clone() {
        sup.spawn("http-acls", move |mut shutdown| {
            crate::http_auth::run_acl_reloader(acls, authorizer, async move {
                shutdown.requested().await
            })
        });
    }
    let router = http::observe(
        router,
        observability,
        lag.clone(),
        http_security.http.clone(),
    );
    // Fields the registry's schemas tag as sensitive are masked in logs and spans (issue 9).
    let (classified, masker) = (registry.clone(), observability.masker.clone());
    sup.spawn("mask-classifier", move |shutdown| {
        crate::logging::classify_registry_fields(classified, masker, shutdown)
    });
    let http_tls = https.tls();
    sup.spawn("http", move |shutdown| {
        http::serve_with(http_listener, router, http_tls, shutdown)
    });
    if let Some(gateway) = gateway {
        sup.spawn("gateway", move |mut shutdown| async move {
            gateway
                .run(async move { shutdown.requested().await })
                .await
                .context("gateway stopped")
        });
    }
    if let Some((listeners, _, config, _)) = kafka {
        sup.spawn("kafka", move |shutdown| {
            run_kafka(config, kafka_log, listeners, shutdown)
        });
    }
    if let Some(bootstrap) = lag_bootstrap {
        let mut config = weft_lag::SamplerConfig::new(bootstrap, settings.lag);
        config.properties = client_properties.clone();
        sup.spawn("lag", move |mut shutdown| async move {
            lag.run(config, async move { shutdown.requested().await })
                .await
                .context("consumer lag monitor stopped")
        });
    }

    if !settings.outbox.sources.is_empty() {
        let mut config = settings.outbox.clone();
        // Sources publishing to the cluster in use connect as serve's other clients do
        // (a source's own `kafka` keys win).
        for source in config.sources.iter_mut().filter(|s| s.bootstrap.is_none()) {
            for (k, v) in &client_properties {
                source.kafka.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        // A `value_schema` naming this process's registry reaches it as the gateway does
        // (the loopback listener, the internal bearer) once the registry wants credentials;
        // another registry never sees the internal credential.
        if let Some(authorization) = &registry_authorization {
            for vs in config
                .sources
                .iter_mut()
                .filter_map(|s| s.value_schema.as_mut())
            {
                if names_registry(&vs.registry_url, registry_addr) {
                    vs.registry_url = format!("http://{registry_client}");
                    vs.authorization = Some(weft_outbox::config::Secret(authorization.clone()));
                }
            }
        }
        sup.spawn("outbox", move |mut shutdown| async move {
            weft_outbox::run(config, outbox_bootstrap, outbox, async move {
                shutdown.requested().await
            })
            .await
            .context("outbox relay stopped")
        });
    }

    let registry_router = weft_registry::router_with_auth(registry, http_security.registry);
    sup.spawn("registry", move |shutdown| {
        http::serve_registry(registry_listener, registry_router, https, shutdown)
    });

    info!(
        http_addr = %http_addr,
        registry_addr = %registry_addr,
        kafka_addr = kafka_addr.map(tracing::field::display),
        kafka_listeners = %kafka_listeners.join(","),
        // Loopback, SASL PLAIN with the in-memory internal credential only.
        kafka_internal = kafka_internal.map(tracing::field::display),
        data_dir = %settings.data_dir.display(),
        node_id = settings.node_id,
        "ready"
    );
    let result = sup.run(stop).await;
    if result.is_ok() {
        info!("components stopped");
    }
    result
}

/// The embedded broker's settings: state in `<data-dir>/broker`, advertising
/// `--kafka-advertised` or else the address the listener bound.
fn broker_config(
    settings: &Settings,
    bound: SocketAddr,
) -> anyhow::Result<weft_broker::BrokerConfig> {
    let advertised = settings.kafka_advertised_or(bound);
    let Some((host, port)) = weft_broker::split_host_port(&advertised) else {
        bail!("kafka advertised address {advertised:?} is not HOST:PORT");
    };
    let mut config = weft_broker::BrokerConfig::new(settings.data_dir.join("broker"), host, port);
    config.node_id = settings.node_id;
    config.auto_create_topics = settings.broker.auto_create_topics;
    config.num_partitions = settings.broker.num_partitions;
    config.offsets_retention = std::time::Duration::from_secs(
        settings.broker.offsets_retention_minutes.saturating_mul(60),
    );
    config.group_consumer_session_timeout =
        std::time::Duration::from_millis(settings.broker.group_consumer_session_timeout_ms);
    config.group_consumer_heartbeat_interval =
        std::time::Duration::from_millis(settings.broker.group_consumer_heartbeat_interval_ms);
    config.group_initial_rebalance_delay =
        std::time::Duration::from_millis(settings.broker.group_initial_rebalance_delay_ms);
    Ok(config)
}

/// The "kafka" component: the broker until shutdown is requested, then its clean stop
/// (connections closed, producer-state snapshots written).
async fn run_kafka(
    config: weft_broker::BrokerConfig,
    log: Arc<weft_log::Log>,
    listeners: Vec<(TcpListener, weft_broker::security::Listener)>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let broker = weft_broker::run_listeners(config, log, listeners, stopped);
    tokio::pin!(broker);
    tokio::select! {
        result = &mut broker => return result.context("kafka broker stopped"),
        () = shutdown.requested() => {}
    }
    let _ = stop.send(true);
    broker.await.context("kafka broker failed to stop cleanly")
}

/// Binds `addr` (port 0 picks a free port), with an error naming the listener and address.
/// Whether `url` (`http://host:port/…`) names the registry listening on `registry`: its
/// port, on a loopback host (`localhost`, 127.0.0.0/8, ::1) or on the address it bound.
fn names_registry(url: &str, registry: SocketAddr) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((host, port)) = authority.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(registry.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback() || ip == registry.ip())
}

pub(crate) async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the {name} listener on {addr}"))
}

/// Creates the data dir and holds `<data-dir>/.lock` exclusively for the life of the
/// returned file, so two servers never share a data dir.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let path: PathBuf = dir.join(".lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => bail!(
            "data dir {} is in use by another weft process (lock {} is held)",
            dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // The pid is only a hint for people; the lock itself is what counts.
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write lock file {}", path.display()))?;
    info!(path = %path.display(), "data dir locked");
    Ok(file)
}

/// Resolves on the first SIGINT or SIGTERM.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "signal received"),
            _ = int.recv() => info!(signal = "SIGINT", "signal received"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_registry_only_for_this_registry() {
        let any: SocketAddr = "0.0.0.0:8081".parse().expect("addr");
        let on_ip: SocketAddr = "10.1.2.3:8081".parse().expect("addr");
        // (url, registry address, names it)
        let cases = [
            ("http://127.0.0.1:8081", any, true),
            ("http://localhost:8081/", any, true),
            ("http://LOCALHOST:8081/x", any, true),
            ("http://127.0.0.2:8081", any, true),
            ("http://[::1]:8081", any, true),
            ("http://10.1.2.3:8081", on_ip, true),
            ("http://127.0.0.1:8082", any, false),
            ("http://10.1.2.3:8081", any, false),
            ("http://registry.example:8081", any, false),
            ("http://127.0.0.1", any, false),
            ("https://127.0.0.1:8081", any, false),
            ("http://127.0.0.1:8081@evil.example:8081", any, false),
        ];
        for (url, registry, want) in cases {
            assert_eq!(names_registry(url, registry), want, "{url} {registry}");
        }
    }
}
