//! Data-parallel training through burn-train's multi-device strategy, on what every machine has:
//! several handles of the flex CPU device. Two devices at the same global batch train exactly as
//! one (same metrics and rounds, masks held), a killed run resumes, and impossible device lists
//! are clean errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Weight pruning in rounds, so that masks must hold through every data-parallel step.
const PRUNED: &str = "name = \"dp\"\n[data]\ntrain_limit = 2000\ntest_limit = 500\n[model]\nkind = \"mlp\"\nhidden = [32]\n\
                      [train]\nepochs = 2\nbatch_size = 64\n[prune]\ntarget = 0.8\nschedule = \"iterative\"\nrounds = 2\n\
                      retrain_epochs = 1\n";

fn run(config: &Path, dir: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec!["run", config.to_str().unwrap(), "--plain", "--run-dir", dir.to_str().unwrap()];
    args.extend(extra);
    let out = coppice(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.to_path_buf()
}

#[test]
fn several_devices_train_as_one_device_at_the_same_batch() {
    let dir = scratch("devices-same");
    let config = config_in(&dir, PRUNED);
    let one = run(&config, &dir.join("one"), &[]);
    let two = run(&config, &dir.join("two"), &["--devices", "flex:0,flex:1"]);
    let four =
        run(&config, &dir.join("four"), &["--devices", "flex:0,flex:1,flex:2,flex:3", "--set", "parallel=\"sharded\""]);
    for table in ["metrics.csv", "rounds.csv"] {
        let expected = without_timings(&one.join(table));
        assert_eq!(without_timings(&two.join(table)), expected, "{table}: two devices");
        assert_eq!(without_timings(&four.join(table)), expected, "{table}: four devices, sharded optimizer");
    }
    // 64 images over 3 devices, parts of 21, 21 and 22: the same network (validation, test), but
    // burn-train averages the training loss over the parts as if they were equal.
    let three = run(&config, &dir.join("three"), &["--devices", "flex:0,flex:1,flex:2"]);
    let validation = |dir: &Path| -> Vec<String> {
        without_timings(&dir.join("metrics.csv")).into_iter().filter(|l| !l.contains(",train,")).collect()
    };
    assert_eq!(validation(&three), validation(&one), "three uneven parts");
    assert_eq!(without_timings(&three.join("rounds.csv")), without_timings(&one.join("rounds.csv")));
    let summary = read_summary(&two);
    assert_eq!(summary["devices"], serde_json::json!(["flex:0", "flex:1"]));
    assert!(read_summary(&one).get("devices").is_none(), "one device records none");
    assert!((summary["sparsity"].as_f64().unwrap() - 0.8).abs() < 1e-3, "masks held: {}", summary["sparsity"]);
    assert_eq!(summary["test_accuracy"], read_summary(&one)["test_accuracy"]);
}

#[test]
fn a_killed_data_parallel_run_resumes_to_the_uninterrupted_result() {
    let dir = scratch("devices-resume");
    let config = config_in(
        &dir,
        "name = \"dp-resume\"\ndevices = [\"flex:0\", \"flex:1\"]\n[data]\ntrain_limit = 16000\ntest_limit = 500\n\
         [model]\nkind = \"mlp\"\n[train]\nepochs = 3\n",
    );
    let whole = run(&config, &dir.join("whole"), &[]);
    let killed = dir.join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(["run", config.to_str().unwrap(), "--plain", "--run-dir", killed.to_str().unwrap()])
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until(&mut child, "epoch 1's checkpoint", || epoch_saved(&killed, 1));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("summary.json").exists());
    assert_eq!(journalled_epochs(&killed), 1, "killed during epoch 2");
    let resumed = coppice(&["run", config.to_str().unwrap(), "--plain", "--run-dir", killed.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let printed = String::from_utf8_lossy(&resumed.stdout);
    assert!(printed.contains("resuming after epoch 1"), "{printed}");
    assert!(!printed.contains("epoch 1/3") && printed.contains("epoch 2/3"), "epoch 1 is not trained again: {printed}");
    assert_eq!(without_timings(&killed.join("metrics.csv")), without_timings(&whole.join("metrics.csv")));
    assert_eq!(read_summary(&killed)["test_accuracy"], read_summary(&whole)["test_accuracy"]);
    assert_eq!(weight_sums(&killed), weight_sums(&whole), "the same weights, bit for bit");
}

#[test]
fn device_lists_that_cannot_work_are_clean_errors() {
    let dir = scratch("devices-errors");
    let config = config_in(&dir, PRUNED);
    let config = config.to_str().unwrap();
    let out = dir.join("runs");
    let out = out.to_str().unwrap();
    assert_clean_failure(
        &coppice(&["run", config, "--out", out, "--devices", "flex:0,ndarray:1"]),
        &["devices", "ndarray:1", "not on the run's backend flex", "fix"],
    );
    assert_clean_failure(
        &coppice(&["run", config, "--out", out, "--devices", "flex:0,flex:x"]),
        &["devices", "device number", "cuda:1"],
    );
    assert_clean_failure(
        &coppice(&["run", config, "--out", out, "--devices", "flex:0,flex:1", "--set", "train.batch_size=1"]),
        &["devices", "batches of 1 images", "train.batch_size"],
    );
    if !cfg!(feature = "cuda") {
        assert_clean_failure(
            &coppice(&["run", config, "--out", out, "--devices", "cuda:0,cuda:1"]),
            &["cuda", "not compiled", "--features cuda"],
        );
    }
}
