//! Property tests of the retry schedule: bounds, budgets, monotone ceilings, and a
//! chi-square check that jitter is uniform where the definitions say it is.

use std::time::Duration;

use proptest::prelude::*;
use weft_resilience::{Jitter, ManualClock, RetryPolicy};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Decorrelated)
    ]
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (
        1u64..5_000,   // initial delay, ms
        1.0f64..10.0,  // multiplier
        1u64..60_000,  // max delay, ms
        0u32..40,      // max attempts (0 behaves as 1)
        0u64..300_000, // max elapsed, ms
        jitter(),
        any::<u64>(),
    )
        .prop_map(
            |(initial, multiplier, cap, attempts, elapsed, jitter, seed)| {
                RetryPolicy::default()
                    .with_initial_delay(Duration::from_millis(initial))
                    .with_multiplier(multiplier)
                    .with_max_delay(Duration::from_millis(cap))
                    .with_max_attempts(attempts)
                    .with_max_elapsed(Duration::from_millis(elapsed))
                    .with_jitter(jitter)
                    .with_seed(seed)
                    .with_clock(ManualClock::new())
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn schedule_stays_within_its_bounds(policy in policy()) {
        let cap = policy.max_delay();
        let base = policy.initial_delay().min(cap);
        let delays: Vec<Duration> = policy.schedule().collect();
        // Attempts bounded: at most max_attempts - 1 delays (max_attempts 0 acts as 1).
        prop_assert!((delays.len() as u32) < policy.max_attempts().max(1));
        // Elapsed budget (the manual clock stands still, so the delays are the time spent).
        prop_assert!(delays.iter().sum::<Duration>() <= policy.max_elapsed());
        let mut previous = base;
        for (i, &d) in delays.iter().enumerate() {
            prop_assert!(d <= cap, "delay {d:?} above cap {cap:?}");
            let ceiling = policy.ceiling(i as u32);
            match policy.jitter() {
                Jitter::None => prop_assert_eq!(d, ceiling),
                Jitter::Full => prop_assert!(d <= ceiling, "{d:?} > ceiling {ceiling:?}"),
                Jitter::Decorrelated => {
                    prop_assert!(d >= base, "{d:?} below base {base:?}");
                    prop_assert!(d <= previous * 3, "{d:?} above 3 × {previous:?}");
                    previous = d;
                }
            }
        }
        // The schedule is over once it said so.
        let mut schedule = policy.schedule();
        while schedule.next().is_some() {}
        prop_assert_eq!(schedule.next(), None);
    }

    #[test]
    fn ceilings_are_monotone_and_capped(policy in policy()) {
        let mut last = Duration::ZERO;
        for n in 0..200 {
            let c = policy.ceiling(n);
            prop_assert!(c >= last, "ceiling({n}) = {c:?} < {last:?}");
            prop_assert!(c <= policy.max_delay());
            last = c;
        }
        prop_assert_eq!(policy.ceiling(u32::MAX), policy.max_delay().max(policy.ceiling(0)));
    }

    #[test]
    fn wall_time_counts_against_the_budget(
        policy in policy(),
        work in proptest::collection::vec(0u64..20_000, 1..40),
    ) {
        // The clock moves by the operation's time (plus the delay, as a caller that sleeps
        // would): no delay may end past the budget.
        let clock = ManualClock::new();
        let policy = policy.with_clock(clock.clone());
        let mut schedule = policy.schedule();
        let mut spent = Duration::ZERO;
        for ms in work {
            let work = Duration::from_millis(ms);
            clock.advance(work);
            spent += work;
            match schedule.next() {
                Some(d) => {
                    prop_assert!(spent + d <= policy.max_elapsed(), "{spent:?} + {d:?}");
                    clock.advance(d);
                    spent += d;
                }
                None => break,
            }
        }
    }
}

/// Pearson's chi-square statistic of `samples` (each in [0, 1]) against the uniform
/// distribution over `BUCKETS` equal buckets.
const BUCKETS: usize = 10;
/// The 0.999 quantile of chi-square with 9 degrees of freedom: a uniform sample fails
/// with probability 0.001, and the seeds below are fixed.
const CHI2_CRITICAL_9DF: f64 = 27.877;

fn chi_square(samples: &[f64]) -> f64 {
    let mut counts = [0usize; BUCKETS];
    for &s in samples {
        assert!((0.0..=1.0).contains(&s), "sample {s} outside [0, 1]");
        counts[((s * BUCKETS as f64) as usize).min(BUCKETS - 1)] += 1;
    }
    let expected = samples.len() as f64 / BUCKETS as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn chi_square_check_rejects_skewed_samples() {
    // The check must be able to fail: a squared uniform, a constant and a half range fail.
    let n = 10_000;
    let uniform: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
    assert!(chi_square(&uniform) < CHI2_CRITICAL_9DF);
    let squared: Vec<f64> = uniform.iter().map(|u| u * u).collect();
    assert!(chi_square(&squared) > CHI2_CRITICAL_9DF);
    let constant = vec![1.0; n];
    assert!(chi_square(&constant) > CHI2_CRITICAL_9DF);
    let half: Vec<f64> = uniform.iter().map(|u| u / 2.0).collect();
    assert!(chi_square(&half) > CHI2_CRITICAL_9DF);
}

#[test]
fn full_jitter_is_uniform_under_each_ceiling() {
    // Delay / ceiling over many seeded schedules with growing ceilings.
    let mut samples = Vec::new();
    for seed in 0..2_000u64 {
        let policy = RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(100))
            .with_multiplier(2.0)
            .with_max_delay(Duration::from_secs(2))
            .with_max_attempts(8)
            .with_max_elapsed(Duration::from_secs(3600))
            .with_seed(seed)
            .with_clock(ManualClock::new());
        for (i, d) in policy.schedule().enumerate() {
            samples.push(d.as_secs_f64() / policy.ceiling(i as u32).as_secs_f64());
        }
    }
    assert_eq!(samples.len(), 2_000 * 7);
    let chi2 = chi_square(&samples);
    assert!(
        chi2 < CHI2_CRITICAL_9DF,
        "chi-square {chi2} (full jitter not uniform)"
    );
    // And not degenerate: the mean of a uniform on [0, 1] is 1/2.
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
}

#[test]
fn decorrelated_jitter_is_uniform_between_base_and_three_times_the_last() {
    let base = Duration::from_millis(10);
    let mut samples = Vec::new();
    for seed in 0..2_000u64 {
        let policy = RetryPolicy::decorrelated()
            .with_initial_delay(base)
            // A cap that is never reached in 6 steps (10 ms × 3^6 < 8 s).
            .with_max_delay(Duration::from_secs(3600))
            .with_max_attempts(7)
            .with_max_elapsed(Duration::from_secs(7 * 24 * 3600))
            .with_seed(seed)
            .with_clock(ManualClock::new());
        let mut previous = base;
        for d in policy.schedule() {
            let high = previous * 3;
            samples.push((d - base).as_secs_f64() / (high - base).as_secs_f64());
            previous = d;
        }
    }
    assert_eq!(samples.len(), 2_000 * 6);
    let chi2 = chi_square(&samples);
    assert!(
        chi2 < CHI2_CRITICAL_9DF,
        "chi-square {chi2} (decorrelated not uniform)"
    );
}

#[test]
fn a_seed_fixes_the_schedule_and_different_seeds_differ() {
    let policy = RetryPolicy::default()
        .with_seed(7)
        .with_clock(ManualClock::new());
    let a: Vec<_> = policy.schedule().collect();
    let b: Vec<_> = policy.schedule().collect();
    assert_eq!(a, b);
    let c: Vec<_> = policy.clone().with_seed(8).schedule().collect();
    assert_ne!(a, c);
    // Unseeded policies draw from the OS: two schedules almost surely differ.
    let unseeded = RetryPolicy::default()
        .with_max_attempts(10)
        .with_clock(ManualClock::new());
    let x: Vec<_> = unseeded.schedule().collect();
    let y: Vec<_> = unseeded.schedule().collect();
    assert_ne!(x, y);
}

#[test]
fn defaults_are_bounded() {
    let policy = RetryPolicy::default();
    policy.validate().expect("defaults are valid");
    assert_eq!(policy.max_attempts(), 5);
    assert_eq!(policy.max_elapsed(), Duration::from_secs(60));
    assert_eq!(policy.max_delay(), Duration::from_secs(10));
    assert_eq!(policy.jitter(), Jitter::Full);
    let delays: Vec<_> = policy.with_clock(ManualClock::new()).schedule().collect();
    assert_eq!(delays.len(), 4);
}
