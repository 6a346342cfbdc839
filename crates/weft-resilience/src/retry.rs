//! Bounded retry schedules with jitter, and error classification.
//!
//! A [`RetryPolicy`] describes a schedule: the delay before retry `n` (0-based) is drawn
//! under the *ceiling* `min(max_delay, initial_delay × multiplier^n)` according to the
//! [`Jitter`] kind, and the schedule ends after `max_attempts` attempts in total or when
//! the next delay would take the time spent past `max_elapsed`, whichever comes first.
//! Every default is finite: a policy always ends.
//!
//! The jitter kinds follow the AWS Architecture Blog post "Exponential Backoff And Jitter"
//! (Marc Brooker, 2015):
//!
//! - [`Jitter::Full`] (default): `sleep = random_between(0, min(cap, base × multiplier^n))`.
//! - [`Jitter::Decorrelated`]: `sleep = min(cap, random_between(base, previous_sleep × 3))`,
//!   starting from `previous_sleep = base`. The growth factor is the post's 3; `multiplier`
//!   does not apply.
//! - [`Jitter::None`]: the ceiling itself (plain capped exponential backoff), for retry
//!   topics, whose delays must be predictable.
//!
//! `RetryPolicy` is a [`backon::BackoffBuilder`], so any async operation can use it with
//! `backon::Retryable`:
//!
//! ```
//! use backon::Retryable as _;
//! use weft_resilience::{ErrorClass, RetryPolicy};
//! # async fn call() -> Result<u32, std::io::Error> { Ok(1) }
//! # async fn demo() -> Result<(), std::io::Error> {
//! let policy = RetryPolicy::default().with_max_attempts(4);
//! let value = call
//!     .retry(policy)
//!     .when(|e: &std::io::Error| e.kind() == std::io::ErrorKind::TimedOut)
//!     .await?;
//! # let _ = value; Ok(()) }
//! ```
//!
//! [`retry`] does the same with a [`Classify`] and reports the attempts and failure times a
//! dead letter records.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use backon::Retryable as _;
use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::clock::{SharedClock, SystemClock};
use crate::{Clock, Error, Result};

/// What to do with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient (timeouts, 503, connection refused): retry under the policy.
    Retryable,
    /// Permanent (bad input, 4xx, schema mismatch): retrying cannot help; dead-letter now.
    NonRetryable,
    /// Not now: stop retrying in place and set the record aside (a retry topic, or the DLQ
    /// with class `park`) to be redriven later, e.g. a downstream in maintenance or a
    /// breaker that is open. It is not a verdict that the record is bad.
    Park,
}

impl ErrorClass {
    /// The name used in the `weft-dlq-error-class` header: `retryable`, `non-retryable`,
    /// `park`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::NonRetryable => "non-retryable",
            ErrorClass::Park => "park",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "retryable" => Ok(ErrorClass::Retryable),
            "non-retryable" => Ok(ErrorClass::NonRetryable),
            "park" => Ok(ErrorClass::Park),
            _ => Err(Error::InvalidConfig(format!(
                "unknown error class {s:?} (expected retryable, non-retryable or park)"
            ))),
        }
    }
}

/// Classifies errors. Implemented for every `Fn(&E) -> ErrorClass`.
pub trait Classify<E: ?Sized> {
    /// The class of `error`.
    fn classify(&self, error: &E) -> ErrorClass;
}

impl<E: ?Sized, F: Fn(&E) -> ErrorClass> Classify<E> for F {
    fn classify(&self, error: &E) -> ErrorClass {
        self(error)
    }
}

/// How delays are randomised under their ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No randomness: the delay is the ceiling.
    None,
    /// Uniform in `[0, ceiling]` (AWS "full jitter").
    #[default]
    Full,
    /// `min(cap, uniform(base, previous × 3))` (AWS "decorrelated jitter").
    Decorrelated,
}

