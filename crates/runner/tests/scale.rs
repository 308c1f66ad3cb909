//! Sweeps on engines that already exist: the emitted command lines run through GNU parallel
//! and collected give the in-process sweep's `sweep.csv`; a point killed mid-run resumes when its
//! line runs again; a Slurm script runs point N as array task N; sweeps compared side by side.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

const GRID: &str = "name = \"grid\"\nseed = [1, 2]\n[data]\ntrain_limit = 500\ntest_limit = 100\n[model]\nkind = \"mlp\"\n\
                    hidden = [16]\n[train]\nepochs = 1\nlr = [0.05, 0.1]\n[prune]\ntarget = 0.5\nretrain_epochs = 1\n";

/// `coppice sweep CONFIG --emit KIND --out OUT`: the sweep directory and what it printed.
fn emit(config: &Path, out: &Path, kind: &str) -> (PathBuf, String) {
    let emitted = coppice(&["sweep", config.to_str().unwrap(), "--emit", kind, "--out", out.to_str().unwrap()]);
    assert!(emitted.status.success(), "{}", String::from_utf8_lossy(&emitted.stderr));
    (only_run(out), String::from_utf8(emitted.stdout).unwrap())
}

/// Runs command lines two at a time through GNU parallel, as `.ci/run` installs it. Without it
/// the test fails: a stand-in would pass while the documented way of running a sweep went
/// untested.
fn run_in_parallel(commands: &str) {
    let has_parallel = Command::new("parallel").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(has_parallel, "GNU parallel is not installed; fix: apt-get install parallel (.ci/run does)");
    let mut engine = Command::new("parallel");
    engine.args(["--will-cite", "-j", "2"]);
    let mut child = engine.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), commands.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "every line succeeds");
}

fn collect(sweep_dir: &Path) -> std::process::Output {
    coppice(&["sweep", "--collect", sweep_dir.to_str().unwrap()])
}

#[test]
fn emitted_lines_run_by_gnu_parallel_and_collected_match_the_in_process_sweep() {
    let dir = scratch("scale-grid");
    let config = config_in(&dir, GRID);
    let (sweep_dir, commands) = emit(&config, &dir.join("emitted"), "commands");
    assert_eq!(commands.lines().count(), 4, "one line per point: {commands}");
    assert!(commands.lines().all(|l| l.contains(" run ") && l.contains("--run-dir")), "{commands}");

    let before = collect(&sweep_dir);
    assert!(!before.status.success(), "nothing has run yet");
    let listed = String::from_utf8_lossy(&before.stdout);
    assert_eq!(listed.lines().filter(|l| l.ends_with(": missing")).count(), 4, "{listed}");

    run_in_parallel(&commands);
    let collected = collect(&sweep_dir);
    assert!(collected.status.success(), "{}", String::from_utf8_lossy(&collected.stderr));
    assert!(String::from_utf8_lossy(&collected.stdout).contains("4 of 4 points finished"));

    let out = dir.join("in-process");
    let swept = coppice(&["sweep", config.to_str().unwrap(), "--jobs", "2", "--out", out.to_str().unwrap()]);
    assert!(swept.status.success(), "{}", String::from_utf8_lossy(&swept.stderr));
    let csv = |dir: &Path| std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    assert_eq!(csv(&sweep_dir), csv(&only_run(&out)), "the same runs, the same summary");
    assert!(csv(&sweep_dir).lines().nth(1).unwrap().starts_with("0.05,2,0,"), "{}", csv(&sweep_dir));

    // Running a finished point's line again does nothing; another config in its directory is refused.
    let again = Command::new("bash").args(["-c", commands.lines().next().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("finished earlier"));
    let point = sweep_dir.join("point-0");
    let point = point.to_str().unwrap();
    let other =
        coppice(&["run", config.to_str().unwrap(), "--run-dir", point, "--set", "seed=9", "--set", "train.lr=0.05"]);
    assert_clean_failure(&other, &["holds a run of another config", "--run-dir"]);
}

#[test]
fn a_point_killed_mid_run_resumes_when_its_line_runs_again() {
    let dir = scratch("scale-killed");
    let config = config_in(
        &dir,
        "name = \"killed\"\nseed = [3]\n[data]\ntrain_limit = 16000\ntest_limit = 500\n[model]\nkind = \"mlp\"\n\
         [train]\nepochs = 3\n",
    );
    let (sweep_dir, commands) = emit(&config, &dir.join("sweeps"), "commands");
    let line = commands.lines().next().unwrap();
    // Its own process group, so that the kill reaches coppice and not only the shell.
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new("bash").args(["-c", line]).stdout(Stdio::null()).stderr(Stdio::null()),
        0,
    )
    .spawn()
    .unwrap();
    let point = sweep_dir.join("point-0");
    // Epoch 1 in the journal too: burn-train's checkpoint alone is not what a resume goes on from.
    poll_until(&mut child, "epoch 1's checkpoint", || epoch_saved(&point, 1));
    let group = format!("-{}", child.id());
    assert!(Command::new("kill").args(["-s", "KILL", "--", &group]).status().unwrap().success());
    child.wait().unwrap();

    let listed = collect(&sweep_dir);
    assert!(!listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("point 0 (seed=3): stopped") && listed.contains(line), "{listed}");

    let resumed = Command::new("bash").args(["-c", line]).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let printed = String::from_utf8_lossy(&resumed.stdout);
    assert!(printed.contains("resuming after epoch") && !printed.contains("epoch 1/3"), "{printed}");
    let collected = collect(&sweep_dir);
    assert!(collected.status.success(), "{}", String::from_utf8_lossy(&collected.stdout));
    assert!(String::from_utf8_lossy(&collected.stdout).contains("1 of 1 points finished"));
}

