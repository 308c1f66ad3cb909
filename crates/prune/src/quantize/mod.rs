//! Quantization after pruning (Han, Mao & Dally 2016, "Deep Compression"): each pruned layer's
//! kept weights take values from a small set, then the network retrains with them held there.
//! `[quantize]` of a config is [`QuantizeConfig`]; the driver ([`run_rounds`](crate::run_rounds))
//! runs it once after the last pruning round, as a record of its own. A problem found in the
//! config is its field and what is wrong, as `[prune]`'s are.

mod codebook;
mod sharing;

use std::collections::BTreeMap;

use coppice_models::LayerKind;
use serde::{Deserialize, Serialize};

pub use codebook::{kmeans_codebook, nearest};
pub use sharing::{LayerCodebook, WeightSharing, to_half_precision};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantizeMethod {
    /// Weight sharing: a layer's kept weights cluster into 2^bits shared values (1-D k-means,
    /// centroids initialized evenly between the smallest and largest weight).
    Kmeans,
    /// Symmetric integers per output channel: `scale * q` with |q| < 2^(bits - 1).
    Linear,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizeConfig {
    pub method: QuantizeMethod,
    /// Bits per weight of convolutions.
    pub conv_bits: u32,
    /// Bits per weight of fully connected layers.
    pub fc_bits: u32,
    /// Epochs of retraining with the weights held on their codebooks; 0 quantizes only.
    pub retrain_epochs: usize,
    /// The retraining rate as a multiple of the pruning rounds' rate.
    pub retrain_lr_scale: f64,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        Self { method: QuantizeMethod::Kmeans, conv_bits: 8, fc_bits: 5, retrain_epochs: 1, retrain_lr_scale: 0.1 }
    }
}

/// What the quantization stage records: how each layer was quantized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantized {
    pub method: QuantizeMethod,
    /// Bits of each layer, by the name configs use (`fc1`).
    pub bits: BTreeMap<String, u32>,
}

impl QuantizeConfig {
    pub fn bits(&self, kind: LayerKind) -> u32 {
        match kind {
            LayerKind::Linear => self.fc_bits,
            LayerKind::Conv2d => self.conv_bits,
        }
    }

    /// Range checks; `pruned` says whether the config prunes weights (which quantization needs:
    /// it codes the survivors of pruning).
    pub fn validate(&self, pruned: bool) -> Result<(), (String, String)> {
        let problem = |field: &str, text: String| (format!("quantize.{field}"), text);
        if !pruned {
            return Err(problem(
                "method",
                "quantization codes the weights that pruning kept; fix: add a [prune] section with strategy = \"weight\" (or \"layerwise\" with granularity = \"weight\"), or remove [quantize]".into(),
            ));
        }
        let range = match self.method {
            QuantizeMethod::Kmeans => 1..=16,
            QuantizeMethod::Linear => 2..=8,
        };
        for (field, bits) in [("conv_bits", self.conv_bits), ("fc_bits", self.fc_bits)] {
            if !range.contains(&bits) {
                return Err(problem(
                    field,
                    format!(
                        "{bits} bits is outside {}..={} for method = {:?}; fix: e.g. conv_bits = 8, fc_bits = 5",
                        range.start(),
                        range.end(),
                        format!("{:?}", self.method).to_lowercase()
                    ),
                ));
            }
        }
        if !(self.retrain_lr_scale.is_finite() && self.retrain_lr_scale > 0.0) {
            return Err(problem("retrain_lr_scale", format!("{} must be positive, e.g. 0.1", self.retrain_lr_scale)));
        }
        Ok(())
    }
}
