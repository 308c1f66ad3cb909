//! The `coppice` binary as users run it: bad input gives one clear line and a non-zero exit;
//! a small real run trains, saves, evaluates and repeats exactly.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use coppice_data::Table;
use coppice_data::idx::{LABELS_MAGIC, write_idx};

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
    let arch = r#"{"input":{"channels":1,"height":28,"width":28},"layers":[{"name":"flatten","op":"flatten"},{"name":"fc1","op":"linear","units":32,"bias":true},{"name":"fc1_relu","op":"relu"},{"name":"fc2","op":"linear","units":10,"bias":true}]}"#;
    std::fs::write(run.join("architecture.json"), arch).unwrap();
    std::fs::write(run.join("model.bpk"), b"not a burnpack file").unwrap();
    assert!(coppice(&["reseal", run.to_str().unwrap()]).status.success(), "the sums are not what is tested here");
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
    let confusion = Table::from_csv(&std::fs::read_to_string(first.join("confusion.csv")).unwrap()).unwrap();
    assert_eq!(confusion.rows.len(), 10, "a row per digit");
    let counts: u64 = confusion.rows.iter().flat_map(|r| r[4..].iter()).map(|c| c.parse::<u64>().unwrap()).sum();
    assert_eq!(counts, 1000, "every test sample is counted once");
    let right: u64 = confusion.rows.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert_eq!(right as f64 / 1000.0, accuracy, "the diagonal is the accuracy");
    assert!(printed.contains("per class") && printed.contains("confusion"), "{printed}");

    // A checkpoint of another shape: the weights of 300 hidden units under an architecture of 200.
    let altered = dir.join("altered");
    std::fs::create_dir_all(&altered).unwrap();
    for file in ["config.toml", "model.bpk"] {
        std::fs::copy(first.join(file), altered.join(file)).unwrap();
    }
    let arch = std::fs::read_to_string(first.join("architecture.json")).unwrap().replace("300", "200");
    std::fs::write(altered.join("architecture.json"), arch).unwrap();
    assert!(coppice(&["reseal", altered.to_str().unwrap()]).status.success());
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
    let pruned = only_run(&pruned_out);
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
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("fc1.weight").unwrap().shape(), [300, 784], "Linear weights as PyTorch's [out, in]");
    assert_eq!(file.tensor("fc3.bias").unwrap().shape(), [10]);
    let zeros = file
        .tensors()
        .iter()
        .flat_map(|(_, t)| t.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>())
        .filter(|v| *v == 0.0)
        .count() as u64;
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
    let tuned = only_run(&tuned_out);
    let tuned_summary = read_summary(&tuned);
    assert_eq!(tuned_summary["params_nonzero"], summary["params_nonzero"], "the zeros stay zeros");
    assert_ne!(tuned_summary["test_loss"], summary["test_loss"], "and the rest trained");
}