/// A bounded retry schedule. See the [module docs](self).
///
/// Setters do not check their values (a policy from a config file should go through
/// [`RetryPolicy::validate`]); the schedule itself is always finite and never panics: a
/// `max_attempts` of 0 behaves as 1, a multiplier below 1 as 1, an initial delay above
/// `max_delay` as `max_delay`.
#[derive(Clone)]
pub struct RetryPolicy {
    initial_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    max_attempts: u32,
    max_elapsed: Duration,
    jitter: Jitter,
    seed: Option<u64>,
    clock: SharedClock,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("initial_delay", &self.initial_delay)
            .field("multiplier", &self.multiplier)
            .field("max_delay", &self.max_delay)
            .field("max_attempts", &self.max_attempts)
            .field("max_elapsed", &self.max_elapsed)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for RetryPolicy {
    /// 100 ms initial delay, ×2, capped at 10 s, at most 5 attempts within 60 s, full jitter.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            max_attempts: 5,
            max_elapsed: Duration::from_secs(60),
            jitter: Jitter::Full,
            seed: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Largest values [`RetryPolicy::validate`] accepts.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10_000;
/// Largest `max_elapsed` / `max_delay` [`RetryPolicy::validate`] accepts (7 days).
pub const MAX_DURATION_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

impl RetryPolicy {
    /// The default policy with decorrelated jitter.
    pub fn decorrelated() -> Self {
        RetryPolicy::default().with_jitter(Jitter::Decorrelated)
    }

    /// The first delay's ceiling (and decorrelated jitter's base).
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }
    /// Growth factor of the ceiling per retry (full jitter and none).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }
    /// The cap no delay exceeds.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }
    /// Attempts in total, the first one included (so `max_attempts - 1` delays at most).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }
    /// Time budget: no delay is handed out that would end past it, counting from
    /// [`BackoffBuilder::build`](backon::BackoffBuilder::build) (the larger of the wall time
    /// on the policy's clock and the sum of delays handed out so far).
    pub fn with_max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = elapsed;
        self
    }
    /// The jitter kind.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }
    /// A fixed random seed: every schedule built from this policy draws the same delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// The clock the elapsed budget is measured on.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configured initial delay.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }
    /// The configured multiplier.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }
    /// The configured cap.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
    /// The configured attempt limit (first attempt included).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The configured time budget.
    pub fn max_elapsed(&self) -> Duration {
        self.max_elapsed
    }
    /// The configured jitter kind.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Checks the values a user can get wrong: at least one attempt and at most
    /// [`MAX_ATTEMPTS_LIMIT`], a multiplier in `[1, 100]`, a non-zero initial delay not above
    /// `max_delay`, and `max_delay`, `max_elapsed` at most [`MAX_DURATION_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_LIMIT {
            return bad(format!(
                "max_attempts must be in 1..={MAX_ATTEMPTS_LIMIT}, got {}",
                self.max_attempts
            ));
        }
        if !(1.0..=100.0).contains(&self.multiplier) {
            return bad(format!(
                "multiplier must be in [1, 100], got {}",
                self.multiplier
            ));
        }
        if self.initial_delay.is_zero() {
            return bad("initial_delay must be above zero".into());
        }
        if self.initial_delay > self.max_delay {
            return bad(format!(
                "initial_delay {:?} is above max_delay {:?}",
                self.initial_delay, self.max_delay
            ));
        }
        if self.max_delay > MAX_DURATION_LIMIT || self.max_elapsed > MAX_DURATION_LIMIT {
            return bad(format!(
                "max_delay and max_elapsed must be at most {MAX_DURATION_LIMIT:?}"
            ));
        }
        Ok(())
    }

    /// The ceiling of the delay before retry `retry` (0-based):
    /// `min(max_delay, initial_delay × multiplier^retry)`. Non-decreasing in `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let cap = self.max_delay;
        let initial = self.initial_delay.min(cap);
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let secs = initial.as_secs_f64() * multiplier.powi(retry.min(i32::MAX as u32) as i32);
        if !secs.is_finite() || secs >= cap.as_secs_f64() {
            cap
        } else {
            Duration::from_secs_f64(secs).clamp(initial, cap)
        }
    }

    /// The schedule, as [`BackoffBuilder::build`](backon::BackoffBuilder::build) does.
    pub fn schedule(&self) -> RetryBackoff {
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        RetryBackoff {
            started: self.clock.now(),
            policy: self.clone(),
            rng,
            retries: 0,
            previous: self.initial_delay.min(self.max_delay),
            handed_out: Duration::ZERO,
            done: false,
        }
    }
}

impl backon::BackoffBuilder for RetryPolicy {
    type Backoff = RetryBackoff;
    fn build(self) -> RetryBackoff {
        self.schedule()
    }
}

