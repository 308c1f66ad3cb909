use std::collections::BTreeMap;

/// Turns scores into what to cut.
#[derive(Clone, Debug, PartialEq)]
pub enum Allocation {
    /// Prune every weight whose score is below the threshold (magnitude: |w| < threshold).
    Threshold(f64),
    /// The same target sparsity in every layer, except where `overrides` names the layer.
    Layer { target: f64, overrides: BTreeMap<String, f64> },
    /// A target for each layer named; the others stay dense.
    PerLayer(BTreeMap<String, f64>),
    /// One target over all prunable layers together: one threshold for all.
    Global(f64),
    /// Han et al. (2015): per layer, prune |w| < quality x std of that layer's weights.
    Quality(f64),
    /// N:M semi-structured sparsity (Mishra et al. 2021, "Accelerating Sparse Deep Neural
    /// Networks"; 2:4 is what NVIDIA's sparse tensor cores run): in every group of `m`
    /// consecutive weights along a layer's input dimension, the `n` highest scores stay. A
    /// schedule reaches it gradually: a round's or step's target sparsity prunes that fraction
    /// of every group, rounded.
    NofM { n: usize, m: usize },
}

/// One prunable layer as allocation sees it.
pub struct LayerScores<'a> {
    pub name: &'a str,
    pub scores: Vec<f32>,
    /// The weights themselves, for `Quality`'s standard deviation.
    pub values: &'a [f32],
    /// Where the weights of each output sit, for `NofM`; `None`: one row of all scores.
    pub layout: Option<WeightLayout>,
}

/// A weight tensor as `outputs` runs of `inputs` weights: input `k` of output `o` sits at
/// `o * output_stride + k * input_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightLayout {
    pub outputs: usize,
    pub inputs: usize,
    pub input_stride: usize,
    pub output_stride: usize,
}

impl WeightLayout {
    /// Linear weights in burn's `[d_input, d_output]` order.
    pub fn linear(inputs: usize, outputs: usize) -> Self {
        WeightLayout { outputs, inputs, input_stride: outputs, output_stride: 1 }
    }

    /// Convolution weights `[out, in, kh, kw]`: an output's inputs are its `in x kh x kw`
    /// weights, the reduction dimension of the convolution's matrix product.
    pub fn conv(outputs: usize, inputs: usize) -> Self {
        WeightLayout { outputs, inputs, input_stride: 1, output_stride: inputs }
    }
}

impl Allocation {
    /// The final target of layer `name`, for allocations that have one.
    pub fn layer_target(&self, name: &str) -> Option<f64> {
        match self {
            Allocation::Layer { target, overrides } => Some(*overrides.get(name).unwrap_or(target)),
            Allocation::PerLayer(targets) => Some(targets.get(name).copied().unwrap_or(0.0)),
            Allocation::NofM { n, m } => Some(1.0 - *n as f64 / *m as f64),
            Allocation::Global(target) => Some(*target),
            Allocation::Threshold(_) | Allocation::Quality(_) => None,
        }
    }
}

/// Which weights survive, per layer (`true` = kept). `target_now` maps a final target to this
/// round's or step's cumulative target (the schedule).
pub fn allocate(allocation: &Allocation, layers: &[LayerScores], target_now: &dyn Fn(f64) -> f64) -> Vec<Vec<bool>> {
    match allocation {
        Allocation::Threshold(threshold) => layers.iter().map(|l| below(&l.scores, *threshold as f32)).collect(),
        Allocation::Quality(quality) => {
            layers.iter().map(|l| below(&l.scores, (*quality * standard_deviation(l.values)) as f32)).collect()
        }
        Allocation::NofM { m, .. } => layers
            .iter()
            .map(|l| {
                let layout = l.layout.unwrap_or(WeightLayout::linear(l.scores.len(), 1));
                n_of_m(&l.scores, layout, *m, target_now(allocation.layer_target(l.name).unwrap_or(0.0)))
            })
            .collect(),
        Allocation::Layer { .. } | Allocation::PerLayer(_) => layers
            .iter()
            .map(|l| {
                let target = target_now(allocation.layer_target(l.name).unwrap_or(0.0));
                lowest(&l.scores, count(target, l.scores.len()))
            })
            .collect(),
        Allocation::Global(target) => {
            let all: Vec<f32> = layers.iter().flat_map(|l| l.scores.iter().copied()).collect();
            let keep = lowest(&all, count(target_now(*target), all.len()));
            let mut offset = 0;
            layers
                .iter()
                .map(|l| {
                    let part = keep[offset..offset + l.scores.len()].to_vec();
                    offset += l.scores.len();
                    part
                })
                .collect()
        }
    }
}

/// How many of `n` weights a sparsity asks for: rounded, so a layer lands within half a weight.
fn count(sparsity: f64, n: usize) -> usize {
    ((sparsity * n as f64).round() as usize).min(n)
}