#[test]
fn a_slurm_array_task_runs_its_own_point() {
    let dir = scratch("scale-slurm");
    let config = config_in(&dir, GRID);
    let (sweep_dir, script) = emit(&config, &dir.join("sweeps"), "slurm");
    assert!(script.starts_with("#!/bin/bash\n") && script.contains("#SBATCH --array=0-3\n"), "{script}");
    assert_eq!(std::fs::read_to_string(sweep_dir.join("sweep.slurm")).unwrap(), script);
    // What Slurm would do for task 2, without Slurm: the script with SLURM_ARRAY_TASK_ID set.
    let task =
        Command::new("bash").arg(sweep_dir.join("sweep.slurm")).env("SLURM_ARRAY_TASK_ID", "2").output().unwrap();
    assert!(task.status.success(), "{}", String::from_utf8_lossy(&task.stderr));
    assert!(read_summary(&sweep_dir.join("point-2"))["seed"] == 2, "task 2 is the grid's third point");
    assert!(!sweep_dir.join("point-1").exists());
    assert_clean_failure(
        &coppice(&["sweep", config.to_str().unwrap(), "--emit", "pbs", "--out", dir.to_str().unwrap()]),
        &["--emit", "commands or slurm"],
    );
}

#[test]
fn an_iterative_sweep_gets_its_rounds_averaged_over_seeds_per_rewind() {
    let dir = scratch("scale-rounds");
    let config = config_in(
        &dir,
        "name = \"lottery\"\nseed = [1, 2]\n[data]\ntrain_limit = 500\ntest_limit = 100\n[model]\nkind = \"mlp\"\n\
         hidden = [16]\n[train]\nepochs = 2\noptimizer = \"adam\"\nlr = 0.002\n[prune]\ntarget = 0.875\nschedule = \"iterative\"\n\
         rounds = 3\nretrain_epochs = 2\nretrain_lr_scale = 1.0\nrewind = [\"init\", \"random\"]\n",
    );
    let out = dir.join("sweeps");
    let swept = coppice(&["sweep", config.to_str().unwrap(), "--jobs", "2", "--out", out.to_str().unwrap()]);
    assert!(swept.status.success(), "{}", String::from_utf8_lossy(&swept.stderr));
    let sweep_dir = only_run(&out);
    let table =
        coppice_data::Table::from_csv(&std::fs::read_to_string(sweep_dir.join("sweep-rounds.csv")).unwrap()).unwrap();
    assert_eq!(table.rows.len(), 2 * 4, "rounds 0 to 3 for each rewind");
    for (i, row) in table.rows.iter().enumerate() {
        assert_eq!(row[0], if i < 4 { "init" } else { "random" });
        assert_eq!(table.number(row, "runs"), Some(2.0), "both seeds");
        let left = table.number(row, "weights_left_mean").unwrap();
        let expected = 0.5f64.powi((i % 4) as i32);
        assert!((left - expected).abs() < 0.01, "round {}: {left} of the weights left, not {expected}", i % 4);
        let stop = table.number(row, "early_stop_epoch_mean").unwrap();
        assert!((1.0..=2.0).contains(&stop), "an epoch of the round's training: {stop}");
    }
    // Round 0 is the same dense network for both arms; the arms part from round 1.
    let accuracy = |i: usize| table.number(&table.rows[i], "test_accuracy_mean").unwrap();
    assert_eq!(accuracy(0), accuracy(4));
    assert_ne!(accuracy(1), accuracy(5), "random rewinding trains other weights");
    for chart in ["sweep-rounds.svg", "sweep-early-stop.svg"] {
        assert!(std::fs::read_to_string(sweep_dir.join(chart)).unwrap().contains("<svg"), "{chart}");
    }
}

