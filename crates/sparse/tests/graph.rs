//! Graph-shaped networks and the layers they bring (strided convs, padded and average pools,
//! affine maps, adds, ReLU) against the plain reference, for CSR and dense weights and every tile
//! width; and graphs the engine must refuse.

mod common;

use common::{Rng, affine, images, linear, max_difference, reference, strided_conv};
use coppice_sparse::{Encoding, Error, Layer, Model, Node};

/// One image, a narrow tile with room to spare, a wide tile and a partial narrow one.
const BATCHES: [usize; 3] = [1, 5, 40];

fn assert_matches_reference(model: &Model) {
    for batch in BATCHES {
        let x = images(batch as u64 + 17, model, batch);
        let expected = reference(model, &x, batch);
        for encoding in [Encoding::Csr, Encoding::Dense] {
            let logits = model.with_encoding(encoding).forward(&x, batch).unwrap();
            let diff = max_difference(&logits, &expected);
            assert!(diff < 1e-4, "{encoding:?} at batch {batch}: logits differ by {diff}");
            let (profiled, times) = model.with_encoding(encoding).forward_profiled(&x, batch).unwrap();
            assert_eq!(profiled, logits);
            assert_eq!(times.len(), model.nodes.len());
        }
    }
}

/// `layers` on `input`, then a linear layer over whatever they make.
fn chain_with_head(input: [usize; 3], mut layers: Vec<Layer>, rng: &mut Rng) -> Model {
    let features: usize = Model::new(input, None, layers.clone()).unwrap().classes();
    layers.push(linear(rng, "head", 3, features, 0.7, false));
    Model::new(input, None, layers).unwrap()
}

fn node(layer: Layer, from: &[usize]) -> Node {
    Node { layer, from: from.to_vec() }
}

