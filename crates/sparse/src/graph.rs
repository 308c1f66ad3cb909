//! The network as a graph: nodes in topological order, each reading earlier values. Value 0 is
//! the (normalized) image, value `i >= 1` the output of node `i - 1`, and the last node's value
//! is the logits. Here: the checks every model passes before it runs, and which activation
//! buffer holds which value.

use crate::Error;
use crate::kernels::WIDE;
use crate::layer::{Layer, product};
use crate::weights::Weights;

/// One step of the network: `layer` applied to the values `from` names.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub layer: Layer,
    /// The values the layer reads; empty means the value just before its own (a chain).
    pub from: Vec<usize>,
}

impl Node {
    /// `layer` reading the value just before its own.
    pub fn chain(layer: Layer) -> Node {
        Node { layer, from: Vec::new() }
    }

    /// The values node `index` reads, `from` resolved.
    pub fn reads(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let previous = self.from.is_empty().then_some(index);
        self.from.iter().copied().chain(previous)
    }
}

/// Which buffer holds each value while a tile runs, and how many values per image each buffer
/// needs.
#[derive(Debug)]
pub(crate) struct Buffers {
    pub of_value: Vec<usize>,
    pub sizes: Vec<usize>,
}

/// The checks of `Model::graph` but its normalization's, in its order: every weight matrix is
/// whole, every node reads values it can (see [`shapes`]), weighted layers' names are unique.
pub(crate) fn check(input: [usize; 3], nodes: &[Node]) -> Result<(), Error> {
    for (i, node) in nodes.iter().enumerate() {
        if let Some(Err((array, problem))) = node.layer.weights().map(Weights::check) {
            return Err(Error::Corrupt { tensor: format!("{}.{array}", label(i, &node.layer)), problem });
        }
    }
    shapes(input, nodes)?;
    let mut names: Vec<String> = nodes.iter().map(|n| &n.layer).filter(|l| l.is_named()).map(Layer::name).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Corrupt { tensor: twice[0].clone(), problem: "names two layers".into() });
    }
    Ok(())
}

/// The shape of every value: the input's, then each node's output.
pub(crate) fn shapes(input: [usize; 3], nodes: &[Node]) -> Result<Vec<[usize; 3]>, Error> {
    if nodes.is_empty() {
        return Err(Error::Corrupt { tensor: "layers".into(), problem: "the network has no layers".into() });
    }
    check_size(input).map_err(|problem| Error::Corrupt { tensor: "input".into(), problem })?;
    let mut shapes = vec![input];
    for (i, node) in nodes.iter().enumerate() {
        let corrupt = |problem: String| Error::Corrupt { tensor: label(i, &node.layer), problem };
        let (add, reads) = (matches!(node.layer, Layer::Add { .. }), node.from.len().max(1));
        if add && reads < 2 {
            return Err(corrupt(format!("reads {reads} value, an add needs at least 2")));
        }
        if !add && reads > 1 {
            return Err(corrupt(format!("reads {reads} values, only an add reads more than one")));
        }
        let mut first = None;
        for value in node.reads(i) {
            let shape = *shapes.get(value).ok_or_else(|| {
                corrupt(format!(
                    "reads value {value}, but only values 0 to {i} come before it \
                     (0 is the image, k the output of node k - 1)"
                ))
            })?;
            match first {
                Some(first) if first != shape => {
                    return Err(corrupt(format!("adds values of shapes {first:?} and {shape:?}")));
                }
                _ => first = Some(shape),
            }
        }
        let next = node.layer.output(first.expect("a node reads a value")).map_err(corrupt)?;
        check_size(next).map_err(corrupt)?;
        shapes.push(next);
    }
    Ok(shapes)
}