#[test]
fn sweeps_side_by_side_give_accuracy_against_parameters_and_measured_time() {
    let dir = scratch("scale-tradeoff");
    let base = "seed = [1, 2]\n[data]\ntrain_limit = 500\ntest_limit = 100\n[model]\nkind = \"mlp\"\nhidden = [32]\n\
                [train]\nepochs = 1\n";
    let sweep = |name: &str, prune: &str| {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let config = config_in(&sub, &format!("name = \"{name}\"\n{base}[prune]\nretrain_epochs = 1\n{prune}"));
        let out = sub.join("sweeps");
        let swept = coppice(&["sweep", config.to_str().unwrap(), "--jobs", "2", "--out", out.to_str().unwrap()]);
        assert!(swept.status.success(), "{}", String::from_utf8_lossy(&swept.stderr));
        only_run(&out)
    };
    let weight = sweep("weights", "target = [0.5, 0.9]\n");
    let neuron = sweep("neurons", "strategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\n");
    let (weight, neuron) = (weight.to_str().unwrap(), neuron.to_str().unwrap());
    let out = dir.join("reports");
    let report = coppice(&["report", weight, neuron, "--out", out.to_str().unwrap()]);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let report_dir = only_run(&out);
    let table =
        coppice_data::Table::from_csv(&std::fs::read_to_string(report_dir.join("tradeoff.csv")).unwrap()).unwrap();
    let methods: Vec<&str> = table.rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(methods, ["dense", "weights: target 0.5", "weights: target 0.9", "neurons"]);
    let number = |row: usize, key: &str| table.number(&table.rows[row], key).unwrap();
    // The dense network: both seeds, as every sweep trained it; its 32-unit MLP has 25,450 parameters.
    assert_eq!((number(0, "runs"), number(0, "params_nonzero_mean")), (2.0, 25450.0));
    assert!(number(2, "params_nonzero_mean") < number(1, "params_nonzero_mean"));
    assert!(number(3, "params_nonzero_mean") < number(0, "params_nonzero_mean"), "neurons removed for real");
    for row in 0..table.rows.len() {
        assert!((0.0..=1.0).contains(&number(row, "test_accuracy_mean")));
        assert!(number(row, "ms_batch1_mean") > 0.0 && number(row, "ms_batch1000_mean") > 0.0);
    }
    let engines: Vec<&str> = table.rows.iter().map(|r| r[table.column("engine_batch1000").unwrap()].as_str()).collect();
    assert!(engines.iter().all(|e| ["flex", "sparse"].contains(e)), "{engines:?}");
    assert_eq!(engines[3], "flex", "a network without zeros has no sparse engine to run on");
    for chart in ["accuracy-vs-parameters.svg", "accuracy-vs-latency-batch1.svg", "accuracy-vs-latency-batch1000.svg"] {
        let svg = std::fs::read_to_string(report_dir.join(chart)).unwrap();
        assert!(svg.contains("(log)") && svg.contains("neurons"), "{chart}");
    }
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| weights: target 0.9 | 2 |"), "{md}");

    let run = neuron.to_string() + "/point-0";
    assert_clean_failure(
        &coppice(&["report", weight, &run, "--out", out.to_str().unwrap()]),
        &["are sweeps", "not both"],
    );
    let (unrun, _) = emit(&config_in(&dir, GRID), &dir.join("emitted"), "commands");
    assert_clean_failure(
        &coppice(&["report", unrun.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        &["no finished runs", "--collect"],
    );
}
