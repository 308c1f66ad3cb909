//! Networks written in the config as users write their own: a residual CNN with a bottleneck and
//! a projection, filter-pruned across its adds and living on after; weight-pruned and run by the
//! sparse engine; and weights trained elsewhere coming in through `model.weights`.

mod common;

use std::path::Path;

use common::*;

/// A stem, a bottleneck block (1x1, 3x3 stride 2, 1x1) added to a 1x1 stride-2 projection, an
/// identity block, global average pooling and a classifier, on a slice of MNIST.
fn residual_config(dir: &Path, name: &str, prune: &str) -> std::path::PathBuf {
    config_in(
        dir,
        &format!(
            r#"name = "{name}"
[data]
dir = "datasets/mnist"
train_limit = 300
test_limit = 200
[model]
layers = [
  {{ name = "stem", op = "conv", filters = 8, kernel = 3, padding = 1, bias = false }},
  {{ name = "stem_bn", op = "batch_norm" }},
  {{ name = "stem_relu", op = "relu" }},
  {{ name = "layer1.0", block = "down", with = {{ mid = 4, out = 16 }} }},
  {{ name = "layer1.1", block = "identity", with = {{ mid = 4, out = 16 }} }},
  {{ name = "pool", op = "global_avg_pool" }},
  {{ name = "fc", op = "linear" }},
]
[model.blocks.down]
layers = [
  {{ name = "reduce", op = "conv", filters = "$mid", kernel = 1, bias = false }},
  {{ name = "reduce_bn", op = "batch_norm" }},
  {{ name = "reduce_relu", op = "relu" }},
  {{ name = "conv", op = "conv", filters = "$mid", kernel = 3, stride = 2, padding = 1, bias = false }},
  {{ name = "conv_bn", op = "batch_norm" }},
  {{ name = "conv_relu", op = "relu" }},
  {{ name = "expand", op = "conv", filters = "$out", kernel = 1, bias = false }},
  {{ name = "expand_bn", op = "batch_norm" }},
  {{ name = "projection", op = "conv", filters = "$out", kernel = 1, stride = 2, bias = false, inputs = "input" }},
  {{ name = "projection_bn", op = "batch_norm" }},
  {{ name = "add", op = "add", inputs = ["expand_bn", "projection_bn"] }},
  {{ name = "relu", op = "relu" }},
]
[model.blocks.identity]
layers = [
  {{ name = "conv", op = "conv", filters = "$out", kernel = 3, padding = 1, bias = false }},
  {{ name = "conv_bn", op = "batch_norm" }},
  {{ name = "add", op = "add", inputs = ["conv_bn", "input"] }},
  {{ name = "relu", op = "relu" }},
]
[train]
epochs = 1
batch_size = 32
{prune}"#
        ),
    )
}

fn run(config: &Path, out_dir: &Path) -> std::path::PathBuf {
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    only_run(out_dir)
}

fn filters(summary: &serde_json::Value, layer: &str) -> u64 {
    let layers = summary["architecture"]["layers"].as_array().unwrap();
    let node = layers.iter().find(|l| l["name"] == layer).unwrap_or_else(|| panic!("no layer {layer}"));
    node["filters"].as_u64().or_else(|| node["units"].as_u64()).unwrap()
}

