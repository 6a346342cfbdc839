//! Circuit breaker: a shared [`Breaker`] and its tower layer ([`BreakerLayer`]).
//!
//! States and transitions (the resilience4j model):
//!
//! - **Closed**: calls pass. Each finished call is recorded in a count-based sliding window
//!   of the last `window_size` calls as failed or not and slow or not (slow = took at least
//!   `slow_call_duration`). Once the window holds at least `minimum_calls` calls, a failure
//!   rate ≥ `failure_rate_threshold` or a slow-call rate ≥ `slow_call_rate_threshold` opens
//!   the breaker.
//! - **Open**: calls are rejected at once with [`BreakerOpen`] (never reaching the
//!   service) for `wait_in_open`; then the breaker goes half-open — on the next call or
//!   state read, or by itself when it was opened inside a tokio runtime (a timer task).
//! - **Half-open**: `permitted_calls_in_half_open` probe calls pass, others are rejected.
//!   When all probes finished, their failure and slow rates against the same thresholds
//!   decide: open again, or closed with an empty window.
//!
//! What is a failure is the caller's predicate over the service's error (a 404 may be a
//! success for the breaker); an `Ok` response is a success. Results of calls admitted
//! before a transition are not counted after it.
//!
//! Observability: [`Breaker::subscribe`] is a `tokio::sync::watch` of the [`BreakerState`]
//! (the consumer runtime pauses partitions while it is `Open`); every transition is logged
//! (`warn` on open, `info` otherwise) and counted; metrics through the `metrics` facade:
//! `weft_breaker_state{name}` (gauge: 0 closed, 1 open, 2 half-open),
//! `weft_breaker_calls_total{name,outcome}` (outcome: `success`, `failure`,
//! `slow_success`, `slow_failure`, `rejected`) and
//! `weft_breaker_transitions_total{name,from,to}`.
//!
//! Time comes from an injected [`Clock`], so tests drive the window and the open wait
//! without sleeping.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::clock::{SharedClock, SystemClock};
use crate::{Clock, Error, Result};

/// Breaker settings. [`BreakerConfig::new`] gives the defaults with a name.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Label in logs and metrics (e.g. the downstream host or webhook endpoint id).
    pub name: String,
    /// Failure rate (0..=1) at or above which the breaker opens. Default 0.5.
    pub failure_rate_threshold: f64,
    /// Slow-call rate (0..=1) at or above which the breaker opens. Default 1.0 (only when
    /// every call in the window is slow).
    pub slow_call_rate_threshold: f64,
    /// A call taking at least this long is slow. Default 5 s.
    pub slow_call_duration: Duration,
    /// Calls in the sliding window. Default 100.
    pub window_size: u32,
    /// Calls recorded before rates are judged (capped at `window_size`). Default 20.
    pub minimum_calls: u32,
    /// How long the breaker stays open before probing. Default 30 s.
    pub wait_in_open: Duration,
    /// Probe calls let through in half-open. Default 5.
    pub permitted_calls_in_half_open: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig::new("default")
    }
}

impl BreakerConfig {
    /// Defaults under a name.
    pub fn new(name: impl Into<String>) -> Self {
        BreakerConfig {
            name: name.into(),
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: Duration::from_secs(5),
            window_size: 100,
            minimum_calls: 20,
            wait_in_open: Duration::from_secs(30),
            permitted_calls_in_half_open: 5,
        }
    }

