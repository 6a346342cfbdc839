//! Starts the server's components, watches them, and stops them together.
//!
//! A component is a name plus a future returning `anyhow::Result<()>`. The future receives a
//! [`Shutdown`] and must return soon after it fires. A component that returns *before*
//! shutdown was requested — with an error, with `Ok(())`, or by panicking — has failed: the
//! supervisor logs `component failed`, asks every other component to stop, and
//! [`Supervisor::run`] returns the error so the process exits non-zero.
//!
//! ```ignore
//! let mut sup = Supervisor::new();
//! sup.spawn("http", move |shutdown| http::serve(listener, state, shutdown));
//! sup.run(stop_signal).await?;
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::watch;
use tokio::task::{self, JoinError, JoinSet};
use tracing::{error, info, warn};

/// How long components get to stop before they are aborted.
const GRACE: Duration = Duration::from_secs(30);

/// Tells a component to stop. Cheap to clone; every clone fires together.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is requested (at once if it already was).
    pub(crate) async fn requested(&mut self) {
        // An error means the supervisor is gone, which is also a reason to stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been requested.
    pub(crate) fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

pub(crate) struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    names: HashMap<task::Id, &'static str>,
}

impl Supervisor {
    pub(crate) fn new() -> Supervisor {
        Supervisor {
            stop: watch::Sender::new(false),
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// A shutdown signal for code that is not a component (e.g. `/readyz` reports it).
    pub(crate) fn shutdown(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Starts component `name`: `start` is handed the shutdown signal and returns the future
    /// that runs the component. Must be called inside the tokio runtime.
    pub(crate) fn spawn<F, Fut>(&mut self, name: &'static str, start: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let fut = start(Shutdown(self.stop.subscribe()));
        let handle = self.tasks.spawn(fut);
        self.names.insert(handle.id(), name);
    }

    /// Runs until `stop` resolves (a signal) or a component stops on its own, then asks all
    /// components to stop and waits for them. `Err` when any component failed.
    pub(crate) async fn run(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            () = stop => info!("shutdown requested"),
            Some(joined) = self.tasks.join_next_with_id() => {
                let (name, result) = self.outcome(joined);
                let err = match result {
                    Ok(()) => anyhow!("component {name} exited unexpectedly"),
                    Err(e) => e.context(format!("component {name} failed")),
                };
                error!(component = name, error = %format!("{err:#}"), "component failed");
                failure = Some(err);
            }
        }

        // Every component is told at once; a send error only means no component is left.
        let _ = self.stop.send(true);
        let deadline = tokio::time::sleep(GRACE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => {
                    let Some(joined) = joined else { break };
                    let (name, result) = self.outcome(joined);
                    match result {
                        Ok(()) => info!(component = name, "component stopped"),
                        Err(e) => {
                            let err = e.context(format!("component {name} failed"));
                            error!(component = name, error = %format!("{err:#}"), "component failed");
                            failure.get_or_insert(err);
                        }
                    }
                }
                () = &mut deadline => {
                    warn!(remaining = self.tasks.len(), grace_secs = GRACE.as_secs(), "components did not stop in time, aborting them");
                    self.tasks.shutdown().await;
                    failure.get_or_insert(anyhow!("components did not stop within {GRACE:?}"));
                    break;
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    fn outcome(
        &mut self,
        joined: Result<(task::Id, anyhow::Result<()>), JoinError>,
    ) -> (&'static str, anyhow::Result<()>) {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) if e.is_panic() => (e.id(), Err(anyhow!("panicked"))),
            Err(e) => (e.id(), Err(anyhow!("cancelled"))),
        };
        (self.names.remove(&id).unwrap_or("unknown"), result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component that runs until shutdown and then returns `result`.
    fn until_shutdown(
        result: anyhow::Result<()>,
    ) -> impl FnOnce(Shutdown) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
    {
        move |mut s| {
            Box::pin(async move {
                s.requested().await;
                result
            })
        }
    }

    #[tokio::test]
    async fn stop_signal_stops_every_component() {
        let mut sup = Supervisor::new();
        sup.spawn("a", until_shutdown(Ok(())));
        sup.spawn("b", until_shutdown(Ok(())));
        sup.run(async {}).await.expect("clean stop");
    }

    #[tokio::test]
    async fn no_components_waits_for_stop() {
        Supervisor::new().run(async {}).await.expect("clean stop");
    }

    #[tokio::test]
    async fn failing_component_stops_the_others() {
        // (component, error fragment)
        type Start = Box<
            dyn FnOnce(
                Shutdown,
            )
                -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
        >;
        let cases: Vec<(Start, &str)> = vec![
            (
                Box::new(|_| Box::pin(async { Err(anyhow!("boom")) })),
                "component bad failed: boom",
            ),
            (
                Box::new(|_| Box::pin(async { Ok(()) })),
                "component bad exited unexpectedly",
            ),
            (
                Box::new(|_| Box::pin(async { panic!("oops") })),
                "component bad failed: panicked",
            ),
        ];
        for (start, fragment) in cases {
            let mut sup = Supervisor::new();
            sup.spawn("good", until_shutdown(Ok(())));
            sup.spawn("bad", start);
            // `stop` never resolves: only the failure can end the run.
            let err = sup.run(std::future::pending()).await.expect_err("failure");
            assert!(
                format!("{err:#}").contains(fragment),
                "{err:#} lacks {fragment}"
            );
        }
    }

    #[tokio::test]
    async fn error_during_shutdown_is_reported() {
        let mut sup = Supervisor::new();
        sup.spawn("flaky", until_shutdown(Err(anyhow!("flush failed"))));
        let err = sup.run(async {}).await.expect_err("failure");
        assert!(
            format!("{err:#}").contains("component flaky failed: flush failed"),
            "{err:#}"
        );
    }
}
