//! Deep Compression as users run it: a run with `[quantize]`, its records, `export --format
//! compressed`, `eval --sparse` and `bench --sparse --compressed` on the file.

mod common;

use common::*;

#[test]
fn a_quantized_run_exports_a_compressed_file_the_engine_evaluates_exactly() {
    let dir = scratch("compressed");
    let config = config_in(
        &dir,
        "name = \"compressed\"\n[data]\ndir = \"datasets/mnist\"\ntrain_limit = 600\ntest_limit = 300\n\
         [model]\nkind = \"mlp\"\nhidden = [64, 32]\n[train]\nepochs = 1\n\
         [prune]\nstrategy = \"weight\"\ntarget = 0.9\nretrain_epochs = 1\n\
         [quantize]\nfc_bits = 3\nretrain_epochs = 1\n",
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_run(&out_dir);

    let rounds = std::fs::read_to_string(run.join("rounds.csv")).unwrap();
    assert!(rounds.lines().next().unwrap().ends_with(",stage"), "{rounds}");
    assert!(rounds.lines().last().unwrap().ends_with(",quantize"), "the last row is the stage's: {rounds}");
    let summary = read_summary(&run);
    assert_eq!(summary["rounds"], 1, "the stage is no pruning round: {summary}");
    let quantize = &summary["quantize"];
    assert_eq!(quantize["bits"]["fc1"], 3, "{quantize}");
    assert_eq!(quantize["test_accuracy"], summary["test_accuracy"]);
    assert!(quantize["test_accuracy_before_retraining"].as_f64().is_some(), "{quantize}");
    let compressed = &summary["compressed"];
    let bytes = compressed["bytes"].as_u64().unwrap();
    assert!(bytes * 3 < compressed["sparse_bytes"].as_u64().unwrap(), "3-bit codes beat f32 CSR: {compressed}");
    for layer in compressed["layers"].as_array().unwrap() {
        let stage = |key: &str| layer[key].as_u64().unwrap();
        assert!(
            stage("coded_bytes") < stage("sparse_bytes") && stage("sparse_bytes") < stage("dense_bytes"),
            "{layer}"
        );
    }

    let out = coppice(&["export", run.to_str().unwrap(), "--format", "compressed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("quantized B") && table.contains("coded B"), "export prints each stage: {table}");
    let file = run.join("export/model.compressed.safetensors");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), bytes, "the summary measured this file");
    let sums = std::fs::read_to_string(run.join("export/SHA256SUMS")).unwrap();
    assert!(sums.contains("model.compressed.safetensors"), "{sums}");

    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let reported = format!("test accuracy {:.2}%", summary["test_accuracy"].as_f64().unwrap() * 100.0);
    assert!(line.contains(&reported), "the run reported {reported}: {line}");

    let out = coppice(&["bench", "--sparse", run.to_str().unwrap(), "--compressed", file.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().find(|l| l.starts_with(" 1000  ")).expect("a row for batch 1000");
    assert!(!row.split_whitespace().nth(4).unwrap().starts_with('-'), "the compressed model was timed: {row}");
}

#[test]
fn a_run_without_quantize_is_not_exported_compressed() {
    let dir = scratch("not-quantized");
    let config = config_in(
        &dir,
        "name = \"plain\"\n[data]\ndir = \"datasets/mnist\"\ntrain_limit = 200\ntest_limit = 100\n\
         [model]\nkind = \"mlp\"\nhidden = [16]\n[train]\nepochs = 1\n\
         [prune]\nstrategy = \"weight\"\ntarget = 0.5\nretrain_epochs = 0\n",
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = coppice(&["export", only_run(&out_dir).to_str().unwrap(), "--format", "compressed"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("[quantize]") && error.contains("fix"), "{error}");
}
