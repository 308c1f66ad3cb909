//! `data.dataset = "folder"` through the binary: a folder of PNG images sorted by class trains,
//! keeps its class names and measured normalization in the run and its exports, and a bad file
//! stops the run with its name and the fix.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clean_failure, config_in, coppice, only_run, read_summary, scratch};
use coppice_data::{synthetic_images, write_image_folder};

const CLASSES: [&str; 3] = ["circle", "cross", "square"];

/// train/ and test/ of three classes of 10x10 RGB images, 60 and 30 of them.
fn tiny_folder(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let names: Vec<String> = CLASSES.map(String::from).into();
    let set = synthetic_images(90, 3, 3, 10, 10, 5);
    let indices: Vec<usize> = (0..90).collect();
    write_image_folder(&set.subset(&indices[..60]), &names, &data.join("train")).unwrap();
    write_image_folder(&set.subset(&indices[60..]), &names, &data.join("test")).unwrap();
    data
}

fn folder_config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    config_in(
        dir,
        &format!(
            "name = \"folder\"\n[data]\ndataset = \"folder\"\ndir = {:?}\nvalid_fraction = 0.2\n\
             mean = \"auto\"\nstd = \"auto\"\n{extra}[model]\nkind = \"mlp\"\nhidden = [16]\n\
             [train]\nepochs = 6\nbatch_size = 8\nlr = 0.05\n",
            data.display().to_string()
        ),
    )
}

fn succeeded(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn folder_trains_and_keeps_class_names_and_statistics() {
    let dir = scratch("folder-run");
    let data = tiny_folder(&dir);
    let config = folder_config(&dir, &data, "");
    let out_dir = dir.join("runs");
    succeeded(&coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]));
    let run = only_run(&out_dir);
    let summary = read_summary(&run);
    assert_eq!(summary["classes"], serde_json::json!(CLASSES), "sorted folder names");
    let input = &summary["architecture"]["input"];
    assert_eq!(*input, serde_json::json!({"channels": 3, "height": 10, "width": 10}), "RGB PNGs: 3 channels");
    assert!(summary["test_accuracy"].as_f64().unwrap() > 0.9, "separable classes: {}", summary["test_accuracy"]);
    let means = summary["normalization"]["mean"].as_array().unwrap();
    assert_eq!(means.len(), 3, "one measured mean per channel: {}", summary["normalization"]);
    assert!(means.iter().all(|m| (0.1..0.5).contains(&m.as_f64().unwrap())), "{means:?}");

    let eval = succeeded(&coppice(&["eval", run.to_str().unwrap()]));
    assert!(eval.contains("circle") && eval.contains("square"), "per-class lines name the classes: {eval}");
    let csv = std::fs::read_to_string(run.join("confusion.csv")).unwrap();
    assert!(csv.starts_with("class,samples,correct,accuracy,circle,cross,square\n"), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.starts_with("cross,10,")).count(), 1, "10 test images per class: {csv}");
    let chart = std::fs::read_to_string(run.join("confusion.svg")).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("cross") && chart.contains("predicted"), "{chart}");
    let sparse = succeeded(&coppice(&["eval", run.to_str().unwrap(), "--sparse"]));
    let accuracy = format!("{:.2}%", summary["test_accuracy"].as_f64().unwrap() * 100.0);
    assert!(sparse.contains(&accuracy), "the sparse engine gives the run's {accuracy}: {sparse}");

    for format in ["safetensors", "sparse"] {
        let out = dir.join(format!("export-{format}"));
        succeeded(&coppice(&["export", run.to_str().unwrap(), "--format", format, "--out", out.to_str().unwrap()]));
        let file = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .unwrap();
        let bytes = std::fs::read(&file).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let metadata = header.metadata().clone().unwrap();
        let classes: Vec<String> = serde_json::from_str(&metadata["classes"]).unwrap();
        assert_eq!(classes, CLASSES, "{format}");
        let recorded = if format == "sparse" {
            serde_json::from_str::<serde_json::Value>(&metadata["model"]).unwrap()["normalization"].clone()
        } else {
            serde_json::from_str(&metadata["normalization"]).unwrap()
        };
        // summary.json writes the f32 values through f64; read both back as f32.
        let values = |v: &serde_json::Value, key: &str| -> Vec<f32> { serde_json::from_value(v[key].clone()).unwrap() };
        for key in ["mean", "std"] {
            assert_eq!(values(&recorded, key), values(&summary["normalization"], key), "{format} {key}");
        }
    }
}

#[test]
fn bad_images_stop_the_run_unless_skipped() {
    let dir = scratch("folder-bad");
    let data = tiny_folder(&dir);
    let bad = data.join("train/cross/broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let config = folder_config(&dir, &data, "");
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["broken.png", "data.skip_bad_images = true", "data.dir"]);
    assert!(!out_dir.exists() || std::fs::read_dir(&out_dir).unwrap().next().is_none(), "no run directory");

    let skip = folder_config(&dir, &data, "skip_bad_images = true\n");
    let out = coppice(&["run", skip.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: skipped") && stderr.contains("broken.png"), "{stderr}");
    assert_eq!(read_summary(&only_run(&out_dir))["train_samples"], 48, "60 good images less a fifth for validation");

    std::fs::remove_file(&bad).unwrap();
    std::fs::create_dir_all(data.join("test/dog")).unwrap();
    std::fs::write(data.join("test/dog/a.png"), b"").unwrap();
    let out = coppice(&["run", config.to_str().unwrap(), "--out", dir.join("more").to_str().unwrap()]);
    assert_clean_failure(&out, &["test/dog", "circle, cross, square"]);
    let mnist = config_in(&dir, "name = \"x\"\n[data]\nsize = [28, 28]\n[model]\nkind = \"mlp\"\n");
    assert_clean_failure(&coppice(&["validate", mnist.to_str().unwrap()]), &["data.size", "folder"]);
}
