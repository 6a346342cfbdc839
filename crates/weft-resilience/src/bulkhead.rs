//! Bulkhead: at most `max_concurrent` calls at once, at most `max_queue` more waiting, and
//! every call beyond that fails at once with [`BulkheadFull`].
//!
//! tower's `ConcurrencyLimit` alone makes every extra caller wait, without bound; a hanging
//! downstream then takes everything that calls it. Here waiting is bounded twice: by the
//! queue length and, optionally, by `max_wait`. Admission is first come, first served
//! (tokio's fair semaphore).
//!
//! Metrics: `weft_bulkhead_calls_total{name,outcome}` (`admitted` at once, `queued` then
//! admitted, `rejected` with the queue full, `timed_out` in the queue) and
//! `weft_bulkhead_in_flight{name}`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::{Error, Result};

/// Bulkhead settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Label in metrics and errors.
    pub name: String,
    /// Calls running at once. Default 10.
    pub max_concurrent: usize,
    /// Calls waiting for a slot; 0 = fail as soon as all slots are busy. Default 10.
    pub max_queue: usize,
    /// Longest wait in the queue before failing with [`BulkheadFull`]; `None` = wait until
    /// admitted. Default `None`.
    pub max_wait: Option<Duration>,
}

impl BulkheadConfig {
    /// Defaults under a name.
    pub fn new(name: impl Into<String>) -> Self {
        BulkheadConfig {
            name: name.into(),
            max_concurrent: 10,
            max_queue: 10,
            max_wait: None,
        }
    }

    /// `max_concurrent` must be at least 1 and below tokio's semaphore limit.
    pub fn validate(&self) -> Result<()> {
        if self.max_concurrent == 0 || self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(Error::InvalidConfig(format!(
                "bulkhead {}: max_concurrent must be in 1..={}, got {}",
                self.name,
                Semaphore::MAX_PERMITS,
                self.max_concurrent
            )));
        }
        Ok(())
    }
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig::new("default")
    }
}

/// A call refused by a [`Bulkhead`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead {name} is full ({})", if *.timed_out { "timed out in the queue" } else { "queue full" })]
pub struct BulkheadFull {
    /// The bulkhead's name.
    pub name: String,
    /// True when the call was queued and waited `max_wait` in vain; false when the queue
    /// was full on arrival.
    pub timed_out: bool,
}

/// The error of a call through a bulkhead.
#[derive(Debug, thiserror::Error)]
pub enum BulkheadError<E> {
    /// Not admitted.
    #[error(transparent)]
    Full(BulkheadFull),
    /// The service's own error.
    #[error("{0}")]
    Inner(E),
}

#[derive(Debug)]
struct Inner {
    config: BulkheadConfig,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
}

/// A bulkhead. Clones share the limit. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

/// A running call's slot, given back on drop.
#[derive(Debug)]
pub struct BulkheadPermit {
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        let now = self.inner.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.inner.gauge(now);
    }
}

/// Gives the queue slot back however the wait ends (admitted, timed out, cancelled).
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inner {
    fn count(&self, outcome: &'static str) {
        metrics::counter!(
            "weft_bulkhead_calls_total",
            "name" => self.config.name.clone(),
            "outcome" => outcome
        )
        .increment(1);
    }
    fn gauge(&self, in_flight: usize) {
        metrics::gauge!("weft_bulkhead_in_flight", "name" => self.config.name.clone())
            .set(in_flight as f64);
    }
    fn full(&self, timed_out: bool) -> BulkheadFull {
        self.count(if timed_out { "timed_out" } else { "rejected" });
        BulkheadFull {
            name: self.config.name.clone(),
            timed_out,
        }
    }
}

