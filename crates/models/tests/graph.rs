//! Networks written as `[model]` layers: what they expand to, what is derived from their graph,
//! and the one clear error each kind of bad graph gets before anything is built.

use burn::prelude::*;
use coppice_models::*;

const MNIST: InputShape = InputShape { channels: 1, height: 28, width: 28 };

fn model(text: &str) -> ModelConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
}

fn architecture(text: &str) -> Architecture {
    model(text).architecture(MNIST, 10).unwrap_or_else(|(field, problem)| panic!("{field}: {problem}"))
}

/// The field and the message of a config that must be refused.
fn refused(text: &str) -> (String, String) {
    model(text).architecture(MNIST, 10).expect_err("the graph must be refused")
}

/// A residual CNN whose add joins a projection and a bottleneck (1x1, 3x3, 1x1), with global
/// average pooling: the shape of configs/bottleneck-mnist.toml, smaller.
const BOTTLENECK: &str = r#"
[[layers]]
name = "stem"
op = "conv"
filters = 8
kernel = 3
padding = 1
bias = false
[[layers]]
name = "stem_bn"
op = "batch_norm"
[[layers]]
name = "stem_relu"
op = "relu"
[[layers]]
name = "stage"
block = "bottleneck"
repeat = 2
with = { mid = 4, out = 16 }
[[layers]]
op = "global_avg_pool"
[[layers]]
name = "fc"
op = "linear"

[blocks.bottleneck]
layers = [
  { name = "reduce", op = "conv", filters = "$mid", kernel = 1, bias = false },
  { name = "reduce_bn", op = "batch_norm" },
  { name = "reduce_relu", op = "relu" },
  { name = "conv", op = "conv", filters = "$mid", kernel = 3, padding = 1, bias = false },
  { name = "conv_bn", op = "batch_norm" },
  { name = "conv_relu", op = "relu" },
  { name = "expand", op = "conv", filters = "$out", kernel = 1, bias = false },
  { name = "expand_bn", op = "batch_norm" },
  { name = "shortcut", op = "conv", filters = "$out", kernel = 1, bias = false, inputs = "input" },
  { name = "shortcut_bn", op = "batch_norm" },
  { name = "add", op = "add", inputs = ["expand_bn", "shortcut_bn"] },
  { name = "relu", op = "relu" },
]
"#;

#[test]
fn blocks_repeat_with_their_parameters_and_names() {
    let architecture = architecture(BOTTLENECK);
    let names: Vec<&str> = architecture.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names[..4], ["stem", "stem_bn", "stem_relu", "stage.0.reduce"]);
    assert!(names.contains(&"stage.1.shortcut_bn") && names.contains(&"global_avg_pool1"));
    let node = |name: &str| architecture.layers.iter().find(|l| l.name == name).unwrap();
    assert_eq!(
        node("stage.1.conv").op,
        Op::Conv { filters: 4, kernel: [3, 3], stride: [1, 1], padding: [1, 1], bias: false }
    );
    // A block's first layer reads what comes before the block, "input" means the same, and
    // local names are the instance's.
    assert_eq!(node("stage.0.reduce").inputs, ["stem_relu"]);
    assert_eq!(node("stage.1.reduce").inputs, ["stage.0.relu"]);
    assert_eq!(node("stage.1.shortcut").inputs, ["stage.0.relu"]);
    assert_eq!(node("stage.1.add").inputs, ["stage.1.expand_bn", "stage.1.shortcut_bn"]);
    // The last linear layer without units gets one per class.
    assert_eq!(node("fc").op, Op::Linear { units: 10, bias: true });
    let net = architecture.init(&Device::flex()).unwrap();
    assert_eq!(net.forward(Tensor::zeros([2, 1, 28, 28], &Device::flex())).dims(), [2, 10]);
}

#[test]
fn an_add_couples_every_writer_and_reader_of_its_sum() {
    let net = architecture(BOTTLENECK).init(&Device::flex()).unwrap();
    let groups = net.unit_groups();
    let names: Vec<&str> = groups.iter().map(|g| g.layer.as_str()).collect();
    // The stem, each bottleneck's two inner convs, and each block's sum (named by its adds).
    assert_eq!(
        names,
        ["stem", "stage.0.reduce", "stage.0.conv", "stage.0", "stage.1.reduce", "stage.1.conv", "stage.1"]
    );
    let sum = &groups[3];
    let writers: Vec<&str> = sum.producer_weights().map(|s| s.path.as_str()).collect();
    assert_eq!(writers, ["stage.0.expand.weight", "stage.0.shortcut.weight"]);
    let readers: Vec<&str> = sum.consumers.iter().map(|c| c.layer.as_str()).collect();
    assert_eq!(readers, ["stage.1.reduce", "stage.1.shortcut"]);
    assert_eq!(sum.producer.len(), 2 * 5, "each writer's weight and its BatchNorm's four tensors");
    assert!(sum.is_coupled() && !sum.folds);
    // The last block's sum reaches the classifier through the pooling.
    let last = groups.last().unwrap();
    assert_eq!(last.consumers.iter().map(|c| c.layer.as_str()).collect::<Vec<_>>(), ["fc"]);
    assert_eq!(last.consumers[0].slice.block, 1);
    // The stem's channels are read by the first block's two branches.
    assert_eq!(groups[0].consumers.len(), 2);
    // Both through the same BatchNorm and ReLU, so a removed channel's constant still folds.
    assert!(groups[0].folds);
    assert_eq!(groups[0].between, [UnitOp::BatchNorm { module: "stem_bn".into(), epsilon: 1e-5 }, UnitOp::Relu]);
}

