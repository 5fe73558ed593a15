//! When to try Redis again after a failure: 0.1 s, doubling up to 5 s,
//! each delay spread by ±20 % so that many processes that lost the same
//! server do not come back in step.

use std::time::Duration;

const FIRST: f64 = 0.1;
const MAX: f64 = 5.0;
const SPREAD: f64 = 0.2;

#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay after one more failure; `jitter` is uniform in [0, 1).
    pub fn next(&mut self, jitter: f64) -> Duration {
        let base = (FIRST * 2f64.powi(self.failures.min(16) as i32)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        let spread = 1.0 - SPREAD + 2.0 * SPREAD * jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64((base * spread).min(MAX))
    }

    /// Connected: the next failure starts from the first delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<f64> = (0..10).map(|_| b.next(0.5).as_secs_f64()).collect();
        let want = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0];
        for (got, want) in delays.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        b.reset();
        assert!((b.next(0.5).as_secs_f64() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let lo = Backoff::default().next(0.0).as_secs_f64();
        let hi = Backoff::default().next(0.999_999).as_secs_f64();
        assert!((lo - 0.08).abs() < 1e-9 && (hi - 0.12).abs() < 1e-6);
        let mut b = Backoff { failures: 40 };
        assert!(b.next(0.999_999).as_secs_f64() <= MAX);
    }
}
