//! How big a network is, from its graph alone: what a run needs to know about memory before it
//! allocates anything.

use crate::graph::{Architecture, Graph, GraphError, Op};

/// Counts that may exceed any memory (the config is not checked yet), hence `u128`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Size {
    pub parameters: u128,
    /// Values every layer outputs for one sample, the input included: what a forward pass keeps
    /// for the backward pass.
    pub activations_per_sample: u128,
}

impl Architecture {
    pub fn size(&self) -> Result<Size, GraphError> {
        Ok(self.resolve()?.size())
    }
}

impl Graph {
    pub fn size(&self) -> Size {
        let mut size = Size { parameters: 0, activations_per_sample: self.input_shape().values() as u128 };
        for (i, node) in self.architecture.layers.iter().enumerate() {
            let input = self.shape_of(self.reads[i][0]);
            let product = |values: &[usize]| values.iter().fold(1u128, |acc, &v| acc.saturating_mul(v as u128));
            let parameters = match node.op {
                Op::Conv { filters, kernel, bias, .. } => product(&[filters, input.units(), kernel[0], kernel[1]])
                    .saturating_add(if bias { filters as u128 } else { 0 }),
                Op::Linear { units, bias } => {
                    product(&[input.values(), units]).saturating_add(if bias { units as u128 } else { 0 })
                }
                // Scale, shift and the two running statistics.
                Op::BatchNorm { .. } => 4 * input.units() as u128,
                _ => 0,
            };
            size.parameters = size.parameters.saturating_add(parameters);
            size.activations_per_sample = size.activations_per_sample.saturating_add(self.shapes[i].values() as u128);
        }
        size
    }
}