    /// Checks ranges: thresholds in (0, 1], window, minimum and permitted calls at least 1.
    pub fn validate(&self) -> Result<()> {
        let rate = |v: f64| v > 0.0 && v <= 1.0;
        let bad = |m: String| Err(Error::InvalidConfig(format!("breaker {}: {m}", self.name)));
        if !rate(self.failure_rate_threshold) {
            return bad(format!(
                "failure_rate_threshold must be in (0, 1], got {}",
                self.failure_rate_threshold
            ));
        }
        if !rate(self.slow_call_rate_threshold) {
            return bad(format!(
                "slow_call_rate_threshold must be in (0, 1], got {}",
                self.slow_call_rate_threshold
            ));
        }
        if self.window_size == 0 || self.minimum_calls == 0 {
            return bad("window_size and minimum_calls must be at least 1".into());
        }
        if self.permitted_calls_in_half_open == 0 {
            return bad("permitted_calls_in_half_open must be at least 1".into());
        }
        Ok(())
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass and are recorded.
    Closed,
    /// Calls are rejected.
    Open,
    /// A few probe calls pass.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
    /// The value of the `weft_breaker_state` gauge.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one call ended, as counted in `weft_breaker_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Succeeded in time.
    Success,
    /// Failed in time.
    Failure,
    /// Succeeded, but slowly.
    SlowSuccess,
    /// Failed, slowly.
    SlowFailure,
    /// Not admitted: the breaker was open (or half-open with all probes out).
    Rejected,
}

impl CallOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
            CallOutcome::SlowSuccess => "slow_success",
            CallOutcome::SlowFailure => "slow_failure",
            CallOutcome::Rejected => "rejected",
        }
    }
    fn new(failure: bool, slow: bool) -> Self {
        match (failure, slow) {
            (false, false) => CallOutcome::Success,
            (true, false) => CallOutcome::Failure,
            (false, true) => CallOutcome::SlowSuccess,
            (true, true) => CallOutcome::SlowFailure,
        }
    }
}

/// A call refused because the breaker is open (or half-open with every probe taken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {name} is {state}")]
pub struct BreakerOpen {
    /// The breaker's name.
    pub name: String,
    /// `Open` or `HalfOpen`.
    pub state: BreakerState,
    /// When open: the time left until it probes again.
    pub retry_after: Option<Duration>,
}

/// The error of a call through a breaker.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// Rejected without calling the service.
    #[error(transparent)]
    Open(BreakerOpen),
    /// The service's own error.
    #[error("{0}")]
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The inner error, if the service was called.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Inner(e) => Some(e),
            BreakerError::Open(_) => None,
        }
    }
}

/// Rates over the current window (closed) or the probes so far (half-open).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSnapshot {
    /// The state.
    pub state: BreakerState,
    /// Calls recorded.
    pub calls: u32,
    /// Failed share of them (0 when none).
    pub failure_rate: f64,
    /// Slow share of them (0 when none).
    pub slow_call_rate: f64,
}

#[derive(Debug, Default)]
struct Window {
    calls: VecDeque<(bool, bool)>,
    failures: u32,
    slow: u32,
}

impl Window {
    fn push(&mut self, size: u32, failure: bool, slow: bool) {
        if self.calls.len() >= size as usize
            && let Some((f, s)) = self.calls.pop_front()
        {
            self.failures -= u32::from(f);
            self.slow -= u32::from(s);
        }
        self.calls.push_back((failure, slow));
        self.failures += u32::from(failure);
        self.slow += u32::from(slow);
    }
    fn len(&self) -> u32 {
        self.calls.len() as u32
    }
    fn rates(&self) -> (f64, f64) {
        let n = self.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        (
            f64::from(self.failures) / f64::from(n),
            f64::from(self.slow) / f64::from(n),
        )
    }
    fn clear(&mut self) {
        *self = Window::default();
    }
}

#[derive(Debug)]
struct Core {
    state: BreakerState,
    generation: u64,
    window: Window,
    opened_at: Instant,
    probes_issued: u32,
}

struct Inner {
    config: BreakerConfig,
    clock: SharedClock,
    core: Mutex<Core>,
    state_tx: watch::Sender<BreakerState>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("config", &self.config)
            .field("state", &*self.state_tx.borrow())
            .finish()
    }
}

/// A circuit breaker. Clones share one state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

/// Admission to make one call; record its result with [`Permit::record`]. Dropping it
/// unrecorded (a cancelled call) records nothing and frees its probe slot.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    generation: u64,
    started: Instant,
    recorded: bool,
}

