//! What pruning needs to know, derived from the graph as Torch-Pruning's dependency graph derives
//! it from a trace: the prunable layers, and for every space of units (a layer's output
//! channels or features, followed through BatchNorm, activations, pooling and flatten, and
//! merged across every add that joins it with another) the slices that go when a unit goes.

use super::{Graph, Op, Source};
use crate::structure::{Consumer, LayerKind, PrunableLayer, TensorSlice, UnitGroup, UnitOp};

/// The prunable structure of a graph, and where its forward pass hands each group's units to a
/// tap.
#[derive(Clone, Debug)]
pub(crate) struct Coupling {
    pub layers: Vec<PrunableLayer>,
    pub groups: Vec<UnitGroup>,
    /// Per layer, the groups whose units its output carries as their consumers read them.
    pub taps: Vec<Vec<usize>>,
}

/// Union-find over unit spaces. Space 0 is the image's channels, which nothing can remove.
struct Spaces {
    parent: Vec<usize>,
}

impl Spaces {
    fn open(&mut self) -> usize {
        self.parent.push(self.parent.len());
        self.parent.len() - 1
    }

    fn find(&mut self, mut s: usize) -> usize {
        while self.parent[s] != s {
            self.parent[s] = self.parent[self.parent[s]];
            s = self.parent[s];
        }
        s
    }

    fn join(&mut self, a: usize, b: usize) -> usize {
        let (a, b) = (self.find(a), self.find(b));
        let (low, high) = (a.min(b), a.max(b));
        self.parent[high] = low;
        low
    }
}

pub(crate) fn derive(graph: &Graph) -> Coupling {
    let nodes = &graph.architecture.layers;
    let mut spaces = Spaces { parent: vec![0] };
    // Per layer output: its unit space and how many consecutive values each unit owns there
    // (a flattened channel owns its h*w pixels).
    let mut space = Vec::with_capacity(nodes.len());
    let mut block = Vec::with_capacity(nodes.len());
    let mut broken = vec![false];
    let value = |s: Source, space: &[usize], block: &[usize]| match s {
        Source::Image => (0, 1),
        Source::Layer(i) => (space[i], block[i]),
    };
    for (i, node) in nodes.iter().enumerate() {
        let (s, b) = value(graph.reads[i][0], &space, &block);
        let (s, b) = match &node.op {
            Op::Conv { .. } | Op::Linear { .. } => {
                broken.push(false);
                (spaces.open(), 1)
            }
            Op::Flatten => (s, b * graph.shape_of(graph.reads[i][0]).pixels()),
            Op::Add => {
                let mut joined = s;
                for &source in &graph.reads[i][1..] {
                    let (other, other_block) = value(source, &space, &block);
                    let inconsistent = other_block != b;
                    joined = spaces.join(joined, other);
                    broken[joined] |= inconsistent;
                }
                (joined, b)
            }
            _ => (s, b),
        };
        space.push(s);
        block.push(b);
    }
    let root: Vec<usize> = space.iter().map(|&s| spaces.find(s)).collect();
    // A space is broken when any part of it was before the adds joined them; the image's
    // channels and the class scores are never cut.
    let mut unprunable = vec![false; broken.len()];
    for (s, broken) in broken.iter().enumerate() {
        unprunable[spaces.find(s)] |= broken;
    }
    unprunable[0] = true;
    unprunable[root[nodes.len() - 1]] = true;
    let input_of = |i: usize| match graph.reads[i][0] {
        Source::Image => (0, 1),
        Source::Layer(j) => (root[j], block[j]),
    };

    let layers: Vec<PrunableLayer> = (0..nodes.len()).filter_map(|i| prunable_layer(graph, i)).collect();
    let mut groups = Vec::new();
    let mut group_of_space = vec![None; broken.len()];
    for (i, node) in nodes.iter().enumerate() {
        let r = root[i];
        if !node.op.is_weighted() || unprunable[r] || group_of_space[r].is_some() {
            continue;
        }
        group_of_space[r] = Some(groups.len());
        groups.push(group(graph, r, &root, &block, &input_of));
    }
    name_coupled_groups(graph, &mut groups, &root, &group_of_space);

    let readers = graph.readers();
    let taps = (0..nodes.len())
        .map(|i| {
            let read_by_unit_reader = readers[i]
                .iter()
                .any(|&m| matches!(nodes[m].op, Op::Conv { .. } | Op::Linear { .. } | Op::Flatten | Op::GlobalAvgPool));
            let per_unit = block[i] == 1 && !matches!(nodes[i].op, Op::Flatten | Op::GlobalAvgPool);
            match group_of_space[root[i]] {
                Some(g) if read_by_unit_reader && per_unit => vec![g],
                _ => Vec::new(),
            }
        })
        .collect();
    Coupling { layers, groups, taps }
}

fn prunable_layer(graph: &Graph, i: usize) -> Option<PrunableLayer> {
    let node = graph.node(i);
    let input = graph.shape_of(graph.reads[i][0]);
    let (kind, weight_shape, bias_len, uses_per_weight) = match node.op {
        Op::Conv { filters, kernel, bias, .. } => {
            let shape = vec![filters, input.units(), kernel[0], kernel[1]];
            (LayerKind::Conv2d, shape, if bias { filters } else { 0 }, graph.shapes[i].pixels())
        }
        Op::Linear { units, bias } => (LayerKind::Linear, vec![input.values(), units], if bias { units } else { 0 }, 1),
        _ => return None,
    };
    Some(PrunableLayer {
        name: node.name.clone(),
        kind,
        weight_path: format!("{}.weight", node.name),
        bias_path: (bias_len > 0).then(|| format!("{}.bias", node.name)),
        weight_shape,
        bias_len,
        uses_per_weight,
    })
}