impl backon::BackoffBuilder for &RetryPolicy {
    type Backoff = RetryBackoff;
    fn build(self) -> RetryBackoff {
        self.schedule()
    }
}

/// One run of a [`RetryPolicy`]: an iterator of delays (a [`backon::Backoff`]); `None`
/// means give up.
#[derive(Debug)]
pub struct RetryBackoff {
    policy: RetryPolicy,
    rng: SmallRng,
    started: Instant,
    retries: u32,
    previous: Duration,
    handed_out: Duration,
    done: bool,
}

impl RetryBackoff {
    /// Delays handed out so far (= retries scheduled).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    fn uniform(&mut self, low: Duration, high: Duration) -> Duration {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let (low, high) = (nanos(low), nanos(high));
        if low >= high {
            return Duration::from_nanos(low);
        }
        Duration::from_nanos(self.rng.random_range(low..=high))
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.done || self.retries.saturating_add(1) >= self.policy.max_attempts.max(1) {
            self.done = true;
            return None;
        }
        let cap = self.policy.max_delay;
        let delay = match self.policy.jitter {
            Jitter::None => self.policy.ceiling(self.retries),
            Jitter::Full => {
                let ceiling = self.policy.ceiling(self.retries);
                self.uniform(Duration::ZERO, ceiling)
            }
            Jitter::Decorrelated => {
                let base = self.policy.initial_delay.min(cap);
                let high = self.previous.saturating_mul(3).max(base);
                let delay = self.uniform(base, high).min(cap);
                self.previous = delay;
                delay
            }
        };
        let elapsed = self.handed_out.max(
            self.policy
                .clock
                .now()
                .saturating_duration_since(self.started),
        );
        if elapsed.saturating_add(delay) > self.policy.max_elapsed {
            self.done = true;
            return None;
        }
        self.handed_out = self.handed_out.saturating_add(delay);
        self.retries += 1;
        Some(delay)
    }
}

/// The last error of a [`retry`] run with what a dead letter records about it.
#[derive(Debug)]
pub struct RetryError<E> {
    /// The last error.
    pub error: E,
    /// Its class: `Retryable` means the policy was exhausted.
    pub class: ErrorClass,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: SystemTime,
    /// When the last attempt failed.
    pub last_failure: SystemTime,
}