#[test]
fn a_residual_graph_loses_channels_across_its_adds_and_the_cut_network_lives_on() {
    let dir = scratch("graph-filter");
    let prune = "[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\nretrain_epochs = 1\n";
    let run = run(&residual_config(&dir, "graph-filter", prune), &dir.join("runs"));
    let summary = read_summary(&run);
    // The sum of the blocks is one group: every writer of it loses the same channels.
    for writer in ["layer1.0.expand", "layer1.0.projection", "layer1.1.conv"] {
        assert_eq!(filters(&summary, writer), 8, "{writer}");
    }
    assert_eq!((filters(&summary, "stem"), filters(&summary, "layer1.0.conv")), (4, 2));
    let (flops, dense_flops) = (summary["flops"].as_u64().unwrap(), summary["dense"]["flops"].as_u64().unwrap());
    assert!(flops * 3 < dense_flops, "{flops} of {dense_flops}");
    let latency = summary["dense"]["latency"].as_array().unwrap();
    assert!(latency.iter().all(|l| l["speedup"].as_f64().unwrap() > 0.0), "measured at batch 1, 256 and 1000");
    let units: Vec<&str> =
        summary["dense"]["units"].as_array().unwrap().iter().map(|u| u["layer"].as_str().unwrap()).collect();
    assert_eq!(units, ["stem", "layer1.0.reduce", "layer1.0.conv", "layer1"], "the sum is named by its blocks' adds");

    let eval = coppice(&["eval", run.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let tuned_out = dir.join("tuned");
    let out = coppice(&["finetune", run.to_str().unwrap(), "--epochs", "1", "--out", tuned_out.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_summary(&only_run(&tuned_out))["architecture"], summary["architecture"]);
    let out = coppice(&["export", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in ["layer1.0.projection.weight [8, 4, 1, 1]", "layer1.1.conv_bn.running_var [8]", "fc.weight [10, 8]"] {
        assert!(listing.contains(name), "{name} missing: {listing}");
    }
}

/// `eval --sparse`'s line: the engine's accuracy and the dense flex accuracy of the same images.
fn sparse_and_dense(stdout: &str) -> (String, String) {
    let after = |key: &str| stdout.split(key).nth(1).unwrap().split('%').next().unwrap().trim().to_string();
    (after("test accuracy"), after("dense flex"))
}

#[test]
fn a_weight_pruned_residual_graph_runs_in_the_sparse_engine() {
    let dir = scratch("graph-sparse");
    let prune = "[prune]\nstrategy = \"weight\"\nallocation = \"global\"\ntarget = 0.8\nretrain_epochs = 1\n";
    let run = run(&residual_config(&dir, "graph-sparse", prune), &dir.join("runs"));
    assert!(read_summary(&run)["sparse"]["bytes"].as_u64().unwrap() > 0, "summary.json has the engine's figures");
    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (sparse, dense) = sparse_and_dense(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(sparse, dense, "{}", String::from_utf8_lossy(&out.stdout));
    let out = coppice(&["export", run.to_str().unwrap(), "--format", "sparse"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = run.join("export/model.sparse.safetensors");
    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sparse_and_dense(&String::from_utf8_lossy(&out.stdout)).0, sparse);
}

#[test]
fn weights_from_a_file_are_evaluated_pruned_and_refused_when_they_do_not_fit() {
    let dir = scratch("graph-weights");
    let source = run(&residual_config(&dir, "graph-source", ""), &dir.join("source"));
    let out = coppice(&["export", source.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weights = source.join("export/model.safetensors");
    let accuracy = read_summary(&source)["test_accuracy"].as_f64().unwrap();

    // The export in PyTorch's names and layout comes back in as a state_dict would.
    let with_weights = |name: &str, extra: &str| {
        let config = residual_config(&dir, name, extra);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("[model]\n", &format!("[model]\nweights = {:?}\n", weights.display().to_string()));
        std::fs::write(&config, text).unwrap();
        config
    };
    let config = with_weights("graph-imported", "");
    let out = coppice(&["eval", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("test accuracy {:.2}%", accuracy * 100.0)), "{printed} against {accuracy}");

    // A pruning run starts from the file instead of training dense.
    let prune = "[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\nretrain_epochs = 1\n";
    let pruned = run(&with_weights("graph-imported-pruned", prune), &dir.join("pruned"));
    let summary = read_summary(&pruned);
    assert_eq!(summary["dense_test_accuracy"].as_f64().unwrap(), accuracy);
    let metrics = std::fs::read_to_string(pruned.join("metrics.csv")).unwrap();
    assert!(!metrics.lines().any(|l| l.starts_with("0,")), "no dense epochs: {metrics}");

    // Weights of another network are refused before a run directory exists.
    let config = with_weights("graph-misfit", "");
    let text = std::fs::read_to_string(&config).unwrap().replace("filters = 8", "filters = 6");
    std::fs::write(&config, text).unwrap();
    let out_dir = dir.join("misfit");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_clean_failure(
        &out,
        &["model.weights", "model.safetensors", "mis-shaped", "stem.weight (file [8, 1, 3, 3], network [6, 1, 3, 3])"],
    );
    assert!(!out_dir.exists(), "nothing was created");
}