/// The group of unit space `r`: its producers (weighted layers writing it, BatchNorms on it),
/// its consumers (weighted layers reading it) and, for one producer reached by one path, the
/// ops between, which surgery follows to fold a removed unit's constant output.
fn group(
    graph: &Graph,
    r: usize,
    root: &[usize],
    block: &[usize],
    input_of: &dyn Fn(usize) -> (usize, usize),
) -> UnitGroup {
    let nodes = &graph.architecture.layers;
    let mut producer = Vec::new();
    let mut consumers = Vec::new();
    let mut writers = Vec::new();
    let mut units = 0;
    for (i, node) in nodes.iter().enumerate() {
        let slice = |tensor: &str, dim: usize, block: usize| TensorSlice {
            path: format!("{}.{tensor}", node.name),
            dim,
            block,
        };
        match node.op {
            Op::Conv { filters: n, bias, .. } | Op::Linear { units: n, bias } if root[i] == r => {
                writers.push(i);
                units = n;
                let out_dim = if matches!(node.op, Op::Linear { .. }) { 1 } else { 0 };
                producer.push(slice("weight", out_dim, 1));
                if bias {
                    producer.push(slice("bias", 0, 1));
                }
            }
            Op::BatchNorm { .. } if input_of(i).0 == r => {
                let b = input_of(i).1;
                producer.extend(["gamma", "beta", "running_mean", "running_var"].map(|t| slice(t, 0, b)));
            }
            _ => {}
        }
        if node.op.is_weighted() && input_of(i).0 == r {
            let kind = if matches!(node.op, Op::Linear { .. }) { LayerKind::Linear } else { LayerKind::Conv2d };
            let in_dim = if kind == LayerKind::Linear { 0 } else { 1 };
            let has_bias = matches!(node.op, Op::Conv { bias: true, .. } | Op::Linear { bias: true, .. });
            consumers.push(Consumer {
                layer: node.name.clone(),
                kind,
                slice: slice("weight", in_dim, input_of(i).1),
                bias: has_bias.then(|| format!("{}.bias", node.name)),
            });
        }
    }
    let between = match writers[..] {
        [only] => paths_to_consumers(graph, only, block),
        _ => None,
    };
    UnitGroup {
        layer: nodes[writers[0]].name.clone(),
        units,
        producer,
        folds: between.is_some(),
        between: between.unwrap_or_default(),
        consumers,
    }
}

/// The per-unit ops from `producer` to its consumers, when every consumer is reached through the
/// same ones and each unit stays one value (no add, no BatchNorm over flattened pixels).
fn paths_to_consumers(graph: &Graph, producer: usize, block: &[usize]) -> Option<Vec<UnitOp>> {
    let nodes = &graph.architecture.layers;
    let readers = graph.readers();
    let mut found: Option<Vec<UnitOp>> = None;
    let mut stack = vec![(producer, Vec::new())];
    while let Some((at, ops)) = stack.pop() {
        for &m in &readers[at] {
            let mut next = ops.clone();
            match &nodes[m].op {
                Op::Conv { .. } | Op::Linear { .. } => {
                    if found.as_ref().is_some_and(|f| *f != ops) {
                        return None;
                    }
                    found = Some(ops.clone());
                    continue;
                }
                Op::Add => return None,
                Op::BatchNorm { epsilon, .. } if block[at] == 1 => {
                    next.push(UnitOp::BatchNorm { module: nodes[m].name.clone(), epsilon: *epsilon });
                }
                Op::BatchNorm { .. } => return None,
                Op::Relu => next.push(UnitOp::Relu),
                _ => {}
            }
            stack.push((m, next));
        }
    }
    found
}

/// A group joined by adds is named by what its adds' names share (`layer2` for
/// `layer2.0.add`, `layer2.1.add`, ...), or by its first add, so that `prune.layers` can name it.
fn name_coupled_groups(graph: &Graph, groups: &mut [UnitGroup], root: &[usize], group_of_space: &[Option<usize>]) {
    let nodes = &graph.architecture.layers;
    let mut adds: Vec<Vec<&str>> = vec![Vec::new(); groups.len()];
    for (i, node) in nodes.iter().enumerate() {
        if let (Op::Add, Some(g)) = (&node.op, group_of_space[root[i]]) {
            adds[g].push(&node.name);
        }
    }
    let mut taken: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for (group, adds) in groups.iter_mut().zip(adds) {
        let Some(first) = adds.first() else { continue };
        if group.folds || group.producer_weights().count() < 2 {
            continue;
        }
        let parts: Vec<&str> = first.split('.').collect();
        let shared = adds
            .iter()
            .fold(parts.len(), |n, add| add.split('.').zip(&parts).take(n).take_while(|(a, b)| a == *b).count());
        let prefix = parts[..shared.min(parts.len() - 1)].join(".");
        let name = if prefix.is_empty() || taken.contains(&prefix) { first.to_string() } else { prefix };
        taken.push(name.clone());
        group.layer = name;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Shape;

    #[test]
    fn spaces_join_to_the_lowest_root() {
        let mut spaces = Spaces { parent: vec![0] };
        let (a, b, c) = (spaces.open(), spaces.open(), spaces.open());
        spaces.join(c, b);
        spaces.join(b, a);
        assert_eq!([spaces.find(a), spaces.find(b), spaces.find(c)], [a; 3]);
    }

    #[test]
    fn shapes_have_units() {
        assert_eq!(Shape::Image { channels: 3, height: 2, width: 2 }.units(), 3);
    }
}
