//! The success paths of commands whose other tests are about failures: what `validate`, `eval
//! --backend`, `export --format bpk`, `report`, `sensitivity --from`, `bench` and the forced
//! SIMD paths print and write when all is well.

mod common;

use std::path::PathBuf;

use common::*;

/// A finished one-epoch MLP run on a tiny MNIST directory, its config, and the scratch dir.
fn finished_run(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    let data_dir = dir.join("data").display().to_string();
    let config = config_in(
        &dir,
        &format!("{MLP_CONFIG}[data]\ndir = {data_dir:?}\nvalid_fraction = 0.2\n[train]\nepochs = 1\nbatch_size = 4\n"),
    );
    let out = coppice(&["run", config.to_str().unwrap(), "--plain", "--out", dir.join("runs").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_run(&dir.join("runs"));
    (dir, config, run)
}

fn stdout_of(args: &[&str]) -> String {
    let out = coppice(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn validate_eval_export_and_report_succeed_on_a_finished_run() {
    let (dir, config, run) = finished_run("commands-run");
    let path = run.to_str().unwrap();
    let printed = stdout_of(&["validate", config.to_str().unwrap()]);
    assert_eq!(printed.trim(), format!("{}: ok (cli-test on flex, 1 epochs)", config.display()));

    // Every CPU backend evaluates the saved model; the same weights classify the same images.
    let accuracy =
        |printed: &str| printed.split("test accuracy ").nth(1).unwrap().split(" (").next().unwrap().to_string();
    let flex = stdout_of(&["eval", path, "--backend", "flex"]);
    let ndarray = stdout_of(&["eval", path, "--backend", "ndarray"]);
    assert!(flex.contains("of 10 samples"), "{flex}");
    assert_eq!(accuracy(&flex), accuracy(&ndarray), "{flex} / {ndarray}");

    let printed = stdout_of(&["export", path, "--format", "bpk"]);
    assert_eq!(printed.trim(), run.join("export/model.bpk").display().to_string());
    assert_eq!(std::fs::read(run.join("export/model.bpk")).unwrap(), std::fs::read(run.join("model.bpk")).unwrap());
    let sums = std::fs::read_to_string(run.join("export/SHA256SUMS")).unwrap();
    assert!(sums.contains("  model.bpk") && sums.contains("  architecture.json"), "{sums}");

    let reports = dir.join("reports");
    let report = PathBuf::from(stdout_of(&["report", path, "--out", reports.to_str().unwrap()]).trim());
    assert!(report.starts_with(&reports), "{}", report.display());
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("cli-test"), "{md}");
    assert!(std::fs::read_to_string(report.join("training-curves.svg")).unwrap().starts_with("<svg"));
}

#[test]
fn sensitivity_from_a_finished_run_trains_nothing() {
    let (dir, config, run) = finished_run("commands-sensitivity");
    let out = dir.join("sensitivity");
    let printed = stdout_of(&[
        "sensitivity",
        config.to_str().unwrap(),
        "--from",
        run.to_str().unwrap(),
        "--levels",
        "0.5",
        "--plain",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!printed.contains("epoch 1/1"), "the run's network is taken as it is: {printed}");
    let csv = std::fs::read_to_string(only_run(&out).join("sensitivity.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2, "fc1 and fc2, each unpruned and at 0.5: {csv}");
}

/// `bench` on the bundled MNIST, with as few steps as it takes: one row per measured phase.
#[test]
fn bench_times_training_inference_and_masked_training() {
    let printed = stdout_of(&[
        "bench",
        "--backends",
        "flex",
        "--models",
        "lenet300",
        "--batch-sizes",
        "8",
        "--warmup",
        "1",
        "--windows",
        "1",
        "--steps",
        "2",
        "--inference",
        "--masks",
        "--plain",
    ]);
    let row = |phase: &str| printed.lines().find(|l| l.starts_with(phase)).map(str::to_string);
    let train = row("train-sgd").unwrap_or_else(|| panic!("no training row: {printed}"));
    let cells: Vec<&str> = train.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["flex", "lenet300", "8"], "{train}");
    assert!(cells[4].parse::<f64>().unwrap() > 0.0, "samples/s: {train}");
    assert!(train.ends_with('%'), "--masks adds the masked rate and its cost: {train}");
    let infer = row("infer ").unwrap_or_else(|| panic!("no inference row: {printed}"));
    assert!(infer.contains(" 1000 "), "inference at batch 1000: {infer}");
}

/// Every path `COPPICE_SIMD` can force that this CPU has gives the sparse engine's evaluation
/// the same accuracy; a path that is not one is refused before any work.
#[test]
fn every_simd_path_evaluates_alike_and_a_bad_one_is_refused() {
    let (_, _, run) = finished_run("commands-simd");
    let eval_with = |simd: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coppice"))
            .args(["eval", run.to_str().unwrap(), "--sparse"])
            .env("COPPICE_SIMD", simd)
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    let accuracy = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        printed.split("test accuracy ").nth(1).unwrap().split('%').next().unwrap().to_string()
    };
    let paths = coppice_simd::Simd::available();
    let widest = accuracy(&eval_with(paths[0].name()));
    for simd in &paths[1..] {
        assert_eq!(accuracy(&eval_with(simd.name())), widest, "{simd}");
    }
    assert_clean_failure(&eval_with("avx1024"), &["COPPICE_SIMD", "avx1024", "avx512, avx2 or scalar"]);
}

/// The README's first command on a fresh clone: no `runs/` yet, the default output directory
/// given as a relative name. Its parent is "", which the durable directory creation once tried
/// to open and flush, so the main job failed before it started.
#[test]
fn a_run_from_a_fresh_clone_creates_the_default_runs_folder() {
    let dir = scratch("fresh-clone");
    std::fs::create_dir(dir.join("data")).unwrap();
    tiny_mnist(&dir.join("data"));
    config_in(&dir, &format!("{MLP_CONFIG}[data]\ndir = \"data\"\n[train]\nepochs = 1\nbatch_size = 8\n"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(["run", "config.toml", "--plain"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(only_run(&dir.join("runs")).join("summary.json").is_file());
}
