//! The `coppice` binary as users run it: bad input gives one clear line and a non-zero exit;
//! a small real run trains, saves, evaluates and repeats exactly.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use coppice_data::idx::{LABELS_MAGIC, write_idx};
#[cfg(feature = "wgpu")]
use std::process::Command;

#[test]
fn missing_dataset_file_names_the_file() {
    let dir = scratch("missing");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    std::fs::remove_file(dir.join("data/train-labels-idx1-ubyte")).unwrap();
    assert_clean_failure(&run_with_data(&dir), &["train-labels-idx1-ubyte", "data.dir"]);
    assert!(!dir.join("runs").exists(), "no run directory for a run that could not start");
}

#[test]
fn truncated_idx_file_is_reported() {
    let dir = scratch("truncated");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    let path = dir.join("data/train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    assert_clean_failure(&run_with_data(&dir), &["train-images-idx3-ubyte"]);
}

#[test]
fn wrong_magic_number_is_reported() {
    let dir = scratch("magic");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    // Labels where images belong: a valid IDX file of the wrong kind.
    std::fs::copy(dir.join("data/t10k-labels-idx1-ubyte"), dir.join("data/t10k-images-idx3-ubyte")).unwrap();
    assert_clean_failure(&run_with_data(&dir), &["t10k-images-idx3-ubyte"]);
}

#[test]
fn image_label_count_mismatch_is_reported() {
    let dir = scratch("count");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    write_idx(&dir.join("data/train-labels-idx1-ubyte"), LABELS_MAGIC, &[19], &[1u8; 19], false).unwrap();
    assert_clean_failure(&run_with_data(&dir), &["train-labels-idx1-ubyte", "20", "19"]);
}

#[test]
fn unknown_config_key_is_named() {
    let dir = scratch("unknown-key");
    let config = config_in(&dir, &format!("{MLP_CONFIG}[train]\nepochz = 3\n"));
    assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["config.toml", "epochz"]);
}

#[test]
fn negative_learning_rate_is_named() {
    let dir = scratch("neg-lr");
    let config = config_in(&dir, MLP_CONFIG);
    let out = coppice(&["run", config.to_str().unwrap(), "--set", "train.lr=-0.1", "--out", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["config.toml", "train.lr"]);
}

#[test]
fn zero_batch_size_is_named() {
    let dir = scratch("bs0");
    let config = config_in(&dir, &format!("{MLP_CONFIG}[train]\nbatch_size = 0\n"));
    assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["config.toml", "train.batch_size"]);
}

#[test]
fn unknown_backend_is_named_in_config_and_flag() {
    let dir = scratch("backend");
    let config = config_in(&dir, &format!("backend = \"tpu\"\n{MLP_CONFIG}"));
    assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["backend", "tpu"]);
    let config = config_in(&dir, MLP_CONFIG);
    let out = coppice(&["run", config.to_str().unwrap(), "--backend", "tpu", "--out", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["--backend", "tpu", "flex"]);
}

#[test]
fn eval_of_a_mismatched_checkpoint_is_reported() {
    let dir = scratch("mismatch");
    // A run directory whose architecture says 32 hidden units but whose weights have 16.
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), MLP_CONFIG).unwrap();
    let arch = r#"{"kind":"mlp","inputs":784,"hidden":[32],"classes":10}"#;
    std::fs::write(run.join("architecture.json"), arch).unwrap();
    std::fs::write(run.join("model.bpk"), b"not a burnpack file").unwrap();
    assert_clean_failure(&coppice(&["eval", run.to_str().unwrap()]), &["model.bpk"]);
}

fn accuracy_columns(run_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
        .collect()
}

