//! Stops, crashes and divergence: a run stopped by a signal, killed, or diverged keeps what it
//! did, says how to go on, and resumes to the result of the same run uninterrupted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use common::*;

/// `coppice run CONFIG --plain --out OUT`, running.
fn start(config: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(["run", config.to_str().unwrap(), "--plain", "--out", out.to_str().unwrap()])
        .current_dir(repo_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the coppice binary runs")
}

/// The run directory of a run started with `--out out`, once `ready(run_dir)`.
fn wait_for(child: &mut Child, out: &Path, ready: impl Fn(&Path) -> bool) -> PathBuf {
    let run_dir = || std::fs::read_dir(out).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path());
    poll_until(child, "the point to stop the run at", || run_dir().is_some_and(|dir| ready(&dir)));
    run_dir().unwrap()
}

/// Sends `signal` (a name `kill -s` knows) to the child.
fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -s {signal}");
}

/// Runs CONFIG to the end, and again until `stop_when(run_dir)`, when `stop` stops it; returns
/// both run directories and how the stopped one ended.
fn run_whole_and_stopped(
    dir: &Path,
    config: &Path,
    stop_when: impl Fn(&Path) -> bool,
    stop: impl FnOnce(&mut Child, &Path),
) -> (PathBuf, PathBuf, Output) {
    let out = dir.join("whole");
    let finished = start(config, &out).wait_with_output().unwrap();
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let whole = only_run(&out);
    assert!(!whole.join("checkpoints").exists(), "a finished run keeps no checkpoints");

    let out = dir.join("stopped");
    let mut child = start(config, &out);
    let stopped = wait_for(&mut child, &out, stop_when);
    stop(&mut child, &stopped);
    (whole, stopped, child.wait_with_output().unwrap())
}

/// [`run_whole_and_stopped`] with SIGKILL, which no process can handle: a crash.
fn run_whole_and_killed(dir: &Path, config: &Path, killed_when: impl Fn(&Path) -> bool) -> (PathBuf, PathBuf) {
    let (whole, killed, _) = run_whole_and_stopped(dir, config, killed_when, |child, _| child.kill().unwrap());
    (whole, killed)
}

