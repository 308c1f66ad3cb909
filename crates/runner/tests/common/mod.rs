//! What the `coppice` binary's tests share: running it, scratch directories, tiny datasets and
//! the shape of a clean failure.
// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use coppice_data::idx::{IMAGES_MAGIC, LABELS_MAGIC, write_idx};

pub fn coppice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the coppice binary runs")
}

pub fn repo_root() -> PathBuf {
    // Read when the test runs, not baked in when it compiles: CI reuses one target directory for
    // clones at different paths, and cargo may not rebuild a test whose sources did not change.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    Path::new(&manifest_dir).join("../..").canonicalize().unwrap()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coppice-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts a failure with exactly one line on stderr that contains every `needles` entry.
pub fn assert_clean_failure(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
}

pub const MLP_CONFIG: &str = "name = \"cli-test\"\n[model]\nkind = \"mlp\"\nhidden = [32]\n";

pub fn config_in(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A tiny MNIST-format directory: 20 train and 10 test images of 28x28.
pub fn tiny_mnist(dir: &Path) {
    let image = |n: usize| vec![7u8; n * 28 * 28];
    let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>();
    write_idx(&dir.join("train-images-idx3-ubyte"), IMAGES_MAGIC, &[20, 28, 28], &image(20), false).unwrap();
    write_idx(&dir.join("train-labels-idx1-ubyte"), LABELS_MAGIC, &[20], &labels(20), false).unwrap();
    write_idx(&dir.join("t10k-images-idx3-ubyte"), IMAGES_MAGIC, &[10, 28, 28], &image(10), false).unwrap();
    write_idx(&dir.join("t10k-labels-idx1-ubyte"), LABELS_MAGIC, &[10], &labels(10), false).unwrap();
}

pub fn run_with_data(dir: &Path) -> Output {
    let config = config_in(dir, &format!("{MLP_CONFIG}[data]\ndir = {:?}\n", dir.join("data").display().to_string()));
    coppice(&["run", config.to_str().unwrap(), "--out", dir.join("runs").to_str().unwrap()])
}

/// The one run directory a command wrote under `out_dir`.
pub fn only_run(out_dir: &Path) -> PathBuf {
    std::fs::read_dir(out_dir).unwrap().next().unwrap().unwrap().path()
}

pub fn read_summary(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap()).unwrap()
}

/// The rows of a CSV without its timing columns (`seconds`, `train_seconds`), which no two runs
/// share.
pub fn without_timings(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let timed: Vec<usize> = (0..header.len()).filter(|&i| header[i].ends_with("seconds")).collect();
    text.lines()
        .map(|l| {
            l.split(',').enumerate().filter(|(i, _)| !timed.contains(i)).map(|(_, v)| v).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// Polls `ready` until it holds, failing the test when `child` ends first or two minutes pass
/// (a run that hangs must fail the test, not hold CI until its own time limit).
pub fn poll_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "the process ended before {what}");
        assert!(Instant::now() < deadline, "{what}: not within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many dense epochs a run's `checkpoints/dense-epochs.json` records: what a resume goes on
/// after.
pub fn journalled_epochs(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("checkpoints/dense-epochs.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Vec<serde_json::Value>>(&text).ok())
        .map_or(0, |epochs| epochs.len())
}

/// Epoch `epoch` is recorded in the journal, and burn-train has written its checkpoint in the
/// background: a kill now resumes after it.
pub fn epoch_saved(run_dir: &Path, epoch: usize) -> bool {
    journalled_epochs(run_dir) == epoch
        && ["model", "optim", "scheduler"]
            .iter()
            .all(|kind| run_dir.join(format!("train/checkpoint/{kind}-{epoch}.bpk")).is_file())
}

/// The SHA-256 of every tensor of a run's network, by name, through `coppice export`: two runs
/// that agree hold the same weights, bit for bit. (Not `model.bpk`'s own sum: burn stores each
/// parameter's id, drawn anew in every process, beside its values.)
pub fn weight_sums(run_dir: &Path) -> Vec<(String, String)> {
    let out = run_dir.with_extension("weights");
    let exported = coppice(&["export", run_dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut sums: Vec<(String, String)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, coppice_data::checksums::sha256_hex(view.data())))
        .collect();
    sums.sort();
    sums
}