impl Permit {
    /// Records the call's result, measured from admission on the breaker's clock.
    pub fn record(self, failure: bool) -> CallOutcome {
        let elapsed = self
            .inner
            .clock
            .now()
            .saturating_duration_since(self.started);
        self.record_with_duration(failure, elapsed)
    }

    /// Records the call's result with a duration measured by the caller.
    pub fn record_with_duration(mut self, failure: bool, elapsed: Duration) -> CallOutcome {
        self.recorded = true;
        let slow = elapsed >= self.inner.config.slow_call_duration;
        Breaker::record(&self.inner, self.generation, failure, slow)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            let mut core = self.inner.lock();
            if core.generation == self.generation && core.state == BreakerState::HalfOpen {
                core.probes_issued = core.probes_issued.saturating_sub(1);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, outcome: CallOutcome) {
        metrics::counter!(
            "weft_breaker_calls_total",
            "name" => self.config.name.clone(),
            "outcome" => outcome.as_str()
        )
        .increment(1);
    }
}

/// A transition decided under the lock, published after it.
struct Transition {
    from: BreakerState,
    to: BreakerState,
    failure_rate: f64,
    slow_call_rate: f64,
}

impl Breaker {
    /// A closed breaker on the system clock. The config should have passed
    /// [`BreakerConfig::validate`]; out-of-range values are clamped to at least 1 call.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker::with_clock(config, SystemClock)
    }

    /// A closed breaker on the given clock.
    pub fn with_clock(mut config: BreakerConfig, clock: impl Clock) -> Self {
        config.window_size = config.window_size.max(1);
        config.minimum_calls = config.minimum_calls.max(1);
        config.permitted_calls_in_half_open = config.permitted_calls_in_half_open.max(1);
        let clock: SharedClock = Arc::new(clock);
        let (state_tx, _) = watch::channel(BreakerState::Closed);
        metrics::gauge!("weft_breaker_state", "name" => config.name.clone())
            .set(BreakerState::Closed.gauge_value());
        Breaker {
            inner: Arc::new(Inner {
                core: Mutex::new(Core {
                    state: BreakerState::Closed,
                    generation: 0,
                    window: Window::default(),
                    opened_at: clock.now(),
                    probes_issued: 0,
                }),
                config,
                clock,
                state_tx,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The state now (moving open → half-open if the wait is over).
    pub fn state(&self) -> BreakerState {
        self.refresh();
        self.inner.lock().state
    }

    /// The state and the rates it is judged on.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.refresh();
        let core = self.inner.lock();
        let (failure_rate, slow_call_rate) = core.window.rates();
        BreakerSnapshot {
            state: core.state,
            calls: core.window.len(),
            failure_rate,
            slow_call_rate,
        }
    }

    /// A receiver of every state change (current value included).
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.inner.state_tx.subscribe()
    }

    /// Asks to make a call: a [`Permit`], or [`BreakerOpen`] at once.
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let now = self.inner.clock.now();
        let mut transition = None;
        let result = {
            let mut core = self.inner.lock();
            if core.state == BreakerState::Open
                && now >= core.opened_at + self.inner.config.wait_in_open
            {
                transition = Some(Self::to(&mut core, BreakerState::HalfOpen, now, (0.0, 0.0)));
            }
            match core.state {
                BreakerState::Closed => Ok(core.generation),
                BreakerState::HalfOpen
                    if core.probes_issued < self.inner.config.permitted_calls_in_half_open =>
                {
                    core.probes_issued += 1;
                    Ok(core.generation)
                }
                state => Err(BreakerOpen {
                    name: self.inner.config.name.clone(),
                    state,
                    retry_after: (state == BreakerState::Open).then(|| {
                        (core.opened_at + self.inner.config.wait_in_open)
                            .saturating_duration_since(now)
                    }),
                }),
            }
        };
        if let Some(t) = transition {
            Self::publish(&self.inner, t);
        }
        match result {
            Ok(generation) => Ok(Permit {
                inner: self.inner.clone(),
                generation,
                started: now,
                recorded: false,
            }),
            Err(open) => {
                self.inner.count(CallOutcome::Rejected);
                Err(open)
            }
        }
    }

    /// Runs `call` through the breaker; `is_failure` says which errors count as failures.
    pub async fn call<T, E, F>(
        &self,
        is_failure: impl Fn(&E) -> bool,
        call: F,
    ) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(BreakerError::Open)?;
        let result = call.await;
        permit.record(result.as_ref().err().is_some_and(&is_failure));
        result.map_err(BreakerError::Inner)
    }