/// `coppice run --resume RUN_DIR`, which must succeed; what it printed.
fn resume(run_dir: &Path) -> String {
    let resumed = coppice(&["run", "--resume", run_dir.to_str().unwrap(), "--plain"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    String::from_utf8_lossy(&resumed.stdout).into_owned()
}

/// The two runs' `summary.json` agree on every one of `keys`.
fn assert_same_summary(a: &Path, b: &Path, keys: &[&str]) {
    let (a, b) = (read_summary(a), read_summary(b));
    for key in keys {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// The `round` of the last record in a run's `checkpoints/progress.json`.
fn last_checkpointed_round(run_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run_dir.join("checkpoints/progress.json")).ok()?;
    let progress: serde_json::Value = serde_json::from_str(&text).ok()?;
    progress["rounds"].as_array()?.last()?["round"].as_u64()
}

/// Training killed with SIGKILL after its first epoch resumes after that epoch, keeps its record,
/// and ends exactly where the same run ends uninterrupted.
#[test]
fn a_run_killed_in_epoch_two_resumes_to_the_uninterrupted_result() {
    let dir = scratch("resume-epochs");
    let config = config_in(
        &dir,
        "name = \"resume-epochs\"\n[data]\ntrain_limit = 16000\ntest_limit = 2000\n[model]\nkind = \"mlp\"\n\
         [train]\nepochs = 3\n",
    );
    let (whole, killed) = run_whole_and_killed(&dir, &config, epoch_one_saved);
    assert_eq!(journalled_epochs(&killed), 1, "killed during epoch 2");
    assert!(!killed.join("summary.json").exists());
    let printed = resume(&killed);
    assert!(printed.contains("resuming after epoch 1"), "{printed}");
    assert!(!printed.contains("epoch 1/3") && printed.contains("epoch 2/3"), "epoch 1 is not trained again: {printed}");
    assert_eq!(without_timings(&killed.join("metrics.csv")), without_timings(&whole.join("metrics.csv")));
    assert_same_summary(&whole, &killed, &["test_accuracy", "test_loss", "epochs"]);
    assert_eq!(weight_sums(&killed), weight_sums(&whole), "the same weights, bit for bit");
}

/// A layer-wise run killed while it works on its second layer goes on at that layer after a
/// resume, and ends where the uninterrupted run ends.
#[test]
fn a_layerwise_run_killed_at_its_second_layer_resumes_to_the_uninterrupted_result() {
    let dir = scratch("resume-layerwise");
    let config = config_in(
        &dir,
        "name = \"resume-layerwise\"\n[data]\ntrain_limit = 8000\ntest_limit = 1000\n[model]\nkind = \"mlp\"\n\
         [train]\nepochs = 1\n[prune]\nstrategy = \"layerwise\"\ntarget = 0.6\nretrain_epochs = 2\nmax_drop = 0.5\n",
    );
    let (whole, killed) = run_whole_and_killed(&dir, &config, |run_dir| last_checkpointed_round(run_dir) == Some(1));
    assert_eq!(last_checkpointed_round(&killed), Some(1), "killed while fc2 was being pruned");
    let printed = resume(&killed);
    assert!(!printed.contains("fc1 try") && printed.contains("fc2 try 1"), "fc1 is not pruned again: {printed}");
    for file in ["rounds.csv", "attempts.csv", "metrics.csv"] {
        assert_eq!(without_timings(&killed.join(file)), without_timings(&whole.join(file)), "{file}");
    }
    assert_same_summary(&whole, &killed, &["test_accuracy", "sparsity", "params_nonzero"]);
}

/// A weight-pruning run killed with SIGKILL during round 2 and resumed records each round once
/// and ends exactly where the same run ends uninterrupted.
#[test]
fn a_run_killed_in_round_two_resumes_to_the_uninterrupted_result() {
    let dir = scratch("resume");
    let config = config_in(
        &dir,
        "name = \"resume\"\n[data]\ntrain_limit = 8000\ntest_limit = 2000\n[model]\nkind = \"mlp\"\n\
         [train]\nepochs = 1\n[prune]\nallocation = \"global\"\ntarget = 0.9\nrounds = 3\nretrain_epochs = 3\n",
    );
    let (whole, killed) = run_whole_and_killed(&dir, &config, |run_dir| last_checkpointed_round(run_dir) == Some(1));
    assert_eq!(last_checkpointed_round(&killed), Some(1), "killed during round 2");
    assert!(!killed.join("summary.json").exists());

    assert!(resume(&killed).contains("resuming after round 1"));
    let rounds: Vec<String> = without_timings(&killed.join("rounds.csv"));
    let numbers: Vec<&str> = rounds.iter().skip(1).map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(numbers, ["0", "1", "2", "3"], "each round exactly once");
    assert_eq!(rounds, without_timings(&whole.join("rounds.csv")), "the same rounds as uninterrupted");
    assert_eq!(without_timings(&killed.join("metrics.csv")), without_timings(&whole.join("metrics.csv")));
    assert_same_summary(
        &whole,
        &killed,
        &["test_accuracy", "test_loss", "sparsity", "params_nonzero", "dense_test_accuracy", "rounds", "epochs"],
    );
    assert!(!killed.join("checkpoints").exists());

    assert_clean_failure(
        &coppice(&["run", "--resume", killed.to_str().unwrap()]),
        &["summary.json", "nothing to resume"],
    );
    // A folder with a config in it is not a run to resume.
    assert_clean_failure(&coppice(&["run", "--resume", dir.to_str().unwrap()]), &["not an interrupted", "coppice run"]);
}

/// The uninterrupted run's epochs (1 to 3) of `resume-epochs` below: 16,000 samples each.
const EPOCHS_CONFIG: &str = "name = \"resume-epochs\"\n[data]\ntrain_limit = 16000\ntest_limit = 2000\n\
     [model]\nkind = \"mlp\"\n[train]\nepochs = 3\n";

fn epoch_one_saved(run_dir: &Path) -> bool {
    epoch_saved(run_dir, 1)
}

/// SIGINT (what Ctrl-C sends, and what the training screen's Ctrl-C sends now) stops training at
/// the next step: the process says where to resume, exits 130 and marks nothing finished. While
/// it runs, a second process cannot resume or export it.
#[test]
fn sigint_is_an_interruption_that_resumes_to_the_uninterrupted_result() {
    let dir = scratch("sigint");
    let config = config_in(&dir, EPOCHS_CONFIG);
    let (whole, stopped, ended) = run_whole_and_stopped(&dir, &config, epoch_one_saved, |child, run_dir| {
        let pid = child.id().to_string();
        let path = run_dir.to_str().unwrap();
        assert_clean_failure(&coppice(&["run", "--resume", path]), &["in use by pid", &pid]);
        assert_clean_failure(&coppice(&["export", path]), &["in use by pid", &pid]);
        signal(child, "INT");
    });
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(130), "{stderr}");
    let line = format!("resume with `coppice run --resume {}`", stopped.display());
    assert!(stderr.contains("interrupted after epoch") && stderr.contains(&line), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stopped.join("summary.json").exists() && !stopped.join("model.bpk").exists(), "nothing is finished");
    let printed = resume(&stopped);
    assert!(printed.contains("resuming after epoch"), "{printed}");
    assert_eq!(without_timings(&stopped.join("metrics.csv")), without_timings(&whole.join("metrics.csv")));
    assert_same_summary(&whole, &stopped, &["test_accuracy", "test_loss", "epochs"]);
}

/// SIGTERM (what a batch system sends at its time limit) is a stop too: exit 143, resumable.
#[test]
fn sigterm_is_an_interruption_that_resumes() {
    let dir = scratch("sigterm");
    let config = config_in(&dir, EPOCHS_CONFIG);
    let out = dir.join("runs");
    let mut child = start(&config, &out);
    let run_dir = wait_for(&mut child, &out, epoch_one_saved);
    signal(&child, "TERM");
    let ended = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("coppice run --resume"), "{stderr}");
    let stopped_after = journalled_epochs(&run_dir);
    assert!((1..3).contains(&stopped_after), "stopped after epoch {stopped_after} of 3");
    let printed = resume(&run_dir);
    assert!(printed.contains(&format!("resuming after epoch {stopped_after}")), "{printed}");
    for epoch in 1..=stopped_after {
        assert!(!printed.contains(&format!("epoch {epoch}/3")), "epoch {epoch} is not trained again: {printed}");
    }
    assert!(printed.contains("epoch 3/3"), "{printed}");
    assert_eq!(read_summary(&run_dir)["epochs"], 3);
    let whole = coppice(&["run", config.to_str().unwrap(), "--plain", "--out", dir.join("whole").to_str().unwrap()]);
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let whole = only_run(&dir.join("whole"));
    assert_eq!(weight_sums(&run_dir), weight_sums(&whole), "the resumed run's weights are the uninterrupted run's");
}

/// A loss that is not finite stops training with the epoch and step, and the run goes on at a
/// lower rate with `--resume --set`; keys a resume cannot change are refused.
#[test]
fn divergence_is_an_error_and_the_run_resumes_at_a_lower_rate() {
    let dir = scratch("diverge");
    let config = config_in(
        &dir,
        "name = \"diverge\"\n[data]\ntrain_limit = 2000\ntest_limit = 500\n[model]\nkind = \"mlp\"\n\
         [train]\nepochs = 2\nlr = 1e6\n",
    );
    let out = coppice(&["run", config.to_str().unwrap(), "--plain", "--out", dir.join("runs").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a diverged run is not a success: {stderr}");
    for needle in ["diverged", "step", "epoch 1", "train.lr", "--resume"] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    let run_dir = std::fs::read_dir(dir.join("runs")).unwrap().next().unwrap().unwrap().path();
    assert!(!run_dir.join("summary.json").exists(), "nothing is reported");
    let path = run_dir.to_str().unwrap();
    assert_clean_failure(
        &coppice(&["run", "--resume", path, "--set", "train.epochs=5"]),
        &["train.epochs", "train.lr"],
    );
    let resumed = coppice(&["run", "--resume", path, "--plain", "--set", "train.lr=0.05"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let summary = read_summary(&run_dir);
    assert!(summary["test_accuracy"].as_f64().unwrap() > 0.5 && summary["test_loss"].is_number(), "{summary}");
    assert!(std::fs::read_to_string(run_dir.join("config.toml")).unwrap().contains("lr = 0.05"));
}

/// With `[data.augment]` each sample's crop and flip come from (seed, epoch, sample), so a run
/// killed in epoch two resumes to the uninterrupted run's weights, bit for bit.
#[test]
fn an_augmented_run_killed_in_epoch_two_resumes_to_the_same_weights() {
    let dir = scratch("resume-augment");
    let config = config_in(&dir, &format!("{EPOCHS_CONFIG}[data.augment]\ncrop = 4\nflip = true\n"));
    let (whole, killed) = run_whole_and_killed(&dir, &config, epoch_one_saved);
    assert_eq!(journalled_epochs(&killed), 1, "killed during epoch 2");
    resume(&killed);
    assert_eq!(without_timings(&killed.join("metrics.csv")), without_timings(&whole.join("metrics.csv")));
    // model.bpk also holds burn's random parameter ids: compare the exported tensors instead.
    let weights = |run: &Path| {
        let out = coppice(&["export", run.to_str().unwrap(), "--out", run.join("weights").to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(run.join("weights/model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, Vec<u8>)> =
            file.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect();
        tensors.sort();
        tensors
    };
    let (resumed, uninterrupted) = (weights(&killed), weights(&whole));
    assert_eq!(resumed.len(), 6, "LeNet-300-100's weights and biases");
    assert!(resumed == uninterrupted, "the resumed run's weights equal the uninterrupted one's, bit for bit");

    // The augmentation is in effect: without it the first epoch trains otherwise.
    let plain = dir.join("plain");
    let out = coppice(&[
        "run",
        config.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "data.augment.crop=0",
        "--set",
        "data.augment.flip=false",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first_row = |run: &Path| without_timings(&run.join("metrics.csv"))[1].clone();
    assert_ne!(first_row(&only_run(&plain)), first_row(&whole));
}
