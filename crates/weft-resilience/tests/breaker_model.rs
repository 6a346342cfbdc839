//! The breaker against a simple model: a list of every recorded call, judged from scratch
//! after each one. Random configurations and call sequences (failed, slow, clock moves,
//! probes) must give the same state, rates and admissions.

use std::time::Duration;

use proptest::prelude::*;
use weft_resilience::{Breaker, BreakerConfig, BreakerState, ManualClock};

#[derive(Debug, Clone, Copy)]
enum Step {
    /// A call that fails or not, slow or not.
    Call { failed: bool, slow: bool },
    /// Time passes (seconds).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<bool>(), any::<bool>()).prop_map(|(failed, slow)| Step::Call { failed, slow }),
        1 => (0u64..40).prop_map(Step::Wait),
    ]
}

/// The model: the state, the calls recorded since the last transition, when it opened.
struct Model {
    config: BreakerConfig,
    state: BreakerState,
    calls: Vec<(bool, bool)>,
    opened_at: u64,
    now: u64,
}

impl Model {
    fn over(&self, calls: &[(bool, bool)]) -> bool {
        let n = calls.len() as f64;
        let failed = calls.iter().filter(|c| c.0).count() as f64;
        let slow = calls.iter().filter(|c| c.1).count() as f64;
        failed / n >= self.config.failure_rate_threshold
            || slow / n >= self.config.slow_call_rate_threshold
    }

    fn to(&mut self, state: BreakerState) {
        self.state = state;
        self.calls.clear();
        if state == BreakerState::Open {
            self.opened_at = self.now;
        }
    }

    fn refresh(&mut self) {
        if self.state == BreakerState::Open
            && self.now >= self.opened_at + self.config.wait_in_open.as_secs()
        {
            self.to(BreakerState::HalfOpen);
        }
    }

    /// Whether a call is admitted; records it if so.
    fn call(&mut self, failed: bool, slow: bool) -> bool {
        self.refresh();
        match self.state {
            BreakerState::Open => false,
            BreakerState::Closed => {
                self.calls.push((failed, slow));
                let size = self.config.window_size as usize;
                let window = &self.calls[self.calls.len().saturating_sub(size)..];
                let judged =
                    window.len() >= self.config.minimum_calls.min(self.config.window_size) as usize;
                if judged && self.over(window) {
                    self.to(BreakerState::Open);
                }
                true
            }
            BreakerState::HalfOpen => {
                // Probes are recorded one at a time here, so a slot is always free.
                self.calls.push((failed, slow));
                if self.calls.len() >= self.config.permitted_calls_in_half_open as usize {
                    let open = self.over(&self.calls.clone());
                    self.to(if open {
                        BreakerState::Open
                    } else {
                        BreakerState::Closed
                    });
                }
                true
            }
        }
    }
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (1u32..20, 1u32..25, 1u32..=10, 1u32..=10, 1u32..6, 1u64..60).prop_map(
        |(window, minimum, failure, slow, probes, wait)| BreakerConfig {
            window_size: window,
            minimum_calls: minimum,
            failure_rate_threshold: f64::from(failure) / 10.0,
            slow_call_rate_threshold: f64::from(slow) / 10.0,
            slow_call_duration: Duration::from_secs(1),
            wait_in_open: Duration::from_secs(wait),
            permitted_calls_in_half_open: probes,
            ..BreakerConfig::new("model")
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn breaker_follows_the_model(config in config(), steps in proptest::collection::vec(step(), 1..200)) {
        let clock = ManualClock::new();
        let breaker = Breaker::with_clock(config.clone(), clock.clone());
        let watch = breaker.subscribe();
        let mut model = Model { config, state: BreakerState::Closed, calls: Vec::new(), opened_at: 0, now: 0 };
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Wait(secs) => {
                    clock.advance(Duration::from_secs(secs));
                    model.now += secs;
                }
                Step::Call { failed, slow } => {
                    let admitted = model.call(failed, slow);
                    match breaker.try_acquire() {
                        Ok(permit) => {
                            prop_assert!(admitted, "step {}: admitted, model rejects", i);
                            let took = if slow { Duration::from_secs(1) } else { Duration::ZERO };
                            permit.record_with_duration(failed, took);
                        }
                        Err(open) => {
                            prop_assert!(!admitted, "step {}: rejected ({}), model admits", i, open);
                            prop_assert_eq!(open.state, BreakerState::Open);
                        }
                    }
                }
            }
            model.refresh();
            prop_assert_eq!(breaker.state(), model.state, "step {}", i);
            prop_assert_eq!(*watch.borrow(), model.state, "watch at step {}", i);
            if model.state == BreakerState::Closed {
                let size = model.config.window_size as usize;
                let window = &model.calls[model.calls.len().saturating_sub(size)..];
                let snapshot = breaker.snapshot();
                prop_assert_eq!(snapshot.calls as usize, window.len());
                if !window.is_empty() {
                    let failed = window.iter().filter(|c| c.0).count() as f64 / window.len() as f64;
                    prop_assert!((snapshot.failure_rate - failed).abs() < 1e-9);
                }
            }
        }
    }
}