impl Buffers {
    /// Gives each value a buffer from its node until its last reader has run, then hands the
    /// buffer on, so a chain ping-pongs between two and a residual block needs a third.
    pub(crate) fn new(nodes: &[Node], shapes: &[[usize; 3]]) -> Buffers {
        let mut last_read: Vec<Option<usize>> = vec![None; shapes.len()];
        for (i, node) in nodes.iter().enumerate() {
            node.reads(i).for_each(|value| last_read[value] = Some(i));
        }
        // The logits are read after the last node.
        last_read[shapes.len() - 1] = Some(nodes.len());
        let mut plan = Buffers { of_value: vec![usize::MAX; shapes.len()], sizes: Vec::new() };
        let mut free: Vec<usize> = Vec::new();
        let mut released = vec![false; shapes.len()];
        plan.place(0, shapes, &mut free);
        for (i, node) in nodes.iter().enumerate() {
            // The output is placed before the inputs are let go: no kernel writes over what it reads.
            plan.place(i + 1, shapes, &mut free);
            for value in node.reads(i).chain([i + 1]) {
                if last_read[value].is_none_or(|last| last <= i) && !std::mem::replace(&mut released[value], true) {
                    free.push(plan.of_value[value]);
                }
            }
        }
        plan
    }

    /// The most recently freed buffer (still warm in cache), or a new one.
    fn place(&mut self, value: usize, shapes: &[[usize; 3]], free: &mut Vec<usize>) {
        let buffer = free.pop().unwrap_or_else(|| {
            self.sizes.push(0);
            self.sizes.len() - 1
        });
        self.sizes[buffer] = self.sizes[buffer].max(shapes[value].iter().product());
        self.of_value[value] = buffer;
    }
}

/// How errors name node `index`: by its name when it has one.
fn label(index: usize, layer: &Layer) -> String {
    if layer.is_named() { layer.name() } else { format!("node {index} ({})", layer.name()) }
}

/// A value must not be empty, and a wide tile of it must be addressable.
fn check_size(shape: [usize; 3]) -> Result<(), String> {
    if shape.contains(&0) {
        return Err(format!("makes an empty value {shape:?}"));
    }
    let bytes = product(&shape).and_then(|n| n.checked_mul(WIDE * size_of::<f32>()));
    if bytes.is_none_or(|b| b > isize::MAX as usize) {
        return Err(format!("makes a value of {shape:?}, too large to hold {WIDE} of in memory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    fn model(from: &[&[usize]]) -> Model {
        let nodes = from
            .iter()
            .map(|from| {
                let layer = if from.len() > 1 { Layer::Add { relu: false } } else { Layer::Relu };
                Node { layer, from: from.to_vec() }
            })
            .collect();
        Model::graph([2, 3, 3], None, nodes).unwrap()
    }

    /// Checks that no value's buffer is handed on while a later node still reads it; returns how
    /// many buffers the plan uses.
    fn buffers_used(model: &Model) -> usize {
        let shapes = model.shapes().unwrap();
        let plan = Buffers::new(&model.nodes, &shapes);
        let mut last_read = vec![usize::MAX; shapes.len()];
        for (i, node) in model.nodes.iter().enumerate() {
            node.reads(i).for_each(|v| last_read[v] = i);
        }
        for written in 1..shapes.len() {
            for (live, &last) in last_read.iter().enumerate().take(written) {
                if last != usize::MAX && last >= written - 1 {
                    assert_ne!(plan.of_value[live], plan.of_value[written], "values {live} and {written} collide");
                }
            }
        }
        assert!(plan.sizes.iter().all(|&s| s == 18));
        plan.sizes.len()
    }

    #[test]
    fn a_chain_ping_pongs_between_two_buffers() {
        assert_eq!(buffers_used(&model(&[&[], &[], &[], &[], &[]])), 2);
        assert_eq!(buffers_used(&model(&[&[]])), 2);
    }

    #[test]
    fn values_read_later_keep_their_buffers() {
        // Two residual blocks: the skipped-over value stays while its branch runs.
        assert_eq!(buffers_used(&model(&[&[], &[], &[1, 2], &[], &[], &[3, 5], &[]])), 3);
        // Every value read by the last node.
        assert_eq!(buffers_used(&model(&[&[], &[], &[], &[0, 1, 2, 3]])), 5);
        // A value nobody reads is let go at once.
        assert_eq!(buffers_used(&model(&[&[], &[0], &[1], &[3]])), 3);
        assert_eq!(buffers_used(&model(&[&[], &[1, 1], &[0, 2]])), 3);
    }
}
