//! SGD and Adam in one pass over parameter, gradient, state and mask, in place where the buffers
//! are not shared. The arithmetic is burn's, operation for operation, so that the result is the
//! same to the bit (the tests compare with burn's optimizers): it goes block by block, each step
//! of burn's a loop over a block small enough to stay in L1 cache.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{contiguous, tensor, values, values_mut, writable};
use crate::{AdamStep, SgdStep};

/// Values per block: eight blocks of scratch fit in L1.
const BLOCK: usize = 512;
/// Tensors smaller than this are updated on one core.
const PARALLEL_VALUES: usize = 1 << 15;

/// The read-only inputs of one update, cut to one block.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    grad: &'a [f32],
    mask: Option<&'a [f32]>,
    clear: Option<&'a [f32]>,
}

impl<'a> Inputs<'a> {
    fn block(&self, range: std::ops::Range<usize>) -> Inputs<'a> {
        Inputs {
            grad: &self.grad[range.clone()],
            mask: self.mask.map(|m| &m[range.clone()]),
            clear: self.clear.map(|c| &c[range]),
        }
    }
}

/// Calls `update` on matching blocks of the written tensors and the inputs; large tensors are cut
/// into a few tasks per core first.
fn for_each_block<const W: usize>(
    written: [&mut [f32]; W],
    inputs: Inputs,
    update: impl Fn([&mut [f32]; W], Inputs) + Sync,
) {
    let len = inputs.grad.len();
    let per_task = if len < PARALLEL_VALUES {
        len.max(1)
    } else {
        len.div_ceil(rayon::current_num_threads() * 4).next_multiple_of(BLOCK)
    };
    let run = |start: usize, mut written: [&mut [f32]; W]| {
        let len = written.first().map_or(0, |w| w.len());
        for offset in (0..len).step_by(BLOCK) {
            let end = (offset + BLOCK).min(len);
            update(written.each_mut().map(|w| &mut w[offset..end]), inputs.block(start + offset..start + end));
        }
    };
    if per_task >= len {
        return run(0, written);
    }
    let mut tasks = Vec::new();
    let (mut rest, mut start) = (written, 0);
    while start < len {
        let take = per_task.min(len - start);
        let mut halves = rest.map(|w| {
            let (head, tail) = w.split_at_mut(take);
            (Some(head), Some(tail))
        });
        tasks.push((start, std::array::from_fn(|i| halves[i].0.take().expect("split once"))));
        rest = std::array::from_fn(|i| halves[i].1.take().expect("split once"));
        start += take;
    }
    tasks.into_par_iter().for_each(|(start, written)| run(start, written));
}

pub(super) fn sgd(
    param: FlexTensor,
    grad: FlexTensor,
    velocity: Option<FlexTensor>,
    mask: Option<FlexTensor>,
    clear: Option<FlexTensor>,
    step: SgdStep,
) -> (FlexTensor, Option<FlexTensor>) {
    let mut param = writable(param);
    let (grad, mask, clear) = (contiguous(grad), mask.map(contiguous), clear.map(contiguous));
    let inputs = Inputs { grad: values(&grad), mask: mask.as_ref().map(values), clear: clear.as_ref().map(values) };
    let lr = step.lr as f32;
    if step.momentum == 0.0 {
        for_each_block([values_mut(&mut param)], inputs, |[w], inputs| {
            let mut g = [0.0; BLOCK];
            let g = decayed(&mut g, w, inputs.grad, step.weight_decay);
            times(g, inputs.mask);
            w.iter_mut().zip(g.iter()).for_each(|(w, g)| *w -= *g * lr);
        });
        return (param, None);
    }
    let first = velocity.is_none();
    let shape = param.layout().shape().clone();
    let mut velocity = velocity.map_or_else(|| tensor(vec![0.0; shape.num_elements()], shape), writable);
    let momentum = step.momentum;
    for_each_block([values_mut(&mut param), values_mut(&mut velocity)], inputs, |[w, v], inputs| {
        let mut g = [0.0; BLOCK];
        let g = decayed(&mut g, w, inputs.grad, step.weight_decay);
        // `g` enters the velocity times the mask (or times 1 − dampening, which is exactly 1).
        times(g, inputs.mask);
        if first {
            v.copy_from_slice(g);
        } else {
            times(v, inputs.clear);
            v.iter_mut().zip(g.iter()).for_each(|(v, g)| *v = *g + *v * momentum);
        }
        if step.nesterov {
            w.iter_mut().zip(v.iter().zip(g.iter())).for_each(|(w, (v, g))| *w -= (*v * momentum + *g) * lr);
        } else {
            w.iter_mut().zip(v.iter()).for_each(|(w, v)| *w -= *v * lr);
        }
    });
    (param, Some(velocity))
}

