//! Sparsity schedules: pure functions of the round or the step.

/// When a strategy reaches its target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The whole target in the first round.
    OneShot,
    /// `rounds` rounds, each pruning the same fraction of the surviving weights.
    Iterative { rounds: usize },
    /// Zhu & Gupta (2017), inside the training of one round: from `initial` at step `start` to
    /// the target at step `end`, updated every `frequency` steps.
    Agp { initial: f64, start: usize, end: usize, frequency: usize },
}

impl Schedule {
    pub fn rounds(&self) -> usize {
        match self {
            Schedule::OneShot | Schedule::Agp { .. } => 1,
            Schedule::Iterative { rounds } => *rounds,
        }
    }

    /// The cumulative sparsity to reach by the end of `round` (from 1) for a final target.
    pub fn round_target(&self, target: f64, round: usize) -> f64 {
        match self {
            Schedule::OneShot => target,
            Schedule::Iterative { rounds } => iterative_target(target, *rounds, round),
            // The network starts a round at the schedule's initial sparsity and reaches the
            // target inside training.
            Schedule::Agp { initial, .. } => *initial,
        }
    }
}

/// Pruning `per_round_fraction` of the survivors each round lands on `target` after `rounds`.
pub fn per_round_fraction(target: f64, rounds: usize) -> f64 {
    1.0 - (1.0 - target).powf(1.0 / rounds as f64)
}

/// The cumulative sparsity after `round` of `rounds` rounds of iterative pruning.
pub fn iterative_target(target: f64, rounds: usize, round: usize) -> f64 {
    if round >= rounds {
        return target;
    }
    1.0 - (1.0 - per_round_fraction(target, rounds)).powi(round as i32)
}

/// `s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3`, held at `s_i` before `t0` and at `s_f`
/// after `t0 + n dt` (`span` is `n dt`).
pub fn agp_sparsity(initial: f64, target: f64, start: usize, span: usize, step: usize) -> f64 {
    if step <= start {
        return initial;
    }
    if span == 0 || step >= start + span {
        return target;
    }
    let progress = (step - start) as f64 / span as f64;
    target + (initial - target) * (1.0 - progress).powi(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterative_rounds_prune_a_fixed_fraction_of_the_survivors() {
        let (target, rounds) = (0.9, 4);
        let p = per_round_fraction(target, rounds);
        let mut remaining = 1.0;
        for round in 1..=rounds {
            remaining *= 1.0 - p;
            assert!((iterative_target(target, rounds, round) - (1.0 - remaining)).abs() < 1e-12);
        }
        assert_eq!(iterative_target(target, rounds, rounds), target, "the last round lands exactly");
        assert_eq!(Schedule::OneShot.round_target(0.7, 1), 0.7);
        assert_eq!(iterative_target(0.5, 1, 1), 0.5);
    }

    #[test]
    fn agp_follows_the_cubic() {
        assert_eq!(agp_sparsity(0.0, 0.8, 10, 100, 0), 0.0);
        assert_eq!(agp_sparsity(0.0, 0.8, 10, 100, 10), 0.0);
        // Half way: s_f + (s_i - s_f) / 8.
        assert!((agp_sparsity(0.0, 0.8, 10, 100, 60) - (0.8 - 0.8 / 8.0)).abs() < 1e-12);
        assert!((agp_sparsity(0.2, 0.8, 0, 100, 25) - (0.8 - 0.6 * 0.75f64.powi(3))).abs() < 1e-12);
        assert_eq!(agp_sparsity(0.0, 0.8, 10, 100, 110), 0.8);
        assert_eq!(agp_sparsity(0.0, 0.8, 10, 100, 1000), 0.8);
        // Fast at first, slow at the end.
        let early = agp_sparsity(0.0, 0.8, 0, 100, 10) - agp_sparsity(0.0, 0.8, 0, 100, 0);
        let late = agp_sparsity(0.0, 0.8, 0, 100, 100) - agp_sparsity(0.0, 0.8, 0, 100, 90);
        assert!(early > late);
    }
}
