//! What can end a training early.

use crate::stop::StopCause;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("data: {0}")]
    Data(String),
    /// A stop (a signal, or "stop the training" on the screen) ended the training after
    /// `epochs` completed epochs, counting those of an earlier, resumed training.
    #[error("{}", crate::stop::interrupted_line(Some(*epochs), None))]
    Interrupted { epochs: usize, cause: StopCause },
    /// The loss stopped being a number at `step` (counted from 1) of `epoch`.
    #[error("training diverged: the loss was {loss} at step {step} of epoch {epoch}; fix: a lower train.lr{}", kept(*epoch))]
    Diverged { epoch: usize, step: usize, loss: f64 },
    #[error("training failed: {0}")]
    Failed(String),
}

/// What a diverged training keeps.
fn kept(epoch: usize) -> String {
    match epoch {
        1 => String::new(),
        epoch => format!(" (epoch {} and those before it are kept)", epoch - 1),
    }
}