impl Bulkhead {
    /// A bulkhead; `max_concurrent` is clamped into `1..=Semaphore::MAX_PERMITS` (see
    /// [`BulkheadConfig::validate`]).
    pub fn new(mut config: BulkheadConfig) -> Self {
        config.max_concurrent = config.max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Bulkhead {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.max_concurrent)),
                config,
                queued: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.inner.config
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Calls waiting now.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    /// A slot now, a place in the queue and then a slot, or [`BulkheadFull`].
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        let inner = &self.inner;
        let permit = match inner.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                inner.count("admitted");
                permit
            }
            Err(TryAcquireError::Closed) => return Err(inner.full(false)),
            Err(TryAcquireError::NoPermits) => {
                let reserved =
                    inner
                        .queued
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                            (q < inner.config.max_queue).then_some(q + 1)
                        });
                if reserved.is_err() {
                    return Err(inner.full(false));
                }
                let _slot = QueueSlot(&inner.queued);
                let wait = inner.slots.clone().acquire_owned();
                let acquired = match inner.config.max_wait {
                    Some(max) => match tokio::time::timeout(max, wait).await {
                        Ok(acquired) => acquired,
                        Err(_) => return Err(inner.full(true)),
                    },
                    None => wait.await,
                };
                match acquired {
                    Ok(permit) => {
                        inner.count("queued");
                        permit
                    }
                    Err(_) => return Err(inner.full(false)),
                }
            }
        };
        let now = inner.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        inner.gauge(now);
        Ok(BulkheadPermit {
            inner: inner.clone(),
            _permit: permit,
        })
    }

    /// Runs `call` inside the bulkhead.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, BulkheadError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let _permit = self.acquire().await.map_err(BulkheadError::Full)?;
        call.await.map_err(BulkheadError::Inner)
    }

    /// A tower layer over this bulkhead.
    pub fn layer(&self) -> BulkheadLayer {
        BulkheadLayer {
            bulkhead: self.clone(),
        }
    }
}

/// Tower layer putting a [`Bulkhead`] in front of a service; the services it wraps share
/// the limit.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// A layer over a new bulkhead.
    pub fn new(config: BulkheadConfig) -> Self {
        Bulkhead::new(config).layer()
    }
}

impl<S> tower::Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// A service behind a [`Bulkhead`]. It is always ready: admission happens in the response
/// future (fail fast or a bounded wait), then the inner service is driven to readiness and
/// called. The inner service must be `Clone` (each call drives its own clone, as tower's
/// buffer-less middlewares do).
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl<S> BulkheadService<S> {
    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

/// The response future of a [`BulkheadService`].
pub type BulkheadFuture<T, E> =
    Pin<Box<dyn Future<Output = Result<T, BulkheadError<E>>> + Send + 'static>>;

impl<S, Req> tower::Service<Req> for BulkheadService<S>
where
    S: tower::Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BulkheadError<S::Error>;
    type Future = BulkheadFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let bulkhead = self.bulkhead.clone();
        Box::pin(async move {
            let _permit = bulkhead.acquire().await.map_err(BulkheadError::Full)?;
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(BulkheadError::Inner)?;
            inner.call(req).await.map_err(BulkheadError::Inner)
        })
    }
}

