//! From a written-down architecture to a checked graph: names, edges, and every layer's shape,
//! refused with an error that names the layer, what does not fit, and the fix.

use std::collections::HashMap;

use super::{Architecture, Graph, IMAGE, Node, Op, Shape, Source};

/// A layer that cannot be built, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("layer {layer:?}: {problem}")]
pub struct GraphError {
    pub layer: String,
    pub problem: String,
}

fn error(node: &Node, problem: impl Into<String>) -> GraphError {
    GraphError { layer: node.name.clone(), problem: problem.into() }
}

pub(super) fn resolve(architecture: &Architecture) -> Result<Graph, GraphError> {
    let layers = &architecture.layers;
    let whole = |problem: String| GraphError { layer: "(network)".into(), problem };
    let input = architecture.input;
    if input.channels == 0 || input.height == 0 || input.width == 0 {
        return Err(whole(format!("the input {}x{}x{} has an empty side", input.channels, input.height, input.width)));
    }
    if layers.is_empty() {
        return Err(whole("has no layers; fix: list them under [[model.layers]]".into()));
    }
    let index = names(layers)?;
    let reads = edges(layers, &index)?;
    let mut graph = Graph { architecture: architecture.clone(), reads, shapes: Vec::with_capacity(layers.len()) };
    for (i, node) in layers.iter().enumerate() {
        check_fields(node)?;
        let inputs: Vec<(String, Shape)> =
            graph.reads[i].iter().map(|&s| (source_name(layers, s), graph.shape_of(s))).collect();
        let shape = output_shape(node, &inputs)?;
        graph.shapes.push(shape);
    }
    let readers = graph.readers();
    let last = layers.len() - 1;
    if let Some(unread) = (0..last).find(|&i| readers[i].is_empty()) {
        return Err(error(
            &layers[unread],
            format!(
                "nothing reads its output; fix: remove it, or name it in a later layer's inputs (only the last layer, {:?}, is the network's output)",
                layers[last].name
            ),
        ));
    }
    if let Shape::Image { .. } = graph.shapes[last] {
        return Err(error(
            &layers[last],
            format!(
                "the network ends in {}, not in class scores; fix: end with a global_avg_pool, or a flatten and a linear layer",
                graph.shapes[last]
            ),
        ));
    }
    Ok(graph)
}

fn source_name(layers: &[Node], source: Source) -> String {
    match source {
        Source::Image => IMAGE.to_string(),
        Source::Layer(i) => layers[i].name.clone(),
    }
}