fn max_pool(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Layer {
    Layer::MaxPool { kernel, stride, padding }
}

fn avg_pool(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Layer {
    Layer::AvgPool { kernel, stride, padding }
}

#[test]
fn strided_convs_match_the_reference() {
    let mut rng = Rng::new(21);
    for (kernel, stride, padding) in [
        ([3, 3], [2, 2], [1, 1]),
        ([3, 2], [2, 1], [0, 1]), // one column at a time: one image takes the vector path
        ([1, 1], [2, 2], [0, 0]),
        ([2, 3], [3, 2], [2, 1]), // padding wider than half the kernel is legal for a conv
    ] {
        for keep in [0.3, 1.0] {
            let conv = strided_conv(&mut rng, "conv", [4, 3], kernel, stride, padding, keep, true);
            let model = chain_with_head([3, 9, 19], vec![conv], &mut rng);
            assert_matches_reference(&model);
        }
    }
}

#[test]
fn padded_max_pools_match_the_reference() {
    let mut rng = Rng::new(22);
    for (kernel, stride, padding) in [([3, 3], [2, 2], [1, 1]), ([3, 2], [1, 2], [1, 0]), ([2, 2], [2, 2], [1, 1])] {
        let conv = strided_conv(&mut rng, "conv", [3, 2], [3, 3], [1, 1], [1, 1], 0.5, false);
        let model = chain_with_head([2, 7, 8], vec![conv, max_pool(kernel, stride, padding)], &mut rng);
        assert_matches_reference(&model);
    }
}

#[test]
fn average_pools_count_the_padding_like_pytorch() {
    let mut rng = Rng::new(23);
    for (kernel, stride, padding) in [([3, 3], [2, 2], [1, 1]), ([2, 2], [2, 2], [0, 0]), ([3, 3], [1, 1], [1, 1])] {
        let model = chain_with_head([2, 7, 9], vec![avg_pool(kernel, stride, padding)], &mut rng);
        assert_matches_reference(&model);
    }
    // A corner window of a 3x3 pool padded by 1 sees four pixels and divides by nine.
    let model = Model::new([1, 2, 2], None, vec![avg_pool([3, 3], [1, 1], [1, 1])]).unwrap();
    assert_eq!(model.forward(&[9.0, 9.0, 9.0, 9.0], 1).unwrap(), vec![4.0; 4]);
}

#[test]
fn global_average_pool_affine_and_relu_match_the_reference() {
    let mut rng = Rng::new(24);
    for relu in [false, true] {
        let layers = vec![
            strided_conv(&mut rng, "conv", [5, 2], [3, 3], [1, 1], [1, 1], 0.5, false),
            affine(&mut rng, "bn", 5, relu),
            Layer::Relu,
            Layer::GlobalAvgPool,
        ];
        assert_matches_reference(&chain_with_head([2, 6, 5], layers, &mut rng));
    }
    let model = Model::new([2, 1, 3], None, vec![Layer::GlobalAvgPool]).unwrap();
    assert_eq!(model.forward(&[1.0, 2.0, 6.0, -3.0, 0.0, 0.0], 1).unwrap(), vec![3.0, -1.0]);
}

#[test]
fn adds_of_several_values_match_the_reference() {
    let mut rng = Rng::new(25);
    for relu in [false, true] {
        let nodes = vec![
            node(strided_conv(&mut rng, "a", [3, 2], [3, 3], [1, 1], [1, 1], 0.6, false), &[]),
            node(strided_conv(&mut rng, "b", [3, 2], [1, 1], [1, 1], [0, 0], 0.6, false), &[0]),
            node(affine(&mut rng, "c", 3, false), &[1]),
            node(Layer::Add { relu }, &[1, 2, 3]),
            node(Layer::Add { relu: false }, &[4, 4]), // one value twice: doubled
            node(linear(&mut rng, "head", 4, 3 * 5 * 4, 0.5, false), &[]),
        ];
        assert_matches_reference(&Model::graph([2, 5, 4], None, nodes).unwrap());
    }
}

/// A ResNet basic block with a projection shortcut, then one with an identity shortcut and an
/// unfolded BatchNorm, then global average pooling and a classifier.
pub fn residual(seed: u64, keep: f32) -> Model {
    let mut rng = Rng::new(seed);
    let mut conv = |name: &str, shape, kernel, stride, padding, relu| {
        strided_conv(&mut rng, name, shape, [kernel; 2], [stride; 2], [padding; 2], keep, relu)
    };
    let nodes = vec![
        node(conv("conv1", [6, 3], 3, 2, 1, true), &[]),      // 1: [6, 5, 5]
        node(conv("conv2", [6, 6], 3, 1, 1, false), &[]),     // 2
        node(conv("shortcut", [6, 3], 1, 2, 0, false), &[0]), // 3: the projection
        node(Layer::Add { relu: true }, &[2, 3]),             // 4
        node(conv("conv3", [6, 6], 3, 1, 1, false), &[]),     // 5
        node(Layer::Affine { name: "bn3".into(), scale: vec![0.5; 6], shift: vec![0.1; 6], relu: true }, &[]),
        node(conv("conv4", [6, 6], 3, 1, 1, false), &[]), // 7
        node(Layer::Add { relu: true }, &[7, 4]),         // 8: the identity shortcut
        node(Layer::GlobalAvgPool, &[]),                  // 9: [6, 1, 1]
        node(linear(&mut Rng::new(seed + 1), "fc", 4, 6, keep, false), &[]),
    ];
    Model::graph([3, 9, 10], None, nodes).unwrap()
}

#[test]
fn a_residual_network_matches_the_reference() {
    for keep in [0.2, 1.0] {
        let model = residual(31, keep);
        assert_eq!(model.shapes().unwrap()[4], [6, 5, 5]);
        assert_eq!(model.classes(), 4);
        assert_matches_reference(&model);
    }
}

#[test]
fn a_graph_file_round_trips() {
    let model = residual(32, 0.3);
    for model in [model.clone(), model.with_encoding(Encoding::Dense)] {
        let back = Model::from_bytes(&model.to_bytes()).unwrap();
        assert_eq!(back, model);
        let x = images(3, &model, 5);
        assert_eq!(back.forward(&x, 5).unwrap(), model.forward(&x, 5).unwrap());
    }
}

fn refusal(nodes: Vec<Node>) -> (String, String) {
    match Model::graph([2, 4, 4], None, nodes) {
        Err(Error::Corrupt { tensor, problem }) => (tensor, problem),
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

#[test]
fn invalid_graphs_are_refused() {
    let mut rng = Rng::new(33);
    let mut conv = |name: &str, filters| strided_conv(&mut rng, name, [filters, 2], [3, 3], [1, 1], [1, 1], 0.5, true);
    let (c1, c3) = (conv("c1", 2), conv("c3", 3));

    let (tensor, problem) = refusal(vec![node(c1.clone(), &[1])]);
    assert_eq!(tensor, "c1");
    assert!(problem.starts_with("reads value 1, but only values 0 to 0 come before it"), "{problem}");

    let (tensor, problem) = refusal(vec![node(c1.clone(), &[]), node(Layer::Relu, &[3])]);
    assert_eq!(tensor, "node 1 (relu)");
    assert!(problem.starts_with("reads value 3"), "{problem}");

    let (tensor, problem) = refusal(vec![node(c3, &[]), node(Layer::Add { relu: false }, &[0, 1])]);
    assert_eq!(tensor, "node 1 (add)");
    assert_eq!(problem, "adds values of shapes [2, 4, 4] and [3, 4, 4]");

    let (_, problem) = refusal(vec![node(c1.clone(), &[]), node(Layer::Add { relu: false }, &[1])]);
    assert_eq!(problem, "reads 1 value, an add needs at least 2");
    let (_, problem) = refusal(vec![node(Layer::Add { relu: false }, &[])]);
    assert_eq!(problem, "reads 1 value, an add needs at least 2");

    let (tensor, problem) = refusal(vec![node(c1.clone(), &[]), node(conv("c2", 2), &[0, 1])]);
    assert_eq!((tensor.as_str(), problem.as_str()), ("c2", "reads 2 values, only an add reads more than one"));

    let (tensor, problem) = refusal(vec![
        node(c1.clone(), &[]),
        node(Layer::Affine { name: "c1".into(), scale: vec![1.0; 2], shift: vec![0.0; 2], relu: false }, &[]),
    ]);
    assert_eq!((tensor.as_str(), problem.as_str()), ("c1", "names two layers"));

    let (_, problem) = refusal(vec![node(
        Layer::Affine { name: "bn".into(), scale: vec![1.0; 3], shift: vec![0.0; 2], relu: false },
        &[],
    )]);
    assert_eq!(problem, "has 2 channels but 3 scales");

    let (_, problem) = refusal(vec![node(max_pool([3, 3], [1, 1], [2, 2]), &[])]);
    assert!(problem.starts_with("padding [2, 2] exceeds half the [3, 3] window"), "{problem}");
    let (_, problem) = refusal(vec![node(avg_pool([5, 5], [1, 1], [0, 0]), &[])]);
    assert!(problem.starts_with("a [5, 5] window does not fit a 4x4 input"), "{problem}");
    let (_, problem) = refusal(vec![node(avg_pool([2, 2], [0, 1], [0, 0]), &[])]);
    assert!(problem.contains("must be positive"), "{problem}");
    assert!(matches!(Model::graph([2, 4, 4], None, vec![]), Err(Error::Corrupt { .. })));
}

#[test]
fn sizes_that_overflow_are_refused_not_wrapped() {
    let huge = usize::MAX / 2 + 1;
    let input = [1, 2, 2];
    let problem = |layers: Vec<Layer>, input: [usize; 3]| match Model::new(input, None, layers) {
        Err(Error::Corrupt { problem, .. }) => problem,
        other => panic!("expected Error::Corrupt, got {other:?}"),
    };
    // 2 + 2 * huge wraps to 2: a 1x1 kernel would seem to fit.
    assert!(problem(vec![max_pool([1, 1], [1, 1], [huge, huge])], input).contains("exceeds half"));
    assert!(problem(vec![avg_pool([2, 2], [1, 1], [huge, 0])], input).contains("exceeds half"));
    let weights = coppice_sparse::Weights::from_dense(1, 1, vec![1.0], Encoding::Csr);
    let conv = Layer::Conv {
        name: "conv".into(),
        weights,
        bias: vec![0.0],
        kernel: [1, 1],
        stride: [1, 1],
        padding: [huge, huge],
        relu: false,
    };
    assert!(problem(vec![conv.clone()], input).contains("overflows"), "{}", problem(vec![conv], input));
    let too_big = problem(vec![Layer::Relu], [1 << 20, 1 << 20, 1 << 20]);
    assert!(too_big.contains("too large") || too_big.contains("overflow"), "{too_big}");
    let too_big = problem(vec![Layer::Relu], [1 << 40, 1 << 40, 1]);
    assert!(too_big.contains("too large") || too_big.contains("overflow"), "{too_big}");
}
