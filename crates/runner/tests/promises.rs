//! What the README and docs/runs.md promise about runs that go wrong, each held to it: a second
//! Ctrl-C ends at once, a run being written cannot be read, a pruning round's retraining that
//! diverges resumes at a lower rate, a damaged checkpoint is caught by its sum, and
//! `summary.json` never holds null.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Every value in `json`, nested ones included, is something other than null.
fn assert_no_null(json: &serde_json::Value, at: &str) {
    match json {
        serde_json::Value::Null => panic!("{at} is null"),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| assert_no_null(v, &format!("{at}[{i}]")))
        }
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| assert_no_null(v, &format!("{at}.{k}"))),
        _ => {}
    }
}

/// A run whose steps take long enough that two signals sent one after the other both arrive
/// while its training runs.
const SLOW_STEPS: &str = "name = \"promises\"\n[data]\ntrain_limit = 2048\ntest_limit = 200\n[model]\nkind = \"mlp\"\n\
                          hidden = [1000, 1000]\n[train]\nepochs = 5\nbatch_size = 256\n";

#[test]
fn a_run_being_written_cannot_be_read_and_a_second_ctrl_c_ends_it_at_once() {
    let dir = scratch("promises-stop");
    let config = config_in(&dir, SLOW_STEPS);
    let run_dir = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(["run", config.to_str().unwrap(), "--plain", "--run-dir", run_dir.to_str().unwrap()])
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(&mut child, "epoch 1's checkpoint", || epoch_saved(&run_dir, 1));

    let pid = child.id().to_string();
    let path = run_dir.to_str().unwrap();
    let tuned = dir.join("tuned");
    assert_clean_failure(&coppice(&["eval", path]), &["in use by pid", &pid]);
    assert_clean_failure(&coppice(&["finetune", path, "--out", tuned.to_str().unwrap()]), &["in use by pid", &pid]);
    let pruning_dir = dir.join("pruning");
    std::fs::create_dir_all(&pruning_dir).unwrap();
    let pruning = config_in(
        &pruning_dir,
        &format!("{MLP_CONFIG}[prune]\ntarget = 0.5\nretrain_epochs = 1\nfrom = {:?}\n", run_dir.display().to_string()),
    );
    let from = coppice(&["run", pruning.to_str().unwrap(), "--out", dir.join("pruned").to_str().unwrap()]);
    assert_clean_failure(&from, &["prune.from", "in use by pid", &pid]);

    // A stop, then another at once: the second does not wait for the step the first lets
    // finish. SIGTERM as the second, since a second SIGINT that arrives while the first is still
    // pending merges with it (the kernel keeps one of each); every second stop takes one path.
    let sent = Command::new("bash").args(["-c", &format!("kill -s INT {pid}; kill -s TERM {pid}")]).status().unwrap();
    assert!(sent.success());
    let ended = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    // Which of the two the signal thread takes first is the kernel's choice: the status is the
    // second one's, 130 or 143.
    assert!(matches!(ended.status.code(), Some(130 | 143)), "{:?}: {stderr}", ended.status);
    let line = format!("interrupted; resume with `coppice run --resume {}`", run_dir.display());
    assert!(stderr.contains(&line) && !stderr.contains("interrupted after epoch"), "at once: {stderr}");

    // What was under way is redone: the run goes on after the last epoch it completed.
    let done = journalled_epochs(&run_dir);
    assert!((1..5).contains(&done), "stopped while training, after epoch {done} of 5");
    let resumed = coppice(&["run", config.to_str().unwrap(), "--plain", "--run-dir", path]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let printed = String::from_utf8_lossy(&resumed.stdout);
    let next = format!("epoch {}/5", done + 1);
    assert!(printed.contains(&format!("resuming after epoch {done}")) && printed.contains(&next), "{printed}");
    assert_no_null(&read_summary(&run_dir), "summary.json");
}

/// The pruning round's retraining at a rate that diverges: the run stops with the round's
/// network and records saved; a damaged checkpoint is named by its sum, and once restored the
/// run resumes at a lower rate and finishes.
#[test]
fn a_pruning_round_that_diverges_resumes_at_a_lower_rate_and_a_damaged_checkpoint_is_named() {
    let dir = scratch("promises-diverge");
    let config = config_in(
        &dir,
        "name = \"diverge-round\"\n[data]\ntrain_limit = 2000\ntest_limit = 500\n[model]\nkind = \"mlp\"\nhidden = [32]\n\
         [train]\nepochs = 1\n[prune]\ntarget = 0.5\nrounds = 2\nschedule = \"iterative\"\nretrain_epochs = 1\n\
         retrain_lr_scale = 1e9\n",
    );
    let run_dir = dir.join("run");
    let path = run_dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", config.to_str().unwrap(), "--plain", "--run-dir", path];
        args.extend(extra);
        coppice(&args)
    };
    let diverged = run(&[]);
    let stderr = String::from_utf8_lossy(&diverged.stderr);
    assert!(!diverged.status.success(), "{stderr}");
    assert!(stderr.contains("diverged") && stderr.contains("--resume"), "{stderr}");
    assert!(!run_dir.join("summary.json").exists());
    let progress = run_dir.join("checkpoints/progress.json");
    assert!(progress.is_file(), "round 0's records are saved");

    let kept = std::fs::read(&progress).unwrap();
    let mut damaged = kept.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x20;
    std::fs::write(&progress, damaged).unwrap();
    let resume = |scale: &str| coppice(&["run", "--resume", path, "--plain", "--set", scale]);
    assert_clean_failure(&resume("prune.retrain_lr_scale=0.2"), &["progress.json", "sha256"]);
    std::fs::write(&progress, kept).unwrap();

    let resumed = resume("prune.retrain_lr_scale=0.2");
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let summary = read_summary(&run_dir);
    assert_no_null(&summary, "summary.json");
    assert_eq!(summary["rounds"], 2, "{summary}");
    assert!(summary["test_accuracy"].as_f64().unwrap() > 0.2, "{summary}");
}
