//! What the rounds record: each round, each judged try, and the seed each round draws from.

use coppice_train::{EpochRecord, Evaluation};
use serde::{Deserialize, Serialize};

use crate::quantize::Quantized;
use crate::report::SparsityReport;
use crate::scratch::ScratchRecord;

/// The seed of one round's random draws, so that any round can be redone on its own.
pub(crate) fn round_seed(seed: u64, round: usize) -> u64 {
    seed.wrapping_add((round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoundRecord {
    /// 0 is the network before any pruning.
    pub round: usize,
    pub target: Option<f64>,
    pub sparsity: SparsityReport,
    pub test: Evaluation,
    /// The pruned network on the test set before its retraining (and rewinding): what the
    /// criterion alone kept. `None` for round 0, and in records from before it was kept.
    #[serde(default)]
    pub pruned: Option<Evaluation>,
    pub seconds: f64,
    /// The retraining epochs of this round.
    pub epochs: Vec<EpochRecord>,
    /// The quantization stage's record (its `pruned` is then the quantized network before
    /// retraining); `None` for a pruning round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantized: Option<Quantized>,
    /// The train-from-scratch control's record (its `pruned` is then the pruned architecture at
    /// its fresh initialization); `None` for any other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchRecord>,
}

/// One try of a method that judges its rounds (layer-wise), accepted or backed off.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerAttempt {
    /// What the round pruned (layer-wise: the layer).
    pub layer: String,
    /// 0 for the first try, then one more per back-off.
    pub attempt: usize,
    pub target: f64,
    pub valid_accuracy: f64,
    pub accepted: bool,
    pub sparsity: SparsityReport,
    pub test: Evaluation,
    pub seconds: f64,
    pub epochs: Vec<EpochRecord>,
}

/// Everything recorded so far: the rounds (round 0 first) and the tries of a judging method.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub rounds: Vec<RoundRecord>,
    pub attempts: Vec<LayerAttempt>,
}