/// Prunes `sparsity` of every group of `m` consecutive inputs of every output (a last, shorter
/// group in proportion), lowest scores first.
fn n_of_m(scores: &[f32], layout: WeightLayout, m: usize, sparsity: f64) -> Vec<bool> {
    let mut keep = vec![true; scores.len()];
    for output in 0..layout.outputs {
        for start in (0..layout.inputs).step_by(m.max(1)) {
            let group: Vec<usize> = (start..(start + m).min(layout.inputs))
                .map(|k| output * layout.output_stride + k * layout.input_stride)
                .collect();
            let group_scores: Vec<f32> = group.iter().map(|&i| scores[i]).collect();
            let group_keep = lowest(&group_scores, count(sparsity, group.len()));
            for (&i, kept) in group.iter().zip(group_keep) {
                keep[i] = kept;
            }
        }
    }
    keep
}

fn below(scores: &[f32], threshold: f32) -> Vec<bool> {
    scores.iter().map(|&s| s >= threshold).collect()
}

/// Keeps all but the `prune` lowest scores; ties go by position, so the count is exact.
fn lowest(scores: &[f32], prune: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut keep = vec![true; scores.len()];
    for &i in &order[..prune] {
        keep[i] = false;
    }
    keep
}

fn standard_deviation(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer<'a>(name: &'a str, values: &'a [f32]) -> LayerScores<'a> {
        LayerScores { name, scores: values.iter().map(|v| v.abs()).collect(), values, layout: None }
    }

    fn pruned(keep: &[bool]) -> usize {
        keep.iter().filter(|k| !**k).count()
    }

    #[test]
    fn layer_targets_are_exact_and_overridable() {
        let a: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..10).map(|i| -(i as f32)).collect();
        let allocation = Allocation::Layer { target: 0.9, overrides: BTreeMap::from([("b".to_string(), 0.25)]) };
        let keep = allocate(&allocation, &[layer("a", &a), layer("b", &b)], &|t| t);
        assert_eq!(pruned(&keep[0]), 900);
        assert!(keep[0][999] && !keep[0][0], "the smallest go first");
        assert_eq!(pruned(&keep[1]), 3, "0.25 of 10 rounds to 3 (2.5 -> 3), within one weight");
        // Ties are broken by position: the count stays exact.
        let flat = vec![1.0f32; 7];
        let keep =
            allocate(&Allocation::Layer { target: 0.5, overrides: BTreeMap::new() }, &[layer("f", &flat)], &|t| t);
        assert_eq!(pruned(&keep[0]), 4);
    }

    #[test]
    fn global_uses_one_threshold_over_all_layers() {
        let small: Vec<f32> = vec![0.1; 100];
        let large: Vec<f32> = vec![1.0; 100];
        let keep = allocate(&Allocation::Global(0.5), &[layer("s", &small), layer("l", &large)], &|t| t);
        assert_eq!((pruned(&keep[0]), pruned(&keep[1])), (100, 0));
    }

    #[test]
    fn threshold_and_quality() {
        let values = [-0.3f32, 0.01, 0.2, -0.04, 0.05];
        let keep = allocate(&Allocation::Threshold(0.05), &[layer("x", &values)], &|t| t);
        assert_eq!(keep[0], [true, false, true, false, true]);
        // std of [-1, 1, -1, 1] is 1: quality 0.5 prunes nothing here, 1.5 prunes all.
        let values = [-1.0f32, 1.0, -1.0, 1.0];
        assert_eq!(pruned(&allocate(&Allocation::Quality(0.5), &[layer("q", &values)], &|t| t)[0]), 0);
        assert_eq!(pruned(&allocate(&Allocation::Quality(1.5), &[layer("q", &values)], &|t| t)[0]), 4);
    }

    #[test]
    fn n_of_m_keeps_the_largest_n_of_every_group_along_the_input() {
        // A linear layer of 8 inputs and 2 outputs in burn's [input, output] order.
        let values: Vec<f32> = (0..16).map(|i| ((i * 7) % 16) as f32).collect();
        let layout = WeightLayout::linear(8, 2);
        let scores = LayerScores { layout: Some(layout), ..layer("x", &values) };
        let keep = &allocate(&Allocation::NofM { n: 2, m: 4 }, &[scores], &|t| t)[0];
        for output in 0..2 {
            for group in 0..2 {
                let members: Vec<usize> = (0..4).map(|k| (group * 4 + k) * 2 + output).collect();
                let kept: Vec<usize> = members.iter().copied().filter(|&i| keep[i]).collect();
                assert_eq!(kept.len(), 2, "2 of every 4");
                let smallest_kept = kept.iter().map(|&i| values[i]).fold(f32::INFINITY, f32::min);
                let largest_pruned =
                    members.iter().filter(|&&i| !keep[i]).map(|&i| values[i]).fold(f32::NEG_INFINITY, f32::max);
                assert!(smallest_kept > largest_pruned, "the largest stay");
            }
        }
        // Half way through a schedule, 1 of every 4 goes.
        let half = allocate(
            &Allocation::NofM { n: 2, m: 4 },
            &[LayerScores { layout: Some(layout), ..layer("x", &values) }],
            &|t| t / 2.0,
        );
        assert_eq!(pruned(&half[0]), 4);
    }

    #[test]
    fn schedule_scales_the_target() {
        let values: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let allocation = Allocation::Layer { target: 0.8, overrides: BTreeMap::new() };
        let keep = allocate(&allocation, &[layer("x", &values)], &|t| t / 2.0);
        assert_eq!(pruned(&keep[0]), 40);
    }
}