    /// A tower layer over this breaker; `is_failure` judges the wrapped service's errors.
    pub fn layer<P>(&self, is_failure: P) -> BreakerLayer<P> {
        BreakerLayer {
            breaker: self.clone(),
            is_failure: Arc::new(is_failure),
        }
    }

    fn refresh(&self) {
        Self::refresh_inner(&self.inner);
    }

    fn refresh_inner(inner: &Arc<Inner>) {
        let now = inner.clock.now();
        let transition = {
            let mut core = inner.lock();
            (core.state == BreakerState::Open && now >= core.opened_at + inner.config.wait_in_open)
                .then(|| Self::to(&mut core, BreakerState::HalfOpen, now, (0.0, 0.0)))
        };
        if let Some(t) = transition {
            Self::publish(inner, t);
        }
    }

    fn record(inner: &Arc<Inner>, generation: u64, failure: bool, slow: bool) -> CallOutcome {
        let outcome = CallOutcome::new(failure, slow);
        inner.count(outcome);
        let config = &inner.config;
        let now = inner.clock.now();
        let transition = {
            let mut core = inner.lock();
            if core.generation != generation {
                None
            } else {
                match core.state {
                    BreakerState::Closed => {
                        core.window.push(config.window_size, failure, slow);
                        let judged =
                            core.window.len() >= config.minimum_calls.min(config.window_size);
                        let rates = core.window.rates();
                        (judged && Self::over(config, rates))
                            .then(|| Self::to(&mut core, BreakerState::Open, now, rates))
                    }
                    BreakerState::HalfOpen => {
                        core.window
                            .push(config.permitted_calls_in_half_open, failure, slow);
                        if core.window.len() >= config.permitted_calls_in_half_open {
                            let rates = core.window.rates();
                            let to = if Self::over(config, rates) {
                                BreakerState::Open
                            } else {
                                BreakerState::Closed
                            };
                            Some(Self::to(&mut core, to, now, rates))
                        } else {
                            None
                        }
                    }
                    BreakerState::Open => None,
                }
            }
        };
        if let Some(t) = transition {
            Self::publish(inner, t);
        }
        outcome
    }

    fn over(config: &BreakerConfig, (failure_rate, slow_rate): (f64, f64)) -> bool {
        failure_rate >= config.failure_rate_threshold
            || slow_rate >= config.slow_call_rate_threshold
    }

    fn to(core: &mut Core, to: BreakerState, now: Instant, rates: (f64, f64)) -> Transition {
        let from = core.state;
        core.state = to;
        core.generation += 1;
        core.window.clear();
        core.probes_issued = 0;
        if to == BreakerState::Open {
            core.opened_at = now;
        }
        Transition {
            from,
            to,
            failure_rate: rates.0,
            slow_call_rate: rates.1,
        }
    }

