//! Faults a user meets before and after training: inputs that cannot work are refused before
//! anything is created, damaged files are named, and every message names the field or flag and
//! the fix. Stops, kills and divergence are in `resume.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use coppice_data::idx::{IMAGES_MAGIC, write_idx};

/// A tiny MNIST directory under `dir/data` and a config that trains on it for one epoch.
fn tiny_setup(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    let data_dir = dir.join("data").display().to_string();
    config_in(
        dir,
        &format!(
            "{MLP_CONFIG}[data]\ndir = {data_dir:?}\nvalid_fraction = 0.2\n[train]\nepochs = 1\nbatch_size = 4\n{extra}"
        ),
    )
}

fn run(config: &Path, out: &Path, sets: &[&str]) -> std::process::Output {
    let mut args = vec!["run", config.to_str().unwrap(), "--plain", "--out", out.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    coppice(&args)
}

#[test]
fn test_images_of_another_size_are_refused_before_training() {
    let dir = scratch("faults-shape");
    let config = tiny_setup(&dir, "");
    write_idx(&dir.join("data/t10k-images-idx3-ubyte"), IMAGES_MAGIC, &[10, 32, 32], &[7u8; 10 * 32 * 32], false)
        .unwrap();
    assert_clean_failure(&run(&config, &dir.join("runs"), &[]), &["test images are 1x32x32", "1x28x28", "data.dir"]);
    assert!(!dir.join("runs").exists(), "no run directory for a run that could not start");
}

#[test]
fn layer_settings_the_network_cannot_meet_are_refused_before_training() {
    let dir = scratch("faults-layers");
    let out = dir.join("runs");
    // hidden = [32]: fc1 has 32 units, fc2 is the output layer.
    let config = tiny_setup(&dir, "[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\n");
    assert_clean_failure(&run(&config, &out, &["prune.min_units=40"]), &["prune.min_units", "40", "fc1", "32"]);
    assert_clean_failure(&run(&config, &out, &["prune.layers={ fc2 = 0.5 }"]), &["prune.layers.fc2", "output"]);
    assert!(!out.exists(), "refused before any directory was created");
}

#[test]
fn sizes_beyond_the_data_or_the_memory_are_refused_before_anything_is_allocated() {
    let dir = scratch("faults-sizes");
    let out = dir.join("runs");
    let config = tiny_setup(&dir, "");
    assert_clean_failure(
        &run(&config, &out, &["train.batch_size=1000000000"]),
        &["train.batch_size", "16 training samples"],
    );
    assert_clean_failure(&run(&config, &out, &["model.hidden=[1000000000]"]), &["config.toml", "model", "available"]);
    assert!(!out.exists(), "refused before any directory was created");
    // Evaluation never needs a batch larger than its split, so this one works.
    let ok = run(&config, &out, &["train.eval_batch_size=1000000000"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// A finished run whose weights are damaged afterwards: `eval` and `export` name the file
/// instead of computing with, or shipping, the damaged weights.
#[test]
fn damaged_weights_are_named_and_never_used() {
    let dir = scratch("faults-damaged");
    let config = tiny_setup(&dir, "");
    let finished = run(&config, &dir.join("runs"), &[]);
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let run_dir = only_run(&dir.join("runs"));
    let path = run_dir.to_str().unwrap();
    assert!(coppice(&["eval", path]).status.success());
    let sums = std::fs::read_to_string(run_dir.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  model.bpk") && sums.contains("  architecture.json"), "{sums}");

    let model = run_dir.join("model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&model, bytes).unwrap();
    assert_clean_failure(&coppice(&["eval", path]), &["model.bpk", "sha256", "restore"]);
    assert_clean_failure(&coppice(&["export", path]), &["model.bpk", "sha256"]);
    assert!(!run_dir.join("export").join("model.safetensors").exists(), "nothing damaged is exported");
    let finetune = coppice(&["finetune", path, "--epochs", "1", "--out", dir.join("tuned").to_str().unwrap()]);
    assert_clean_failure(&finetune, &["model.bpk", "sha256"]);
}

#[test]
fn messages_name_the_field_or_flag_at_fault() {
    let dir = scratch("faults-messages");
    let config = config_in(&dir, &format!("{MLP_CONFIG}[data]\nmean = nan\n"));
    assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["data.mean"]);
    let config = config_in(&dir, &format!("{MLP_CONFIG}[data]\nstd = 0.0\n"));
    assert_clean_failure(&coppice(&["validate", config.to_str().unwrap()]), &["data.std"]);

    // 20 training images, of which 1 % is no validation image.
    let config = tiny_setup(&dir, "");
    let out = dir.join("runs");
    assert_clean_failure(&run(&config, &out, &["data.valid_fraction=0.01"]), &["data.valid_fraction", "fix"]);

    let missing = dir.join("no-such-run");
    for command in ["eval", "export", "finetune"] {
        let failed = coppice(&[command, missing.to_str().unwrap()]);
        assert_clean_failure(&failed, &["no-such-run", "no such run directory"]);
        assert!(
            !String::from_utf8_lossy(&failed.stderr).contains("config.toml"),
            "{command} wants a run, not a config"
        );
    }

    let finished = run(&config, &out, &[]);
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let run_dir = only_run(&out);
    let path = run_dir.to_str().unwrap();
    let tuned = dir.join("tuned");
    assert_clean_failure(
        &coppice(&["finetune", path, "--epochs", "0", "--out", tuned.to_str().unwrap()]),
        &["--epochs"],
    );
    assert!(!tuned.exists(), "a refused fine-tune leaves no directory");

    std::fs::write(run_dir.join("summary.json"), "{\"name\": \"x\"}").unwrap();
    let report = coppice(&["report", path, "--out", dir.join("reports").to_str().unwrap()]);
    assert_clean_failure(&report, &["summary.json", "test_accuracy"]);
}

/// Deleting `SHA256SUMS`, or a line of it, must not turn the check off: the run is refused, the
/// message names the directory and `coppice reseal`, and after a reseal it reads again.
#[test]
fn sums_cannot_be_skipped_and_reseal_records_them_again() {
    let dir = scratch("faults-sums");
    let config = tiny_setup(&dir, "");
    let finished = run(&config, &dir.join("runs"), &[]);
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let run_dir = only_run(&dir.join("runs"));
    let path = run_dir.to_str().unwrap();
    let sums = run_dir.join("SHA256SUMS");
    let original = std::fs::read_to_string(&sums).unwrap();

    std::fs::remove_file(&sums).unwrap();
    for command in [vec!["eval", path], vec!["export", path]] {
        assert_clean_failure(&coppice(&command), &[path, "has no SHA256SUMS", "coppice reseal"]);
    }
    let without_model: String =
        original.lines().filter(|l| !l.ends_with("model.bpk")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&sums, without_model).unwrap();
    assert_clean_failure(&coppice(&["eval", path]), &["model.bpk: not listed in", "coppice reseal"]);

    let resealed = coppice(&["reseal", path]);
    assert!(resealed.status.success(), "{}", String::from_utf8_lossy(&resealed.stderr));
    assert!(String::from_utf8_lossy(&resealed.stdout).contains("architecture.json, model.bpk"));
    assert_eq!(std::fs::read_to_string(&sums).unwrap(), original, "the files were intact: the same sums");
    assert!(coppice(&["eval", path]).status.success());
    assert_clean_failure(&coppice(&["reseal", dir.join("data").to_str().unwrap()]), &["holds none of the files"]);
}

/// The architecture and an export are caught by their sums too; `eval --sparse FILE` checks
/// the `SHA256SUMS` that `export` wrote beside the file.
#[test]
fn a_damaged_architecture_or_export_is_named() {
    let dir = scratch("faults-export");
    let config = tiny_setup(&dir, "");
    let finished = run(&config, &dir.join("runs"), &[]);
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let run_dir = only_run(&dir.join("runs"));
    let path = run_dir.to_str().unwrap();
    let exported = coppice(&["export", path, "--format", "sparse"]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let file = run_dir.join("export/model.sparse.safetensors");
    let file_arg = file.to_str().unwrap();
    assert!(coppice(&["eval", path, "--sparse", file_arg]).status.success());

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&file, bytes).unwrap();
    assert_clean_failure(&coppice(&["eval", path, "--sparse", file_arg]), &["model.sparse.safetensors", "sha256"]);

    let architecture = run_dir.join("architecture.json");
    let text = std::fs::read_to_string(&architecture).unwrap();
    std::fs::write(&architecture, text.replacen("32", "33", 1)).unwrap();
    assert_clean_failure(&coppice(&["eval", path]), &["architecture.json", "sha256"]);

    // Sealed, a huge layer is still refused before anything is allocated.
    std::fs::write(&architecture, text.replacen("\"units\": 32", "\"units\": 4000000000", 1)).unwrap();
    assert!(coppice(&["reseal", path]).status.success());
    assert_clean_failure(&coppice(&["eval", path]), &["architecture.json", "parameters", "more than", "model.bpk"]);
}