impl<E> RetryError<E> {
    /// True when the error was retryable and the policy ran out (attempts or time).
    pub fn exhausted(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} error after {} attempt(s): {}",
            self.class, self.attempts, self.error
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[derive(Debug)]
struct Track {
    attempts: u32,
    first_failure: Option<SystemTime>,
    last_failure: Option<SystemTime>,
}

/// Runs `op` (given the 1-based attempt number) until it succeeds, its error is not
/// [`ErrorClass::Retryable`], or the policy ends; sleeps with `tokio::time::sleep` through
/// backon. Errors come back with their class, the attempt count and the failure times.
pub async fn retry<T, E, Fut, Op, C>(
    policy: &RetryPolicy,
    classify: C,
    mut op: Op,
) -> Result<T, RetryError<E>>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Classify<E>,
{
    let track = Mutex::new(Track {
        attempts: 0,
        first_failure: None,
        last_failure: None,
    });
    let lock = || track.lock().unwrap_or_else(|p| p.into_inner());
    let result = (|| {
        let attempt = {
            let mut t = lock();
            t.attempts += 1;
            t.attempts
        };
        let fut = op(attempt);
        async {
            let result = fut.await;
            if result.is_err() {
                let now = SystemTime::now();
                let mut t = lock();
                t.first_failure.get_or_insert(now);
                t.last_failure = Some(now);
            }
            result
        }
    })
    .retry(policy)
    .sleep(tokio::time::sleep)
    .when(|e| classify.classify(e) == ErrorClass::Retryable)
    .await;
    result.map_err(|error| {
        let t = lock();
        let now = SystemTime::now();
        RetryError {
            class: classify.classify(&error),
            error,
            attempts: t.attempts,
            first_failure: t.first_failure.unwrap_or(now),
            last_failure: t.last_failure.unwrap_or(now),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Transient,
        Permanent,
        Later,
    }

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{self:?}")
        }
    }

    fn classify(e: &Failure) -> ErrorClass {
        match e {
            Failure::Transient => ErrorClass::Retryable,
            Failure::Permanent => ErrorClass::NonRetryable,
            Failure::Later => ErrorClass::Park,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(50))
            .with_max_attempts(4)
            .with_seed(1)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let started = tokio::time::Instant::now();
        let result = retry(&policy(), classify, |attempt| async move {
            if attempt < 3 {
                Err(Failure::Transient)
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!(result.expect("third attempt succeeds"), 3);
        // Two delays were slept (paused time advanced by them), each under its ceiling.
        let slept = started.elapsed();
        assert!(
            slept <= policy().ceiling(0) + policy().ceiling(1),
            "{slept:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_retries_report_attempts_and_failure_times() {
        let err = retry(&policy(), classify, |_| async {
            Err::<(), _>(Failure::Transient)
        })
        .await
        .expect_err("always fails");
        assert_eq!(err.attempts, 4);
        assert_eq!(err.class, ErrorClass::Retryable);
        assert!(err.exhausted());
        assert!(err.first_failure <= err.last_failure);
        assert_eq!(
            err.to_string(),
            "retryable error after 4 attempt(s): Transient"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_and_park_stop_at_once() {
        for (failure, class) in [
            (Failure::Permanent, ErrorClass::NonRetryable),
            (Failure::Later, ErrorClass::Park),
        ] {
            let calls = std::sync::atomic::AtomicU32::new(0);
            let failure = std::sync::Mutex::new(Some(failure));
            let err = retry(&policy(), classify, |_| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let f = failure.lock().expect("lock").take();
                async move { Err::<(), _>(f.unwrap_or(Failure::Transient)) }
            })
            .await
            .expect_err("fails");
            assert_eq!(err.class, class);
            assert_eq!(err.attempts, 1);
            assert!(!err.exhausted());
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backon_retryable_uses_the_policy() {
        use backon::Retryable as _;
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result = (|| async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err::<(), _>(Failure::Transient)
        })
        .retry(policy().with_max_attempts(3))
        .await;
        assert_eq!(result, Err(Failure::Transient));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn validation() {
        let ok = RetryPolicy::default();
        let cases: Vec<(RetryPolicy, Option<&str>)> = vec![
            (ok.clone(), None),
            (ok.clone().with_max_attempts(0), Some("max_attempts")),
            (ok.clone().with_max_attempts(10_001), Some("max_attempts")),
            (ok.clone().with_multiplier(0.5), Some("multiplier")),
            (ok.clone().with_multiplier(f64::NAN), Some("multiplier")),
            (
                ok.clone().with_initial_delay(Duration::ZERO),
                Some("initial_delay"),
            ),
            (
                ok.clone().with_initial_delay(Duration::from_secs(11)),
                Some("above max_delay"),
            ),
            (
                ok.clone()
                    .with_max_elapsed(Duration::from_secs(8 * 24 * 3600)),
                Some("max_elapsed"),
            ),
        ];
        for (policy, expected) in cases {
            match (policy.validate(), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(text)) => assert!(e.to_string().contains(text), "{e} / {text}"),
                (got, want) => panic!("{policy:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn degenerate_values_still_end() {
        let clock = ManualClock::new();
        let p = RetryPolicy::default()
            .with_max_attempts(0)
            .with_clock(clock.clone());
        assert_eq!(p.schedule().count(), 0);
        let p = RetryPolicy::default()
            .with_multiplier(f64::INFINITY)
            .with_jitter(Jitter::None)
            .with_max_attempts(4)
            .with_clock(clock.clone());
        let delays: Vec<_> = p.schedule().collect();
        assert_eq!(delays.len(), 3);
        assert!(delays.iter().all(|d| *d == Duration::from_millis(100)));
        let p = RetryPolicy::default()
            .with_max_elapsed(Duration::ZERO)
            .with_jitter(Jitter::None)
            .with_clock(clock);
        assert_eq!(p.schedule().count(), 0);
    }

    #[test]
    fn error_class_names_round_trip() {
        for class in [
            ErrorClass::Retryable,
            ErrorClass::NonRetryable,
            ErrorClass::Park,
        ] {
            assert_eq!(class.as_str().parse::<ErrorClass>(), Ok(class));
        }
        assert!("fatal".parse::<ErrorClass>().is_err());
    }
}
