//! A connection's one timer: when it is due, and a generation that tells
//! the binding to re-arm its watcher whenever it moves.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(super) struct Deadline {
    at: Option<Instant>,
    generation: u32,
}

impl Deadline {
    pub(super) fn at(&self) -> Option<Instant> {
        self.at
    }

    pub(super) fn generation(&self) -> u32 {
        self.generation
    }

    /// Due `after` from now, or never.
    pub(super) fn set(&mut self, after: Option<Duration>) {
        self.set_at(after.map(|d| later(Instant::now(), d)));
    }

    pub(super) fn set_at(&mut self, at: Option<Instant>) {
        self.at = at;
        self.bump();
    }

    /// The watcher fired early: have the binding re-arm it for the time
    /// left.
    pub(super) fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }
}

/// `from + d`, or a point so far ahead that it never comes when the sum
/// does not fit in an `Instant`.
pub(super) fn later(from: Instant, d: Duration) -> Instant {
    from.checked_add(d)
        .or_else(|| from.checked_add(FAR_AHEAD))
        .unwrap_or(from)
}

/// Longer than any timeout the binding accepts (10^9 s).
const FAR_AHEAD: Duration = Duration::from_secs(1 << 40);

#[cfg(test)]
mod tests {
    //! Every move of the deadline is a new generation.

    use super::*;

    #[test]
    fn each_move_is_a_new_generation() {
        let mut d = Deadline::default();
        assert_eq!((d.at(), d.generation()), (None, 0));
        d.set(Some(Duration::from_secs(1)));
        assert!(d.at().is_some_and(|at| at > Instant::now()));
        assert_eq!(d.generation(), 1);
        d.set(None);
        assert_eq!((d.at(), d.generation()), (None, 2));
        d.bump();
        assert_eq!((d.at(), d.generation()), (None, 3));
    }

    #[test]
    fn a_sum_too_far_ahead_never_comes() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(1 << 39));
    }
}
