//! Weight-pruned runs on the sparse engine, as users run it: the figures in summary.json,
//! `export --format sparse`, `eval --sparse` against the dense evaluation, `bench --sparse`, and
//! files that do not belong to the run.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Trains and prunes a small network on a slice of the bundled MNIST; returns the run directory.
fn pruned_run(dir: &Path, model: &str, target: f64) -> PathBuf {
    let config = config_in(
        dir,
        &format!(
            "name = \"sparse\"\n[data]\ndir = \"datasets/mnist\"\ntrain_limit = 600\ntest_limit = 300\n\
             [model]\n{model}\n[train]\nepochs = 1\n\
             [prune]\nstrategy = \"weight\"\nallocation = \"global\"\ntarget = {target}\nretrain_epochs = 1\n"
        ),
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    only_run(&out_dir)
}

/// `eval --sparse`'s sparse and dense accuracy and the largest logit difference.
fn sparse_eval(run: &Path, file: Option<&Path>) -> (String, String, f64) {
    let mut args = vec!["eval", run.to_str().unwrap(), "--sparse"];
    args.extend(file.map(|f| f.to_str().unwrap()));
    let out = coppice(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let after = |marker: &str, end: char| line.split(marker).nth(1).unwrap().split(end).next().unwrap().to_string();
    let difference: f64 = after("differ by at most ", ')').parse().unwrap();
    (after("sparse engine: test accuracy ", ' '), after("(dense flex ", ';'), difference)
}

#[test]
fn a_weight_pruned_mlp_runs_on_the_sparse_engine_as_it_does_dense() {
    let dir = scratch("sparse-mlp");
    let run = pruned_run(&dir, "kind = \"mlp\"\nhidden = [64, 32]", 0.95);
    let summary = read_summary(&run);
    let sparse = &summary["sparse"];
    let (bytes, dense_bytes) = (sparse["bytes"].as_f64().unwrap(), sparse["dense_bytes"].as_f64().unwrap());
    assert!(bytes * 5.0 < dense_bytes, "95 % sparse stores far smaller: {sparse}");
    for key in ["speedup_batch1", "speedup_batch1000"] {
        assert!(sparse[key].as_f64().unwrap() > 0.0, "{key}: {sparse}");
    }

    let (accuracy, dense_accuracy, difference) = sparse_eval(&run, None);
    assert_eq!(accuracy, dense_accuracy);
    assert!(difference <= 1e-5, "logits differ by {difference}");

    let out = coppice(&["export", run.to_str().unwrap(), "--format", "sparse"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = run.join("export/model.sparse.safetensors");
    assert_eq!(std::fs::metadata(&file).unwrap().len() as f64, bytes, "the summary measured this file");
    let sums = std::fs::read_to_string(run.join("export/SHA256SUMS")).unwrap();
    assert!(sums.contains("model.sparse.safetensors"), "{sums}");
    assert_eq!(sparse_eval(&run, Some(&file)), (accuracy.clone(), dense_accuracy, difference));

    let out = coppice(&["bench", "--sparse", run.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for batch in ["    1  ", "   64  ", " 1000  "] {
        assert!(stdout.lines().any(|l| l.starts_with(batch)), "no row for batch {batch:?}: {stdout}");
    }
    for layer in ["fc1 ", "fc2 ", "fc3 "] {
        assert!(stdout.lines().any(|l| l.starts_with(layer)), "no per-layer row for {layer:?}: {stdout}");
    }
}

#[test]
fn batch_norm_folds_into_the_convs_of_a_vgg() {
    let dir = scratch("sparse-vgg");
    let run = pruned_run(&dir, "kind = \"vgg\"\nstages = [[4], [8]]\nfc = 16", 0.5);
    let (accuracy, dense_accuracy, difference) = sparse_eval(&run, None);
    assert_eq!(accuracy, dense_accuracy);
    assert!(difference <= 1e-4, "logits differ by {difference}");
}

#[test]
fn a_file_that_is_not_the_runs_network_is_refused() {
    let dir = scratch("sparse-foreign");
    let run = pruned_run(&dir, "kind = \"mlp\"\nhidden = [16]", 0.9);
    let weights = coppice_sparse::Weights::from_dense(10, 784, vec![0.5; 7840], coppice_sparse::Encoding::Csr);
    let layer = coppice_sparse::Layer::Linear { name: "fc1".into(), weights, bias: vec![0.0; 10], relu: false };
    let other = coppice_sparse::Model::new([1, 1, 784], None, vec![layer]).unwrap();
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let foreign = elsewhere.join("other.sparse.safetensors");
    std::fs::write(&foreign, other.to_bytes()).unwrap();
    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse", foreign.to_str().unwrap()]);
    assert_clean_failure(&out, &["elsewhere: has no SHA256SUMS", "coppice reseal"]);

    let truncated = elsewhere.join("truncated.sparse.safetensors");
    std::fs::write(&truncated, &other.to_bytes()[..100]).unwrap();
    let sealed = coppice(&["reseal", elsewhere.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&sealed.stdout).contains("other.sparse.safetensors, truncated.sparse.safetensors"));
    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse", foreign.to_str().unwrap()]);
    assert_clean_failure(&out, &["other.sparse.safetensors: holds another network", "fix: export this run"]);
    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse", truncated.to_str().unwrap()]);
    assert_clean_failure(&out, &["truncated.sparse.safetensors: not a coppice sparse model", "fix:"]);

    let dense = coppice(&["export", run.to_str().unwrap()]);
    assert!(dense.status.success());
    let out =
        coppice(&["eval", run.to_str().unwrap(), "--sparse", run.join("export/model.safetensors").to_str().unwrap()]);
    assert_clean_failure(&out, &["model.safetensors: not a coppice sparse model", "lacks format = coppice-sparse"]);
}