#[test]
fn a_residual_add_of_the_input_itself_cannot_be_pruned() {
    let net = architecture(
        r#"
[[layers]]
name = "conv"
op = "conv"
filters = 1
kernel = 3
padding = 1
[[layers]]
name = "sum"
op = "add"
inputs = ["conv", "input"]
[[layers]]
op = "flatten"
[[layers]]
op = "linear"
"#,
    )
    .init(&Device::flex())
    .unwrap();
    assert!(net.unit_groups().is_empty(), "the image's channels are never cut");
    assert_eq!(net.prunable_layers().len(), 2);
}

fn assert_refused(text: &str, words: &[&str]) {
    let (field, problem) = refused(text);
    let message = format!("{field}: {problem}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains("fix"), "says the fix: {message}");
    for word in words {
        assert!(message.contains(word), "{word:?} in: {message}");
    }
}

#[test]
fn shapes_that_do_not_chain_are_refused_naming_the_layer_and_the_shapes() {
    let linear_on_image = r#"
[[layers]]
name = "c1"
op = "conv"
filters = 4
kernel = 5
[[layers]]
name = "fc"
op = "linear"
"#;
    assert_refused(linear_on_image, &["\"fc\"", "4x24x24", "flatten"]);
    let window_too_large = r#"
[[layers]]
name = "big"
op = "conv"
filters = 4
kernel = 29
[[layers]]
op = "global_avg_pool"
[[layers]]
op = "linear"
"#;
    assert_refused(window_too_large, &["\"big\"", "29x29", "1x28x28"]);
}

#[test]
fn an_add_of_different_widths_is_refused() {
    let text = r#"
[[layers]]
name = "a"
op = "conv"
filters = 4
kernel = 3
padding = 1
[[layers]]
name = "b"
op = "conv"
filters = 8
kernel = 3
padding = 1
inputs = "input"
[[layers]]
name = "sum"
op = "add"
inputs = ["a", "b"]
[[layers]]
op = "global_avg_pool"
[[layers]]
op = "linear"
"#;
    assert_refused(text, &["\"sum\"", "4x28x28", "8x28x28", "widths differ"]);
}

#[test]
fn a_cycle_is_refused() {
    let text = r#"
[[layers]]
name = "a"
op = "relu"
inputs = "b"
[[layers]]
name = "b"
op = "relu"
inputs = "a"
[[layers]]
op = "flatten"
[[layers]]
op = "linear"
"#;
    assert_refused(text, &["cycle", "a -> b -> a"]);
}

#[test]
fn a_name_used_twice_is_refused() {
    let text = r#"
[[layers]]
name = "x"
op = "flatten"
[[layers]]
name = "x"
op = "linear"
"#;
    assert_refused(text, &["\"x\"", "twice"]);
}

#[test]
fn an_op_with_a_missing_field_is_refused() {
    assert_refused("[[layers]]\nname = \"c\"\nop = \"conv\"\nkernel = 3\n", &["model.layers[0]", "\"c\"", "filters"]);
    assert_refused("[[layers]]\nop = \"max_pool\"\n", &["kernel"]);
    assert_refused("[[layers]]\nop = \"dropout\"\n", &["prob"]);
}

#[test]
fn fields_that_do_not_apply_and_unknown_ops_are_refused() {
    assert_refused("[[layers]]\nop = \"relu\"\nunits = 3\n", &["units", "does not apply"]);
    assert_refused("[[layers]]\nop = \"convolution\"\n", &["unknown op", "conv"]);
    assert_refused(
        "[[layers]]\nop = \"flatten\"\ninputs = \"nothing\"\n[[layers]]\nop = \"linear\"\n",
        &["\"nothing\""],
    );
    assert_refused("[[layers]]\nblock = \"missing\"\n", &["\"missing\"", "model.blocks.missing"]);
}

#[test]
fn a_layer_nothing_reads_and_a_network_without_class_scores_are_refused() {
    let unread = r#"
[[layers]]
name = "lost"
op = "conv"
filters = 2
kernel = 3
[[layers]]
op = "flatten"
inputs = "input"
[[layers]]
op = "linear"
"#;
    assert_refused(unread, &["\"lost\"", "nothing reads"]);
    assert_refused("[[layers]]\nop = \"conv\"\nfilters = 10\nkernel = 3\n", &["class scores"]);
    let wrong_classes = "[[layers]]\nop = \"flatten\"\n[[layers]]\nop = \"linear\"\nunits = 7\n";
    assert_refused(wrong_classes, &["7 scores", "10 classes"]);
}

#[test]
fn a_preset_and_layers_together_are_refused() {
    assert_refused("kind = \"mlp\"\n[[layers]]\nop = \"flatten\"\n", &["model.layers", "not both"]);
    assert_refused("hidden = [3]\n[[layers]]\nop = \"flatten\"\n", &["model.hidden"]);
}

#[test]
fn architecture_json_is_checked_when_read() {
    let text = r#"{"input": {"channels": 1, "height": 28, "width": 28}, "layers": [
        {"name": "fc", "op": "linear", "units": 10, "bias": true}]}"#;
    let architecture: Architecture = serde_json::from_str(text).unwrap();
    let error = architecture.init(&Device::flex()).expect_err("a linear layer cannot read an image");
    assert_eq!(error.layer, "fc");
    let huge = r#"{"input": {"channels": 1, "height": 28, "width": 28}, "layers": [
        {"name": "c", "op": "conv", "filters": 18446744073709551615, "kernel": [3, 3], "stride": [1, 1], "padding": [0, 0], "bias": true},
        {"name": "p", "op": "global_avg_pool"}]}"#;
    let architecture: Architecture = serde_json::from_str(huge).unwrap();
    assert!(architecture.resolve().unwrap_err().problem.contains("too large"));
}