pub(super) fn adam(
    param: FlexTensor,
    grad: FlexTensor,
    moments: Option<(FlexTensor, FlexTensor)>,
    mask: Option<FlexTensor>,
    clear: Option<FlexTensor>,
    step: AdamStep,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let mut param = writable(param);
    let (grad, mask, clear) = (contiguous(grad), mask.map(contiguous), clear.map(contiguous));
    let inputs = Inputs { grad: values(&grad), mask: mask.as_ref().map(values), clear: clear.as_ref().map(values) };
    let first = moments.is_none();
    let shape = param.layout().shape().clone();
    let (mut moment_1, mut moment_2) = moments.map_or_else(
        || {
            let zeros = || tensor(vec![0.0; shape.num_elements()], shape.clone());
            (zeros(), zeros())
        },
        |(m1, m2)| (writable(m1), writable(m2)),
    );
    let AdamStep { lr, beta_1, beta_2, epsilon, weight_decay, time } = step;
    let bias_correction_2 = (1.0 - beta_2.powi(time)).sqrt();
    let factor = bias_correction_2 / (1.0 - beta_1.powi(time));
    let shift = epsilon * bias_correction_2;
    let (lr, enter_1, enter_2) = (lr as f32, 1.0 - beta_1, 1.0 - beta_2);
    let written = [values_mut(&mut param), values_mut(&mut moment_1), values_mut(&mut moment_2)];
    for_each_block(written, inputs, |[w, m1, m2], inputs| {
        let mut g = [0.0; BLOCK];
        let g = decayed(&mut g, w, inputs.grad, weight_decay);
        if first {
            m2.iter_mut().zip(g.iter()).for_each(|(m2, g)| *m2 = (*g * *g) * enter_2);
        } else {
            m2.iter_mut().zip(g.iter()).for_each(|(m2, g)| *m2 = *m2 * beta_2 + (*g * *g) * enter_2);
        }
        // The mask folds into the factor 1 − β₁ with which the gradient enters the first moment.
        match inputs.mask {
            Some(mask) => g.iter_mut().zip(mask).for_each(|(g, m)| *g *= *m * enter_1),
            None => g.iter_mut().for_each(|g| *g *= enter_1),
        }
        if first {
            m1.copy_from_slice(g);
        } else {
            times(m1, inputs.clear);
            m1.iter_mut().zip(g.iter()).for_each(|(m1, g)| *m1 = *m1 * beta_1 + *g);
        }
        let update = w.iter_mut().zip(m1.iter().zip(m2.iter()));
        update.for_each(|(w, (m1, m2))| *w -= (*m1 * factor) / (m2.sqrt() + shift) * lr);
    });
    (param, moment_1, moment_2)
}

/// The gradient plus the coupled L2 penalty, into `buffer`: `w · penalty + g`, as burn's
/// `WeightDecay`.
fn decayed<'b>(buffer: &'b mut [f32; BLOCK], w: &[f32], grad: &[f32], weight_decay: Option<f32>) -> &'b mut [f32] {
    let g = &mut buffer[..grad.len()];
    match weight_decay {
        Some(penalty) => g.iter_mut().zip(w.iter().zip(grad)).for_each(|(g, (w, d))| *g = *w * penalty + *d),
        None => g.copy_from_slice(grad),
    }
    g
}

/// `values` times `factors`, when there are factors.
fn times(values: &mut [f32], factors: Option<&[f32]>) {
    if let Some(factors) = factors {
        values.iter_mut().zip(factors).for_each(|(v, f)| *v *= *f);
    }
}
