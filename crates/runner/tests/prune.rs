//! Pruning as users run it: neuron pruning of a VGG on CIFAR-10 files, sensitivity analysis,
//! layer-wise pruning, sweeps, and prune settings that cannot work.

mod common;

use common::*;

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
    let run = only_run(&out_dir);
    let summary = read_summary(&run);
    let arch = &summary["architecture"];
    let layers = arch["layers"].as_array().unwrap();
    let width = |name: &str| {
        let layer = layers.iter().find(|l| l["name"] == name).unwrap();
        layer["filters"].as_u64().or_else(|| layer["units"].as_u64()).unwrap()
    };
    let units: u64 = ["conv1", "conv2", "fc1"].map(width).iter().sum();
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
    let tuned = only_run(&tuned_out);
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
    let run = only_run(&out_dir);
    let csv = std::fs::read_to_string(run.join("sensitivity.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 3, "two layers, each unpruned and at two levels: {csv}");
    assert_eq!((rows[0][0], rows[3][0]), ("fc1", "fc2"), "layers in forward order");
    let accuracy = |r: &Vec<&str>| r[2].parse::<f64>().unwrap();
    assert!(accuracy(&rows[2]) < accuracy(&rows[0]), "99 % of fc1 gone costs accuracy: {csv}");
    // A line per layer: its three points as markers, and its name in the legend.
    let svg = std::fs::read_to_string(run.join("sensitivity.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 2 * 3, "{svg}");
    assert!(svg.contains("fc1") && svg.contains("fc2"));
    // Not a terminal: a plain line per evaluation, the unpruned network first.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("sensitivity 1/5") && printed.contains("unpruned"), "{printed}");
    assert!(printed.contains("sensitivity 5/5") && printed.contains("fc2 at 0.99"), "{printed}");
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
    let run = only_run(&out_dir);
    let rounds = std::fs::read_to_string(run.join("rounds.csv")).unwrap();
    assert_eq!(rounds.lines().count(), 1 + 1 + 2, "header, round 0, fc1 and fc2: {rounds}");
    let attempts = std::fs::read_to_string(run.join("attempts.csv")).unwrap();
    let layers: Vec<&str> = attempts.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert!(layers.first() == Some(&"fc1") && layers.last() == Some(&"fc2"), "{attempts}");
    let summary = read_summary(&run);
    assert!(summary["sparsity"].as_f64().unwrap() > 0.0);
    // Weight granularity leaves zeros in place: the sparse engine's figures, not a cut network's.
    let sparse = &summary["sparse"];
    assert!(sparse["bytes"].as_u64().is_some() && sparse["speedup_batch1"].as_f64().is_some(), "{summary}");
    assert!(summary.get("dense").is_none_or(|d| d.is_null()), "{summary}");
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
    let sweep = only_run(&out_dir);
    let csv = std::fs::read_to_string(sweep.join("sweep.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("train.lr,runs,failed,test_accuracy_mean,test_accuracy_std"), "{csv}");
    assert_eq!(rows.len(), 3, "one row per learning rate, seeds averaged: {csv}");
    assert!(rows[1].starts_with("0.05,2,0,") && rows[2].starts_with("0.1,2,0,"), "{csv}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().filter(|l| l.starts_with("sweep ") && l.contains("/4 (")).count(), 4, "{printed}");
    assert!(printed.contains("ETA") && printed.contains("test accuracy"), "{printed}");
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

/// Liu et al.'s control as users run it: the run's rounds.csv, summary.json and report.md hold
/// the scratch-trained network beside the fine-tuned one of the same run.
#[test]
fn a_scratch_control_run_records_both_networks() {
    let dir = scratch("scratch-control");
    let config = config_in(
        &dir,
        &format!(
            "{MLP_CONFIG}[data]\ntrain_limit = 400\ntest_limit = 100\n[train]\nepochs = 1\nbatch_size = 32\n[prune]\nstrategy = \"neuron\"\ncriterion = \"l1\"\ntarget = 0.5\nretrain_epochs = 1\nscratch = \"compute\"\n"
        ),
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_run(&out_dir);
    let rounds = std::fs::read_to_string(run.join("rounds.csv")).unwrap();
    let stages: Vec<&str> = rounds.lines().skip(1).map(|l| l.rsplit(',').next().unwrap()).collect();
    assert_eq!(stages, ["dense", "prune", "scratch"]);
    let summary = read_summary(&run);
    let scratch = &summary["scratch"];
    assert_eq!(scratch["budget"], "compute");
    assert!(scratch["epochs"].as_u64().unwrap() >= 2, "half the hidden units: at least twice the epochs: {scratch}");
    assert_eq!(scratch["test_accuracy"], summary["test_accuracy"], "the run's model is the scratch-trained one");
    assert_eq!(summary["rounds"], 1, "rounds counts the pruning rounds only");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Trained from scratch") && report.contains("Scratch-B"), "{report}");
}