/// Every name once, and usable as a tensor prefix.
fn names(layers: &[Node]) -> Result<HashMap<&str, usize>, GraphError> {
    let mut index = HashMap::new();
    for (i, node) in layers.iter().enumerate() {
        let valid = !node.name.is_empty()
            && node.name.split('.').all(|part| !part.is_empty())
            && node.name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !valid {
            return Err(error(node, "a name is letters, digits, '_' and '-', in parts joined by '.'; fix: rename it"));
        }
        if node.name == IMAGE {
            return Err(error(node, format!("{IMAGE:?} names the network's image; fix: rename the layer")));
        }
        if let Some(first) = index.insert(node.name.as_str(), i) {
            return Err(error(
                node,
                format!(
                    "the name is used twice (layers {} and {}); fix: give each layer its own name",
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    // A name that is a prefix of another would put a tensor inside a layer (`a.weight` and the
    // layer `a.weight`), which no state_dict can hold.
    for node in layers {
        for (part, _) in node.name.match_indices('.') {
            let prefix = &node.name[..part];
            if let Some(&owner) = index.get(prefix)
                && layers[owner].op.is_weighted()
            {
                return Err(error(
                    node,
                    format!("sits inside layer {prefix:?}, which has weights of its own; fix: rename one of them"),
                ));
            }
        }
    }
    Ok(index)
}

fn edges(layers: &[Node], index: &HashMap<&str, usize>) -> Result<Vec<Vec<Source>>, GraphError> {
    let mut reads = Vec::with_capacity(layers.len());
    for (i, node) in layers.iter().enumerate() {
        if node.inputs.is_empty() {
            reads.push(vec![if i == 0 { Source::Image } else { Source::Layer(i - 1) }]);
            continue;
        }
        let mut sources = Vec::new();
        for name in &node.inputs {
            let source = match (name.as_str(), index.get(name.as_str())) {
                (IMAGE, _) => Source::Image,
                (_, Some(&j)) if j < i => Source::Layer(j),
                (_, Some(&j)) if j == i => {
                    return Err(error(node, "reads its own output, a cycle; fix: name an earlier layer in inputs"));
                }
                (_, Some(&j)) => {
                    return Err(match cycle(layers, index, i) {
                        Some(path) => error(
                            node,
                            format!(
                                "the layers {} form a cycle; fix: a layer reads only layers before it",
                                path.join(" -> ")
                            ),
                        ),
                        None => error(
                            node,
                            format!(
                                "reads {name:?}, which comes later (layer {}); fix: layers run in list order, move {name:?} before it",
                                j + 1
                            ),
                        ),
                    });
                }
                (_, None) => {
                    let earlier: Vec<&str> = layers[..i].iter().rev().take(3).map(|n| n.name.as_str()).collect();
                    return Err(error(
                        node,
                        format!(
                            "reads {name:?}, which no layer is named; fix: name an earlier layer ({}) or {IMAGE:?}",
                            earlier.join(", ")
                        ),
                    ));
                }
            };
            sources.push(source);
        }
        reads.push(sources);
    }
    for (node, sources) in layers.iter().zip(&reads) {
        match (&node.op, sources.len()) {
            (Op::Add, n) if n < 2 => {
                return Err(error(node, "add joins two or more inputs; fix: inputs = [\"a\", \"b\"]"));
            }
            (Op::Add, _) | (_, 1) => {}
            (op, n) => {
                return Err(error(
                    node,
                    format!("{} reads one input, but {n} are named; fix: only add joins inputs", op.name()),
                ));
            }
        }
    }
    Ok(reads)
}

/// The names around a cycle through layer `start`, when its inputs lead back to it.
fn cycle(layers: &[Node], index: &HashMap<&str, usize>, start: usize) -> Option<Vec<String>> {
    let inputs = |i: usize| -> Vec<usize> {
        if layers[i].inputs.is_empty() {
            return i.checked_sub(1).into_iter().collect();
        }
        layers[i].inputs.iter().filter_map(|n| index.get(n.as_str()).copied()).collect()
    };
    let mut stack = vec![vec![start]];
    let mut seen = vec![false; layers.len()];
    while let Some(path) = stack.pop() {
        let at = *path.last().expect("paths start with one layer");
        for next in inputs(at) {
            if next == start {
                // `path` follows reads backwards; the data flows the other way round.
                let flow = std::iter::once(start).chain(path.iter().rev().copied());
                return Some(flow.map(|i| layers[i].name.clone()).collect());
            }
            if !seen[next] {
                seen[next] = true;
                let mut longer = path.clone();
                longer.push(next);
                stack.push(longer);
            }
        }
    }
    None
}

fn check_fields(node: &Node) -> Result<(), GraphError> {
    let positive = |field: &str, values: &[usize]| {
        if values.contains(&0) {
            Err(error(node, format!("{field} must be at least 1, got {values:?}")))
        } else {
            Ok(())
        }
    };
    match &node.op {
        Op::Conv { filters, kernel, stride, .. } => {
            positive("filters", &[*filters])?;
            positive("kernel", kernel)?;
            positive("stride", stride)
        }
        Op::Linear { units, .. } => positive("units", &[*units]),
        Op::MaxPool { kernel, stride, padding } | Op::AvgPool { kernel, stride, padding } => {
            positive("kernel", kernel)?;
            positive("stride", stride)?;
            if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
                return Err(error(
                    node,
                    format!("padding {padding:?} is more than half the {kernel:?} window; fix: padding <= kernel / 2"),
                ));
            }
            Ok(())
        }
        Op::BatchNorm { epsilon, momentum } => {
            if !(epsilon.is_finite() && *epsilon > 0.0) {
                return Err(error(node, format!("epsilon {epsilon} must be finite and > 0, e.g. 1e-5")));
            }
            if !(0.0..=1.0).contains(momentum) {
                return Err(error(node, format!("momentum {momentum} must be in [0, 1], e.g. 0.1")));
            }
            Ok(())
        }
        Op::Dropout { prob } => {
            if !(0.0..1.0).contains(prob) {
                return Err(error(node, format!("prob {prob} must be in [0, 1), e.g. 0.5")));
            }
            Ok(())
        }
        Op::Relu | Op::GlobalAvgPool | Op::Flatten | Op::Add => Ok(()),
    }
}

/// `(size + 2 * padding - window) / stride + 1`, or `None` when the window does not fit.
pub(crate) fn window_output(size: usize, window: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = size.checked_add(padding.checked_mul(2)?)?;
    Some(padded.checked_sub(window)? / stride + 1)
}

fn output_shape(node: &Node, inputs: &[(String, Shape)]) -> Result<Shape, GraphError> {
    let (from, shape) = &inputs[0];
    let image = |what: &str| match *shape {
        Shape::Image { channels, height, width } => Ok((channels, height, width)),
        Shape::Flat(n) => Err(error(
            node,
            format!(
                "{what} reads an image, but {from:?} gives {n} flat features; fix: read a layer before the flatten or global_avg_pool"
            ),
        )),
    };
    let too_large = || error(node, "its output is too large to count; fix: use smaller sizes");
    let windowed = |kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], what: &str| {
        let (_, height, width) = image(what)?;
        let out = [(height, 0), (width, 1)].map(|(size, d)| window_output(size, kernel[d], stride[d], padding[d]));
        match out {
            [Some(h), Some(w)] if h > 0 && w > 0 => Ok((h, w)),
            _ => Err(error(
                node,
                format!(
                    "a {}x{} window with padding {padding:?} does not fit {from:?}'s {shape}; fix: a smaller kernel, more padding, or fewer poolings before it",
                    kernel[0], kernel[1]
                ),
            )),
        }
    };
    Ok(match &node.op {
        Op::Conv { filters, kernel, stride, padding, .. } => {
            let (channels, ..) = image("conv")?;
            channels.checked_mul(kernel[0] * kernel[1]).and_then(|w| w.checked_mul(*filters)).ok_or_else(too_large)?;
            let (height, width) = windowed(*kernel, *stride, *padding, "conv")?;
            Shape::Image { channels: *filters, height, width }
        }
        Op::Linear { units, .. } => match shape {
            Shape::Flat(n) => {
                n.checked_mul(*units).ok_or_else(too_large)?;
                Shape::Flat(*units)
            }
            Shape::Image { .. } => {
                return Err(error(
                    node,
                    format!(
                        "linear reads flat features, but {from:?} gives an image of {shape}; fix: put a flatten (or a global_avg_pool) before it"
                    ),
                ));
            }
        },
        Op::MaxPool { kernel, stride, padding } | Op::AvgPool { kernel, stride, padding } => {
            let (channels, ..) = image(node.op.name())?;
            let (height, width) = windowed(*kernel, *stride, *padding, node.op.name())?;
            Shape::Image { channels, height, width }
        }
        Op::GlobalAvgPool => Shape::Flat(image("global_avg_pool")?.0),
        Op::Flatten => match *shape {
            Shape::Image { channels, height, width } => {
                Shape::Flat(channels.checked_mul(height).and_then(|v| v.checked_mul(width)).ok_or_else(too_large)?)
            }
            flat => flat,
        },
        Op::BatchNorm { .. } | Op::Relu | Op::Dropout { .. } => *shape,
        Op::Add => {
            if let Some((other, different)) = inputs.iter().find(|(_, s)| s != shape) {
                let widths = if different.units() != shape.units() { "widths differ" } else { "sizes differ" };
                return Err(error(
                    node,
                    format!(
                        "adds {from:?} ({shape}) and {other:?} ({different}): {widths}; fix: give the branches one shape, e.g. a 1x1 conv projection on the shortcut"
                    ),
                ));
            }
            *shape
        }
    })
}