impl fmt::Display for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead {} ({} in flight of {}, {} queued of {})",
            self.inner.config.name,
            self.in_flight(),
            self.inner.config.max_concurrent,
            self.queued(),
            self.inner.config.max_queue
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Semaphore;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    fn bulkhead(max_concurrent: usize, max_queue: usize) -> Bulkhead {
        Bulkhead::new(BulkheadConfig {
            max_concurrent,
            max_queue,
            ..BulkheadConfig::new("db")
        })
    }

    /// Yields until `check` holds (bounded: a stuck condition fails the test).
    async fn until(mut check: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if check() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition never held");
    }

    #[tokio::test]
    async fn full_slots_queue_then_fail_fast() {
        let b = bulkhead(2, 1);
        let hold = |b: Bulkhead| async move { b.acquire().await };
        let p1 = hold(b.clone()).await.expect("slot 1");
        let p2 = hold(b.clone()).await.expect("slot 2");
        assert_eq!(b.in_flight(), 2);
        let queued = tokio::spawn(hold(b.clone()));
        until(|| b.queued() == 1).await;
        let full = b.acquire().await.expect_err("queue full");
        assert_eq!(
            full,
            BulkheadFull {
                name: "db".into(),
                timed_out: false
            }
        );
        assert_eq!(full.to_string(), "bulkhead db is full (queue full)");
        drop(p1);
        let p3 = queued
            .await
            .expect("task")
            .expect("admitted from the queue");
        assert_eq!(b.queued(), 0);
        assert_eq!(b.in_flight(), 2);
        drop((p2, p3));
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test]
    async fn zero_queue_rejects_as_soon_as_slots_are_busy() {
        let b = bulkhead(1, 0);
        let _p = b.acquire().await.expect("slot");
        let err = b.call(async { Ok::<_, ()>(()) }).await.expect_err("full");
        assert!(matches!(
            err,
            BulkheadError::Full(BulkheadFull {
                timed_out: false,
                ..
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn queued_calls_give_up_after_max_wait() {
        let b = Bulkhead::new(BulkheadConfig {
            max_concurrent: 1,
            max_queue: 5,
            max_wait: Some(Duration::from_secs(2)),
            ..BulkheadConfig::new("api")
        });
        let _held = b.acquire().await.expect("slot");
        let started = tokio::time::Instant::now();
        let err = b.acquire().await.expect_err("times out");
        assert!(err.timed_out);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(b.queued(), 0, "the timed-out waiter left the queue");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_frees_its_queue_place() {
        let b = bulkhead(1, 1);
        let _held = b.acquire().await.expect("slot");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await.map(drop) }
        });
        until(|| b.queued() == 1).await;
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(b.queued(), 0);
        // The place is usable again (it queues rather than failing).
        let again = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await.map(drop) }
        });
        until(|| b.queued() == 1).await;
        again.abort();
    }

    #[tokio::test]
    async fn a_hanging_downstream_never_takes_more_than_its_share() {
        // 20 callers against a downstream that hangs until released: at most 3 reach it,
        // 2 wait, 15 fail fast — and a second downstream behind its own bulkhead is free.
        let running = Arc::new(AtomicUsize::new(0));
        let max_running = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let hanging = tower::service_fn({
            let (running, max_running, gate) = (running.clone(), max_running.clone(), gate.clone());
            move |_: u32| {
                let (running, max_running, gate) =
                    (running.clone(), max_running.clone(), gate.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max_running.fetch_max(now, Ordering::SeqCst);
                    gate.acquire().await.map_err(|_| ())?.forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ()>(())
                }
            }
        });
        let b = bulkhead(3, 2);
        let service = b.layer().layer(hanging);
        let mut tasks = Vec::new();
        for i in 0..20 {
            tasks.push(tokio::spawn(service.clone().oneshot(i)));
        }
        until(|| running.load(Ordering::SeqCst) == 3 && b.queued() == 2).await;
        let other = bulkhead(1, 0);
        other
            .call(async { Ok::<_, ()>(()) })
            .await
            .expect("another downstream's bulkhead is unaffected");
        gate.add_permits(5);
        let (mut ok, mut full) = (0, 0);
        for t in tasks {
            match t.await.expect("task") {
                Ok(()) => ok += 1,
                Err(BulkheadError::Full(_)) => full += 1,
                Err(BulkheadError::Inner(())) => panic!("downstream failed"),
            }
        }
        assert_eq!((ok, full), (5, 15));
        assert_eq!(max_running.load(Ordering::SeqCst), 3);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn admissions_and_rejections_are_exported_as_metrics() {
        let recorder = crate::test_metrics::TestRecorder::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let b = bulkhead(1, 0);
                let held = b.acquire().await.expect("slot");
                assert_eq!(recorder.get("weft_bulkhead_in_flight{name=db}"), Some(1.0));
                b.acquire().await.expect_err("full");
                drop(held);
                assert_eq!(recorder.get("weft_bulkhead_in_flight{name=db}"), Some(0.0));
            })
        });
        let total =
            |o: &str| recorder.get(&format!("weft_bulkhead_calls_total{{name=db,outcome={o}}}"));
        assert_eq!(total("admitted"), Some(1.0));
        assert_eq!(total("rejected"), Some(1.0));
    }

    #[test]
    fn config_validation() {
        assert!(BulkheadConfig::new("x").validate().is_ok());
        let zero = BulkheadConfig {
            max_concurrent: 0,
            ..BulkheadConfig::new("x")
        };
        assert!(zero.validate().is_err());
        // The constructor clamps what validation refuses.
        assert_eq!(Bulkhead::new(zero).config().max_concurrent, 1);
    }
}