    fn publish(inner: &Arc<Inner>, t: Transition) {
        let name = inner.config.name.as_str();
        if t.to == BreakerState::Open {
            tracing::warn!(
                breaker = name,
                from = t.from.as_str(),
                failure_rate = t.failure_rate,
                slow_call_rate = t.slow_call_rate,
                wait_ms = inner.config.wait_in_open.as_millis() as u64,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                breaker = name,
                from = t.from.as_str(),
                to = t.to.as_str(),
                "circuit breaker state changed"
            );
        }
        metrics::gauge!("weft_breaker_state", "name" => name.to_owned()).set(t.to.gauge_value());
        metrics::counter!(
            "weft_breaker_transitions_total",
            "name" => name.to_owned(),
            "from" => t.from.as_str(),
            "to" => t.to.as_str()
        )
        .increment(1);
        inner.state_tx.send_replace(t.to);
        if t.to == BreakerState::Open
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Move to half-open by itself, so a watcher that stopped calling (a paused
            // partition) sees the probe window open.
            let weak: Weak<Inner> = Arc::downgrade(inner);
            let wait = inner.config.wait_in_open;
            runtime.spawn(async move {
                tokio::time::sleep(wait).await;
                if let Some(inner) = weak.upgrade() {
                    Breaker::refresh_inner(&inner);
                }
            });
        }
    }
}

/// Tower layer that puts a [`Breaker`] in front of a service. Made by [`Breaker::layer`];
/// all services it wraps share the breaker.
pub struct BreakerLayer<P> {
    breaker: Breaker,
    is_failure: Arc<P>,
}

impl<P> BreakerLayer<P> {
    /// A layer over `breaker`; `is_failure` judges the wrapped service's errors.
    pub fn new(breaker: Breaker, is_failure: P) -> Self {
        breaker.layer(is_failure)
    }
}

impl<P> Clone for BreakerLayer<P> {
    fn clone(&self) -> Self {
        BreakerLayer {
            breaker: self.breaker.clone(),
            is_failure: self.is_failure.clone(),
        }
    }
}

impl<P> fmt::Debug for BreakerLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl<S, P> tower::Layer<S> for BreakerLayer<P> {
    type Service = BreakerService<S, P>;
    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            is_failure: self.is_failure.clone(),
        }
    }
}

/// A service behind a [`Breaker`]: rejected calls fail with [`BreakerError::Open`] without
/// reaching it.
pub struct BreakerService<S, P> {
    inner: S,
    breaker: Breaker,
    is_failure: Arc<P>,
}

impl<S: Clone, P> Clone for BreakerService<S, P> {
    fn clone(&self) -> Self {
        BreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            is_failure: self.is_failure.clone(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for BreakerService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl<S, P> BreakerService<S, P> {
    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, P, Req> tower::Service<Req> for BreakerService<S, P>
where
    S: tower::Service<Req>,
    P: Fn(&S::Error) -> bool,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = BreakerFuture<S::Future, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire() {
            Ok(permit) => BreakerFuture {
                state: FutureState::Running {
                    future: Box::pin(self.inner.call(req)),
                    permit: Some(permit),
                    is_failure: self.is_failure.clone(),
                },
            },
            Err(open) => BreakerFuture {
                state: FutureState::Rejected(Some(open)),
            },
        }
    }
}

/// The response future of a [`BreakerService`].
pub struct BreakerFuture<F, P> {
    state: FutureState<F, P>,
}

enum FutureState<F, P> {
    Running {
        future: Pin<Box<F>>,
        permit: Option<Permit>,
        is_failure: Arc<P>,
    },
    Rejected(Option<BreakerOpen>),
}

impl<F, P> fmt::Debug for BreakerFuture<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BreakerFuture")
    }
}

