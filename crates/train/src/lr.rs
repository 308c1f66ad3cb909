use burn::optim::LearningRate;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};

use crate::config::{LrScheduleKind, TrainConfig};

/// The learning rate after `progress` epochs (fractional within an epoch) of `config.epochs`.
/// A pure function, so the scheduler, the metrics and the tests agree on it.
pub fn lr_at(config: &TrainConfig, progress: f64) -> f64 {
    match config.lr_schedule {
        LrScheduleKind::Constant => config.lr,
        LrScheduleKind::Step if config.lr_milestones.is_empty() => {
            let drops = (progress / config.lr_step_epochs as f64).floor();
            config.lr * config.lr_gamma.powf(drops)
        }
        LrScheduleKind::Step => {
            let drops = config.lr_milestones.iter().filter(|&&m| progress >= m as f64).count();
            config.lr * config.lr_gamma.powi(drops as i32)
        }
        LrScheduleKind::Cosine => {
            let t = (progress / config.epochs as f64).clamp(0.0, 1.0);
            config.lr_min + 0.5 * (config.lr - config.lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// burn's scheduler interface over `lr_at`. burn-train calls `step` before every optimizer
/// step, so the n-th call returns the rate for step n.
#[derive(Clone)]
pub(crate) struct EpochLr {
    config: TrainConfig,
    steps_per_epoch: usize,
    steps_taken: usize,
}

impl EpochLr {
    pub(crate) fn new(config: TrainConfig, steps_per_epoch: usize) -> Self {
        Self { config, steps_per_epoch: steps_per_epoch.max(1), steps_taken: 0 }
    }

    /// The schedule as it stands after `epochs` whole epochs: where a resumed training goes on.
    pub(crate) fn after_epochs(mut self, epochs: usize) -> Self {
        self.steps_taken = epochs * self.steps_per_epoch;
        self
    }
}

impl LrScheduler for EpochLr {
    fn step(&mut self) -> LearningRate {
        let progress = self.steps_taken as f64 / self.steps_per_epoch as f64;
        self.steps_taken += 1;
        lr_at(&self.config, progress)
    }

    // The position follows from the epoch a training resumes after (`after_epochs`), so
    // burn-train's checkpoint need not carry it.
    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: LrScheduleKind) -> TrainConfig {
        TrainConfig {
            lr: 0.1,
            epochs: 10,
            lr_schedule: kind,
            lr_step_epochs: 3,
            lr_gamma: 0.5,
            lr_min: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn step_schedule_drops_every_n_epochs() {
        let c = config(LrScheduleKind::Step);
        assert_eq!(lr_at(&c, 0.0), 0.1);
        assert_eq!(lr_at(&c, 2.99), 0.1);
        assert_eq!(lr_at(&c, 3.0), 0.05);
        assert_eq!(lr_at(&c, 6.5), 0.025);
    }

    #[test]
    fn milestones_drop_at_the_epochs_named() {
        let c = TrainConfig { lr_milestones: vec![2, 7], ..config(LrScheduleKind::Step) };
        assert_eq!(lr_at(&c, 1.99), 0.1);
        assert_eq!(lr_at(&c, 2.0), 0.05);
        assert_eq!(lr_at(&c, 6.0), 0.05, "the interval of lr_step_epochs is not used");
        assert_eq!(lr_at(&c, 7.5), 0.025);
        let unordered = TrainConfig { lr_milestones: vec![7, 2], ..c };
        assert_eq!(unordered.validate().unwrap_err().field, "train.lr_milestones");
    }

    #[test]
    fn cosine_schedule_goes_from_lr_to_min() {
        let c = config(LrScheduleKind::Cosine);
        assert!((lr_at(&c, 0.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 5.0) - 0.05).abs() < 1e-12);
        assert!(lr_at(&c, 10.0).abs() < 1e-12);
        assert_eq!(lr_at(&config(LrScheduleKind::Constant), 7.0), 0.1);
    }

    #[test]
    fn scheduler_steps_through_epochs() {
        let mut s = EpochLr::new(config(LrScheduleKind::Step), 2);
        let rates: Vec<f64> = (0..8).map(|_| s.step()).collect();
        assert_eq!(rates, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]);
    }
}
