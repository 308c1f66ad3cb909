//! The same config on several backends: `coppice compare`, backends that are unknown or not
//! compiled in, and (with the `wgpu` feature) wgpu against flex.

mod common;

use std::path::Path;
#[cfg(feature = "wgpu")]
use std::process::Command;

use common::*;
use coppice_data::Table;

/// `compare.csv` as (backend, column -> value) rows.
fn read_compare_csv(compare_dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let table = Table::from_csv(&std::fs::read_to_string(compare_dir.join("compare.csv")).unwrap()).unwrap();
    table.rows.iter().map(|row| table.header.iter().cloned().zip(row.iter().cloned()).collect()).collect()
}

#[test]
fn compare_trains_every_backend_from_the_same_weights_and_their_logits_agree() {
    let dir = scratch("compare");
    let out = coppice(&[
        "compare",
        "configs/lenet300-mnist.toml",
        "--backends",
        "flex,ndarray",
        "--epochs",
        "1",
        "--set",
        "data.train_limit=2000",
        "--set",
        "data.test_limit=500",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("| flex |") && printed.contains("| ndarray |"), "{printed}");
    let compare_dir = only_run(&dir);
    let rows = read_compare_csv(&compare_dir);
    assert_eq!(rows.iter().map(|r| r["backend"].as_str()).collect::<Vec<_>>(), ["flex", "ndarray"]);
    for row in &rows {
        let number = |key: &str| row[key].parse::<f64>().unwrap();
        assert!(number("max_logit_difference") < 1e-4, "same weights, same logits: {row:?}");
        assert!(number("test_accuracy") > 0.7, "{row:?}");
        assert!(number("train_samples_per_second") > 0.0 && number("inference_samples_per_second") > 0.0);
        assert!(number("peak_rss_mb") > 0.0, "{row:?}");
    }
    // Both trained from the same initial weights, so a single epoch on the same batches agrees closely.
    let accuracies: Vec<f64> = rows.iter().map(|r| r["test_accuracy"].parse().unwrap()).collect();
    assert!((accuracies[0] - accuracies[1]).abs() <= 0.01, "{accuracies:?}");
}

#[test]
fn backends_that_are_unknown_or_not_compiled_in_are_named() {
    assert_clean_failure(
        &coppice(&["compare", "configs/lenet300-mnist.toml", "--backends", "flex,tpu"]),
        &["--backends", "tpu", "flex, ndarray, wgpu, cuda"],
    );
    #[cfg(not(feature = "cuda"))]
    assert_clean_failure(
        &coppice(&["run", "configs/lenet300-mnist.toml", "--backend", "cuda"]),
        &["cuda", "not compiled", "--features cuda"],
    );
    #[cfg(not(feature = "wgpu"))]
    assert_clean_failure(
        &coppice(&["compare", "configs/lenet300-mnist.toml", "--backends", "flex,wgpu"]),
        &["wgpu", "not compiled", "--features wgpu"],
    );
}

/// The float32 values of a safetensors file, tensor by tensor in name order.
#[cfg(feature = "wgpu")]
fn safetensors_values(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors.iter().flat_map(|(_, t)| t.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()))).collect()
}

/// wgpu (on Mesa's llvmpipe where there is no GPU) against flex: the same weights give the same
/// logits within 1e-4, and a few training steps from the same initial weights on the same
/// batches end at weights within 1e-4 of each other.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_forward_and_training_steps_agree_with_flex() {
    let dir = scratch("wgpu");
    let out = coppice(&[
        "compare",
        "configs/lenet300-mnist.toml",
        "--backends",
        "flex,wgpu",
        "--epochs",
        "1",
        "--set",
        "model.hidden=[32]",
        "--set",
        "train.batch_size=64",
        "--set",
        "data.train_limit=512",
        "--set",
        "data.test_limit=256",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compare_dir = only_run(&dir);
    let rows = read_compare_csv(&compare_dir);
    let wgpu = rows.iter().find(|r| r["backend"] == "wgpu").unwrap();
    let logit_difference: f64 = wgpu["max_logit_difference"].parse().unwrap();
    assert!(logit_difference < 1e-4, "forward: {logit_difference}");
    let weights = |backend: &str| {
        let run_dir = std::fs::read_dir(compare_dir.join(backend)).unwrap().next().unwrap().unwrap().path();
        let export = coppice(&["export", run_dir.to_str().unwrap()]);
        assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
        safetensors_values(&run_dir.join("export/model.safetensors"))
    };
    let (flex, wgpu) = (weights("flex"), weights("wgpu"));
    assert_eq!(flex.len(), wgpu.len());
    let largest = flex.iter().zip(&wgpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(largest < 1e-4, "8 training steps: weights differ by up to {largest}");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_device_that_cannot_be_opened_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_coppice"))
        .args(["run", "configs/lenet300-mnist.toml", "--backend", "wgpu"])
        .env("CUBECL_WGPU_DEFAULT_DEVICE", "DiscreteGpu(7)")
        // Without it, libwayland (loaded by the Vulkan driver) prints a line of its own on a
        // machine without a display session.
        .env("XDG_RUNTIME_DIR", scratch("wgpu-runtime-dir"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_clean_failure(&out, &["backend wgpu", "cannot open", "fix:"]);
}