/// End to end on a small slice of the bundled MNIST: trains LeNet-300-100 for two epochs,
/// checks a real accuracy, the run directory's contract, `eval`, and that a second run with
/// the same seed records the same losses and accuracies.
#[test]
fn small_mnist_run_trains_saves_evaluates_and_repeats() {
    let dir = scratch("e2e");
    let sets = [
        "--set",
        "train.epochs=2",
        "--set",
        "data.train_limit=3000",
        "--set",
        "data.test_limit=1000",
        "--set",
        "train.lr=0.05",
        "--out",
    ];
    let run = |tag: &str| -> PathBuf {
        let out_dir = dir.join(tag);
        let mut args = vec!["run", "configs/lenet300-mnist.toml"];
        args.extend_from_slice(&sets);
        args.push(out_dir.to_str().unwrap());
        let out = coppice(&args);
        assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut entries: Vec<_> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1);
        entries.pop().unwrap()
    };
    let first = run("a");
    for file in ["config.toml", "metrics.csv", "summary.json", "model.bpk", "architecture.json"] {
        assert!(first.join(file).is_file(), "{file} written");
    }
    let summary = read_summary(&first);
    let accuracy = summary["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85 && accuracy <= 1.0, "LeNet-300-100 on 3000 samples, 2 epochs: {accuracy}");
    assert_eq!(summary["params_total"], 266_610);
    for key in ["test_loss", "params_nonzero", "wall_seconds", "backend"] {
        assert!(summary.get(key).is_some(), "summary.json has {key}");
    }
    assert_eq!(accuracy_columns(&first).len(), 1 + 2 * 2, "header plus train and valid rows per epoch");

    let eval = coppice(&["eval", first.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let printed = String::from_utf8_lossy(&eval.stdout);
    assert!(printed.contains(&format!("{:.2}%", accuracy * 100.0)), "eval reproduces the run's accuracy: {printed}");

    // A checkpoint of another shape: the weights of 300 hidden units under an architecture of 200.
    let altered = dir.join("altered");
    std::fs::create_dir_all(&altered).unwrap();
    for file in ["config.toml", "model.bpk"] {
        std::fs::copy(first.join(file), altered.join(file)).unwrap();
    }
    let arch = std::fs::read_to_string(first.join("architecture.json")).unwrap().replace("300", "200");
    std::fs::write(altered.join("architecture.json"), arch).unwrap();
    assert_clean_failure(&coppice(&["eval", altered.to_str().unwrap()]), &["model.bpk", "architecture.json"]);

    let second = run("b");
    assert_eq!(accuracy_columns(&first), accuracy_columns(&second), "same seed, same metrics");

    // Weight pruning from the saved run: global magnitude to 90 % in two rounds.
    let pruned_out = dir.join("pruned");
    let config = config_in(
        &dir,
        &format!(
            "name = \"pruned\"\n[data]\ntrain_limit = 3000\ntest_limit = 1000\n[model]\nkind = \"mlp\"\n\
             [prune]\nallocation = \"global\"\ntarget = 0.9\nrounds = 2\nretrain_epochs = 1\nfrom = {:?}\n",
            first.display().to_string()
        ),
    );
    let out = coppice(&["run", config.to_str().unwrap(), "--out", pruned_out.to_str().unwrap()]);
    assert!(out.status.success(), "prune run failed: {}", String::from_utf8_lossy(&out.stderr));
    let pruned = std::fs::read_dir(&pruned_out).unwrap().next().unwrap().unwrap().path();
    let summary = read_summary(&pruned);
    let sparsity = summary["sparsity"].as_f64().unwrap();
    assert!((sparsity - 0.9).abs() < 1.0 / 266_200.0, "global target reached exactly: {sparsity}");
    assert_eq!(summary["dense_test_accuracy"].as_f64().unwrap(), accuracy, "round 0 is the saved run's model");
    assert!(summary["test_accuracy"].as_f64().unwrap() > 0.8, "{summary}");
    assert!(summary["compression_ratio"].as_f64().unwrap() > 8.0);
    let rounds = std::fs::read_to_string(pruned.join("rounds.csv")).unwrap();
    assert_eq!(rounds.lines().count(), 4, "header, round 0 and two rounds: {rounds}");
    assert!(std::fs::read_to_string(pruned.join("report.md")).unwrap().contains("| fc1 |"));
    // The saved model has the zeros baked in.
    let eval = coppice(&["eval", pruned.to_str().unwrap()]);
    assert!(eval.status.success());
    let printed = String::from_utf8_lossy(&eval.stdout);
    let expected = format!("{:.2}%", summary["test_accuracy"].as_f64().unwrap() * 100.0);
    assert!(printed.contains(&expected), "{printed} vs {expected}");

    // Export: safetensors in PyTorch's layout, zeros included.
    let out = coppice(&["export", pruned.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(pruned.join("export/model.safetensors")).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    assert_eq!(header["fc.0.weight"]["shape"], serde_json::json!([300, 784]), "Linear weights as PyTorch's [out, in]");
    assert_eq!(header["fc.2.bias"]["shape"], serde_json::json!([10]));
    let zeros =
        bytes[8 + len..].chunks(4).filter(|c| f32::from_le_bytes((*c).try_into().unwrap()) == 0.0).count() as u64;
    let total = summary["params_total"].as_u64().unwrap();
    assert_eq!(zeros, total - summary["params_nonzero"].as_u64().unwrap(), "every pruned weight exported as 0");
    assert!(pruned.join("export/architecture.json").is_file());
    assert_clean_failure(&coppice(&["export", pruned.to_str().unwrap(), "--format", "onnx"]), &["--format", "onnx"]);

    // Fine-tuning keeps every pruned weight at zero.
    let tuned_out = dir.join("tuned");
    let out = coppice(&[
        "finetune",
        pruned.to_str().unwrap(),
        "--epochs",
        "1",
        "--lr",
        "0.01",
        "--out",
        tuned_out.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tuned = std::fs::read_dir(&tuned_out).unwrap().next().unwrap().unwrap().path();
    let tuned_summary = read_summary(&tuned);
    assert_eq!(tuned_summary["params_nonzero"], summary["params_nonzero"], "the zeros stay zeros");
    assert_ne!(tuned_summary["test_loss"], summary["test_loss"], "and the rest trained");
}

/// Neuron pruning of a VGG with BatchNorm on tiny generated CIFAR-10 files: filters are
/// removed for real, the smaller architecture is saved, and `eval` rebuilds it.
#[test]
fn vgg_on_cifar_files_trains_and_loses_filters_for_real() {
    use coppice_data::write_cifar_batch;
    let dir = scratch("vgg");
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    let records = |n: usize, seed: u8| -> (Vec<u8>, Vec<u8>) {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        // Class c is brighter in channel c % 3: learnable, so accuracy is a real number.
        let images = labels
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| {
                (0..3072).map(move |p| {
                    if p / 1024 == c as usize % 3 { 200 } else { ((i * 7 + p) as u8).wrapping_mul(seed) % 60 }
                })
            })
            .collect();
        (labels, images)
    };
    for b in 1..=5 {
        let (labels, images) = records(20, b as u8);
        write_cifar_batch(&data.join(format!("data_batch_{b}.bin")), &labels, &images).unwrap();
    }
    let (labels, images) = records(20, 9);
    write_cifar_batch(&data.join("test_batch.bin"), &labels, &images).unwrap();
    let config = config_in(
        &dir,
        &format!(
            "name = \"vgg\"\n[data]\ndataset = \"cifar10\"\ndir = {:?}\nmean = 0.3\nstd = 0.3\n\
             [model]\nkind = \"vgg\"\nstages = [[8], [8]]\nfc = 16\n[train]\nepochs = 2\nbatch_size = 10\n\
             [prune]\nstrategy = \"neuron\"\ncriterion = \"taylor\"\nallocation = \"global\"\ntarget = 0.5\n\
             calibration_batches = 2\nretrain_epochs = 1\n",
            data.display().to_string()
        ),
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = std::fs::read_dir(&out_dir).unwrap().next().unwrap().unwrap().path();
    let summary = read_summary(&run);
    let arch = &summary["architecture"];
    let units: u64 = arch["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum::<u64>()
        + arch["fc"].as_u64().unwrap();
    assert_eq!(units, 16, "half of 8 + 8 filters and 16 neurons are gone: {arch}");
    assert!(summary["params_total"].as_u64().unwrap() < summary["dense"]["params"].as_u64().unwrap());
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("measured speedup") && report.contains("| conv1 | 8 |"), "{report}");
    let eval = coppice(&["eval", run.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));

    // Fine-tuning the neuron-pruned run keeps its smaller architecture.
    let tuned_out = dir.join("tuned");
    let out = coppice(&["finetune", run.to_str().unwrap(), "--epochs", "1", "--out", tuned_out.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tuned = std::fs::read_dir(&tuned_out).unwrap().next().unwrap().unwrap().path();
    let tuned_summary = read_summary(&tuned);
    assert_eq!(tuned_summary["architecture"], summary["architecture"]);
    assert_eq!(tuned_summary["parent"].as_str().unwrap(), run.to_str().unwrap());
}

#[test]
fn neuron_settings_that_cannot_work_are_named() {
    let dir = scratch("neuron-bad");
    for (setting, field) in [
        ("strategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 1.0", "prune.target"),
        (
            "strategy = \"neuron\"\ncriterion = \"apoz\"\ntarget = 0.5\ncalibration_batches = 0",
            "prune.calibration_batches",
        ),
    ] {
        let config = config_in(&dir, &format!("{MLP_CONFIG}[prune]\n{setting}\n"));
        assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["config.toml", field]);
    }
    // A floor above a layer's size is found once the model is known: hidden = [32].
    let config = config_in(
        &dir,
        &format!(
            "{MLP_CONFIG}[data]\ntrain_limit = 100\ntest_limit = 100\n[train]\nepochs = 1\n[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\nmin_units = 40\n"
        ),
    );
    let out = coppice(&["run", config.to_str().unwrap(), "--out", dir.join("runs").to_str().unwrap()]);
    assert_clean_failure(&out, &["min_units"]);
}

#[test]
fn sensitivity_prunes_each_layer_alone_and_plots_it() {
    let dir = scratch("sensitivity");
    let config =
        config_in(&dir, &format!("{MLP_CONFIG}[data]\ntrain_limit = 2000\ntest_limit = 200\n[train]\nepochs = 1\n"));
    let out_dir = dir.join("runs");
    let out =
        coppice(&["sensitivity", config.to_str().unwrap(), "--levels", "0.5,0.99", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = std::fs::read_dir(&out_dir).unwrap().next().unwrap().unwrap().path();
    let csv = std::fs::read_to_string(run.join("sensitivity.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 3, "two layers, each unpruned and at two levels: {csv}");
    assert_eq!((rows[0][0], rows[3][0]), ("fc1", "fc2"), "layers in forward order");
    let accuracy = |r: &Vec<&str>| r[2].parse::<f64>().unwrap();
    assert!(accuracy(&rows[2]) < accuracy(&rows[0]), "99 % of fc1 gone costs accuracy: {csv}");
    assert!(std::fs::read_to_string(run.join("sensitivity.svg")).unwrap().matches("<polyline").count() == 2);
    let out =
        coppice(&["sensitivity", config.to_str().unwrap(), "--levels", "1.5", "--out", out_dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["--levels", "1.5"]);
}

/// Layer-wise pruning with targets from a sensitivity analysis: one round per layer, in
/// forward order, and every try in attempts.csv.
#[test]
fn layerwise_with_sensitivity_targets_records_one_round_per_layer() {
    let dir = scratch("layerwise");
    let config = config_in(
        &dir,
        &format!(
            "{MLP_CONFIG}[data]\ntrain_limit = 2000\ntest_limit = 300\n[train]\nepochs = 1\n\
             [prune]\nstrategy = \"layerwise\"\ntargets = \"sensitivity\"\ntolerance = 0.02\nretrain_epochs = 1\n\
             max_drop = 0.05\nfreeze_pruned = true\n"
        ),
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("targets from sensitivity"));
    let run = std::fs::read_dir(&out_dir).unwrap().next().unwrap().unwrap().path();
    let rounds = std::fs::read_to_string(run.join("rounds.csv")).unwrap();
    assert_eq!(rounds.lines().count(), 1 + 1 + 2, "header, round 0, fc1 and fc2: {rounds}");
    let attempts = std::fs::read_to_string(run.join("attempts.csv")).unwrap();
    let layers: Vec<&str> = attempts.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert!(layers.first() == Some(&"fc1") && layers.last() == Some(&"fc2"), "{attempts}");
    assert!(read_summary(&run)["sparsity"].as_f64().unwrap() > 0.0);
}

#[test]
fn sweep_runs_the_grid_and_averages_over_seeds() {
    let dir = scratch("sweep");
    let config = config_in(
        &dir,
        "name = \"sw\"\nseed = [1, 2]\n[data]\ntrain_limit = 500\ntest_limit = 100\n[model]\nkind = \"mlp\"\nhidden = [16]\n\
         [train]\nepochs = 1\nlr = [0.05, 0.1]\n",
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["sweep", config.to_str().unwrap(), "--jobs", "2", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sweep = std::fs::read_dir(&out_dir).unwrap().next().unwrap().unwrap().path();
    let csv = std::fs::read_to_string(sweep.join("sweep.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("train.lr,runs,failed,test_accuracy_mean,test_accuracy_std"), "{csv}");
    assert_eq!(rows.len(), 3, "one row per learning rate, seeds averaged: {csv}");
    assert!(rows[1].starts_with("0.05,2,0,") && rows[2].starts_with("0.1,2,0,"), "{csv}");
    let plain = config_in(&dir, MLP_CONFIG);
    assert_clean_failure(
        &coppice(&["sweep", plain.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]),
        &["nothing to sweep"],
    );
}

#[test]
fn prune_from_a_missing_run_is_reported() {
    let dir = scratch("from-missing");
    let config = config_in(&dir, &format!("{MLP_CONFIG}[prune]\ntarget = 0.5\nfrom = \"runs/does-not-exist\"\n"));
    let out = coppice(&["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["prune.from", "does-not-exist"]);
}

#[test]
fn bad_prune_settings_are_named() {
    let dir = scratch("prune-bad");
    for (setting, field) in [
        ("target = 1.3", "prune.target"),
        ("allocation = \"threshold\"\nthreshold = -0.05", "prune.threshold"),
        ("target = 0.5\nrounds = 0", "prune.rounds"),
    ] {
        let config = config_in(&dir, &format!("{MLP_CONFIG}[prune]\n{setting}\n"));
        assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["config.toml", field]);
    }
    // A layer the model does not have is found once the model is known.
    let config = config_in(&dir, &format!("{MLP_CONFIG}[prune]\ntarget = 0.5\nlayers = {{ fc7 = 0.5 }}\n"));
    let out = coppice(&["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["prune.layers.fc7", "fc1, fc2"]);
}

/// `compare.csv` as (backend, column -> value) rows.
fn read_compare_csv(compare_dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(compare_dir.join("compare.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(String::from)).collect()).collect()
}

#[test]
fn compare_trains_every_backend_from_the_same_weights_and_their_logits_agree() {
    let dir = scratch("compare");
    let out = coppice(&[
        "compare",
        "configs/lenet300-mnist.toml",
        "--backends",
        "flex,ndarray",
        "--epochs",
        "1",
        "--set",
        "data.train_limit=2000",
        "--set",
        "data.test_limit=500",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("| flex |") && printed.contains("| ndarray |"), "{printed}");
    let compare_dir = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let rows = read_compare_csv(&compare_dir);
    assert_eq!(rows.iter().map(|r| r["backend"].as_str()).collect::<Vec<_>>(), ["flex", "ndarray"]);
    for row in &rows {
        let number = |key: &str| row[key].parse::<f64>().unwrap();
        assert!(number("max_logit_difference") < 1e-4, "same weights, same logits: {row:?}");
        assert!(number("test_accuracy") > 0.7, "{row:?}");
        assert!(number("train_samples_per_second") > 0.0 && number("inference_samples_per_second") > 0.0);
        assert!(number("peak_rss_mb") > 0.0, "{row:?}");
    }
    // Both trained from the same initial weights, so a single epoch on the same batches agrees closely.
    let accuracies: Vec<f64> = rows.iter().map(|r| r["test_accuracy"].parse().unwrap()).collect();
    assert!((accuracies[0] - accuracies[1]).abs() <= 0.01, "{accuracies:?}");
}

#[test]
fn backends_that_are_unknown_or_not_compiled_in_are_named() {
    assert_clean_failure(
        &coppice(&["compare", "configs/lenet300-mnist.toml", "--backends", "flex,tpu"]),
        &["--backends", "tpu", "flex, ndarray, wgpu, cuda"],
    );
    #[cfg(not(feature = "cuda"))]
    assert_clean_failure(
        &coppice(&["run", "configs/lenet300-mnist.toml", "--backend", "cuda"]),
        &["cuda", "not compiled", "--features cuda"],
    );
    #[cfg(not(feature = "wgpu"))]
    assert_clean_failure(
        &coppice(&["compare", "configs/lenet300-mnist.toml", "--backends", "flex,wgpu"]),
        &["wgpu", "not compiled", "--features wgpu"],
    );
}

/// The float32 values of a safetensors file, in file order.
#[cfg(feature = "wgpu")]
fn safetensors_values(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// wgpu (on Mesa's llvmpipe where there is no GPU) against flex: the same weights give the same
/// logits within 1e-4, and a few training steps from the same initial weights on the same
/// batches end at weights within 1e-4 of each other.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_forward_and_training_steps_agree_with_flex() {
    let dir = scratch("wgpu");
    let out = coppice(&[
        "compare",
        "configs/lenet300-mnist.toml",
        "--backends",
        "flex,wgpu",
        "--epochs",
        "1",
        "--set",
        "model.hidden=[32]",
        "--set",
        "train.batch_size=64",
        "--set",
        "data.train_limit=512",
        "--set",
        "data.test_limit=256",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compare_dir = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let rows = read_compare_csv(&compare_dir);
    let wgpu = rows.iter().find(|r| r["backend"] == "wgpu").unwrap();
    let logit_difference: f64 = wgpu["max_logit_difference"].parse().unwrap();
    assert!(logit_difference < 1e-4, "forward: {logit_difference}");
    let weights = |backend: &str| {
        let run_dir = std::fs::read_dir(compare_dir.join(backend)).unwrap().next().unwrap().unwrap().path();
        let export = coppice(&["export", run_dir.to_str().unwrap()]);
        assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
        safetensors_values(&run_dir.join("export/model.safetensors"))
    };
    let (flex, wgpu) = (weights("flex"), weights("wgpu"));
    assert_eq!(flex.len(), wgpu.len());
    let largest = flex.iter().zip(&wgpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(largest < 1e-4, "8 training steps: weights differ by up to {largest}");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_device_that_cannot_be_opened_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(["run", "configs/lenet300-mnist.toml", "--backend", "wgpu"])
        .env("CUBECL_WGPU_DEFAULT_DEVICE", "DiscreteGpu(7)")
        // Without it, libwayland (loaded by the Vulkan driver) prints a line of its own on a
        // machine without a display session.
        .env("XDG_RUNTIME_DIR", scratch("wgpu-runtime-dir"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_clean_failure(&out, &["backend wgpu", "cannot open", "fix:"]);
}