impl<F, P, T, E> Future for BreakerFuture<F, P>
where
    F: Future<Output = Result<T, E>>,
    P: Fn(&E) -> bool,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            FutureState::Rejected(open) => match open.take() {
                Some(open) => Poll::Ready(Err(BreakerError::Open(open))),
                None => Poll::Pending,
            },
            FutureState::Running {
                future,
                permit,
                is_failure,
            } => {
                let result = std::task::ready!(future.as_mut().poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(result.as_ref().err().is_some_and(|e| is_failure(e)));
                }
                Poll::Ready(result.map_err(BreakerError::Inner))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::ManualClock;

    const SLOW: Duration = Duration::from_secs(5);
    const FAST: Duration = Duration::from_millis(1);

    fn config() -> BreakerConfig {
        BreakerConfig {
            window_size: 10,
            minimum_calls: 4,
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 0.5,
            slow_call_duration: SLOW,
            wait_in_open: Duration::from_secs(30),
            permitted_calls_in_half_open: 2,
            ..BreakerConfig::new("test")
        }
    }

    fn breaker() -> (Breaker, ManualClock) {
        let clock = ManualClock::new();
        (Breaker::with_clock(config(), clock.clone()), clock)
    }

    /// Records one call: `F` failed, `S` succeeded, `f`/`s` the same but slow.
    fn calls(breaker: &Breaker, pattern: &str) {
        for c in pattern.chars() {
            let permit = breaker.try_acquire().expect("admitted");
            let (failure, took) = match c {
                'F' => (true, FAST),
                'S' => (false, FAST),
                'f' => (true, SLOW),
                's' => (false, SLOW),
                _ => panic!("bad pattern {c}"),
            };
            permit.record_with_duration(failure, took);
        }
    }

    #[test]
    fn opens_on_failure_rate_only_after_minimum_calls() {
        // (pattern, state after it)
        let cases = [
            ("FFF", BreakerState::Closed),        // 100 % but only 3 calls
            ("FFFS", BreakerState::Open),         // 75 % of 4
            ("SSSF", BreakerState::Closed),       // 25 %
            ("SSFF", BreakerState::Open),         // exactly 50 %: at the threshold opens
            ("SSSSSSFFFS", BreakerState::Closed), // 30 % of 10
            ("sssS", BreakerState::Open),         // 75 % slow
            ("ssSS", BreakerState::Open),         // 50 % slow
            ("sSSS", BreakerState::Closed),       // 25 % slow
            ("fSSS", BreakerState::Closed),       // 25 % failed, 25 % slow
        ];
        for (pattern, expected) in cases {
            let (b, _) = breaker();
            calls(&b, pattern);
            assert_eq!(b.state(), expected, "{pattern}");
        }
    }

    #[test]
    fn the_window_slides_over_the_last_calls() {
        let (b, _) = breaker();
        // 4 failures among the first 10 (40 %), then successes push them out one by one;
        // each new failure is judged against the last 10 calls only.
        calls(&b, "SSSSSSFFFF");
        assert_eq!(b.snapshot().calls, 10);
        assert!((b.snapshot().failure_rate - 0.4).abs() < 1e-9);
        calls(&b, "SSSSSS");
        assert!((b.snapshot().failure_rate - 0.4).abs() < 1e-9, "FFFFSSSSSS");
        calls(&b, "SSSS");
        assert_eq!(b.snapshot().failure_rate, 0.0);
        assert_eq!(b.snapshot().calls, 10);
        calls(&b, "FFFF");
        assert_eq!(b.state(), BreakerState::Closed, "40 % in the window");
        calls(&b, "F");
        assert_eq!(b.state(), BreakerState::Open, "50 % in the window");
    }

    #[test]
    fn open_rejects_fast_then_half_open_probes_close_it() {
        let (b, clock) = breaker();
        let mut rx = b.subscribe();
        calls(&b, "FFFF");
        assert_eq!(*rx.borrow_and_update(), BreakerState::Open);
        let rejected = b.try_acquire().expect_err("open");
        assert_eq!(rejected.state, BreakerState::Open);
        assert_eq!(rejected.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(rejected.to_string(), "circuit breaker test is open");

        clock.advance(Duration::from_secs(29));
        let rejected = b.try_acquire().expect_err("still open");
        assert_eq!(rejected.retry_after, Some(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(*rx.borrow_and_update(), BreakerState::HalfOpen);

        let p1 = b.try_acquire().expect("probe 1");
        let p2 = b.try_acquire().expect("probe 2");
        let third = b.try_acquire().expect_err("only two probes");
        assert_eq!(third.state, BreakerState::HalfOpen);
        assert_eq!(third.retry_after, None);
        p1.record_with_duration(false, FAST);
        assert_eq!(b.state(), BreakerState::HalfOpen, "one probe still out");
        p2.record_with_duration(false, FAST);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(*rx.borrow_and_update(), BreakerState::Closed);
        assert_eq!(b.snapshot().calls, 0, "closed starts with an empty window");
    }

    #[test]
    fn failing_probes_open_it_again() {
        for probes in [[true, true], [true, false], [false, true]] {
            let (b, clock) = breaker();
            calls(&b, "FFFF");
            clock.advance(Duration::from_secs(30));
            let permits = [b.try_acquire().expect("p"), b.try_acquire().expect("p")];
            for (permit, failure) in permits.into_iter().zip(probes) {
                permit.record_with_duration(failure, FAST);
            }
            // 50 % or more of the probes failed: open again, for a full wait.
            assert_eq!(b.state(), BreakerState::Open, "{probes:?}");
            clock.advance(Duration::from_secs(29));
            assert_eq!(b.state(), BreakerState::Open);
        }
        // Slow probes open it too.
        let (b, clock) = breaker();
        calls(&b, "FFFF");
        clock.advance(Duration::from_secs(30));
        calls(&b, "ss");
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_cancelled_probe_frees_its_slot_and_stale_results_do_not_count() {
        let (b, clock) = breaker();
        let stale = b.try_acquire().expect("closed");
        calls(&b, "FFFF");
        // A call admitted while closed finishes after the breaker opened: not counted.
        stale.record_with_duration(false, FAST);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(30));
        let p1 = b.try_acquire().expect("probe");
        let p2 = b.try_acquire().expect("probe");
        drop(p1);
        let p3 = b
            .try_acquire()
            .expect("the dropped probe's slot is free again");
        p2.record_with_duration(false, FAST);
        p3.record_with_duration(false, FAST);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn permit_measures_duration_on_the_clock() {
        let (b, clock) = breaker();
        for _ in 0..4 {
            let permit = b.try_acquire().expect("closed");
            clock.advance(SLOW);
            assert_eq!(permit.record(false), CallOutcome::SlowSuccess);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn config_validation() {
        let cases: Vec<(BreakerConfig, bool)> = vec![
            (config(), true),
            (BreakerConfig::new("x"), true),
            (
                BreakerConfig {
                    failure_rate_threshold: 0.0,
                    ..config()
                },
                false,
            ),
            (
                BreakerConfig {
                    failure_rate_threshold: 1.5,
                    ..config()
                },
                false,
            ),
            (
                BreakerConfig {
                    slow_call_rate_threshold: f64::NAN,
                    ..config()
                },
                false,
            ),
            (
                BreakerConfig {
                    window_size: 0,
                    ..config()
                },
                false,
            ),
            (
                BreakerConfig {
                    minimum_calls: 0,
                    ..config()
                },
                false,
            ),
            (
                BreakerConfig {
                    permitted_calls_in_half_open: 0,
                    ..config()
                },
                false,
            ),
        ];
        for (config, ok) in cases {
            assert_eq!(config.validate().is_ok(), ok, "{config:?}");
        }
    }

    #[test]
    fn state_changes_and_outcomes_are_exported_as_metrics() {
        let recorder = crate::test_metrics::TestRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            let (b, clock) = breaker();
            let state = || recorder.get("weft_breaker_state{name=test}");
            assert_eq!(state(), Some(0.0));
            calls(&b, "SsFF");
            assert_eq!(state(), Some(1.0));
            b.try_acquire().expect_err("open");
            clock.advance(Duration::from_secs(30));
            assert_eq!(b.state(), BreakerState::HalfOpen);
            assert_eq!(state(), Some(2.0));
            calls(&b, "SS");
            assert_eq!(state(), Some(0.0));
            let calls_total = |outcome: &str| {
                recorder.get(&format!(
                    "weft_breaker_calls_total{{name=test,outcome={outcome}}}"
                ))
            };
            assert_eq!(calls_total("success"), Some(3.0));
            assert_eq!(calls_total("slow_success"), Some(1.0));
            assert_eq!(calls_total("failure"), Some(2.0));
            assert_eq!(calls_total("rejected"), Some(1.0));
            assert_eq!(calls_total("slow_failure"), None);
            let transitions = |from: &str, to: &str| {
                recorder.get(&format!(
                    "weft_breaker_transitions_total{{name=test,from={from},to={to}}}"
                ))
            };
            assert_eq!(transitions("closed", "open"), Some(1.0));
            assert_eq!(transitions("open", "half_open"), Some(1.0));
            assert_eq!(transitions("half_open", "closed"), Some(1.0));
        });
    }

    #[derive(Debug, PartialEq)]
    enum DownstreamError {
        Unavailable,
        NotFound,
    }

    #[tokio::test]
    async fn tower_layer_counts_failures_by_predicate_and_rejects_without_calling() {
        let clock = ManualClock::new();
        let breaker = Breaker::with_clock(config(), clock.clone());
        let reached = Arc::new(AtomicU32::new(0));
        let counter = reached.clone();
        let downstream = tower::service_fn(move |req: &'static str| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match req {
                    "down" => Err(DownstreamError::Unavailable),
                    "missing" => Err(DownstreamError::NotFound),
                    _ => Ok(req.len()),
                }
            }
        });
        // A 404 is the downstream working: not a breaker failure.
        let layer = breaker.layer(|e: &DownstreamError| *e == DownstreamError::Unavailable);
        let service = layer.layer(downstream);

        for _ in 0..6 {
            let e = service.clone().oneshot("missing").await.expect_err("404");
            assert!(matches!(e, BreakerError::Inner(DownstreamError::NotFound)));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(service.clone().oneshot("ok").await.expect("ok"), 2);
        for i in 0..5 {
            assert_eq!(breaker.state(), BreakerState::Closed, "after {i} failures");
            let e = service.clone().oneshot("down").await.expect_err("503");
            assert!(matches!(
                e,
                BreakerError::Inner(DownstreamError::Unavailable)
            ));
        }
        // 5 failures in the last 10 calls (4 × 404, 1 × ok, 5 × 503).
        assert_eq!(breaker.state(), BreakerState::Open);
        let before = reached.load(Ordering::SeqCst);
        let e = service.clone().oneshot("ok").await.expect_err("open");
        match e {
            BreakerError::Open(open) => assert_eq!(open.name, "test"),
            other => panic!("expected BreakerOpen, got {other:?}"),
        }
        assert_eq!(
            reached.load(Ordering::SeqCst),
            before,
            "rejected calls never reach it"
        );

        clock.advance(Duration::from_secs(30));
        for _ in 0..2 {
            assert_eq!(service.clone().oneshot("ok").await.expect("probe"), 2);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opened_in_a_runtime_it_goes_half_open_by_itself() {
        // The system clock follows tokio's paused clock: the watcher is told about
        // half-open without anyone calling (a consumer with paused partitions).
        let breaker = Breaker::new(config());
        let mut rx = breaker.subscribe();
        let failing = breaker.call(|_: &()| true, async { Err::<(), ()>(()) });
        failing.await.expect_err("fails");
        for _ in 0..3 {
            breaker
                .call(|_: &()| true, async { Err::<(), ()>(()) })
                .await
                .expect_err("fails");
        }
        rx.changed().await.expect("sender alive");
        assert_eq!(*rx.borrow_and_update(), BreakerState::Open);
        let opened = tokio::time::Instant::now();
        rx.changed().await.expect("sender alive");
        assert_eq!(*rx.borrow_and_update(), BreakerState::HalfOpen);
        assert_eq!(opened.elapsed(), Duration::from_secs(30));
    }
}
