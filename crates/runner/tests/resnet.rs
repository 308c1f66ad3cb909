//! ResNets as users run them: filter pruning across skip connections on a slice of MNIST, then
//! fine-tuning, evaluation and export of the pruned network.

mod common;

use common::*;

#[test]
fn a_resnet_loses_inner_and_residual_channels_and_the_cut_network_lives_on() {
    let dir = scratch("resnet");
    let config = config_in(
        &dir,
        "name = \"resnet\"\n[data]\ndir = \"datasets/mnist\"\ntrain_limit = 300\ntest_limit = 100\n\
         [model]\nkind = \"resnet\"\ndepth = 8\n[train]\nepochs = 1\nbatch_size = 32\n\
         [prune]\nstrategy = \"neuron\"\ncriterion = \"taylor\"\nallocation = \"layer\"\ntarget = 0.5\n\
         layers = { \"layer3.0\" = 0.25 }\ncalibration_batches = 2\nretrain_epochs = 1\n",
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_run(&out_dir);
    let summary = read_summary(&run);
    let arch = &summary["architecture"];
    let filters = |layer: &str| {
        let layers = arch["layers"].as_array().unwrap();
        layers.iter().find(|l| l["name"] == layer).unwrap()["filters"].as_u64().unwrap()
    };
    // Half the inner and residual channels of stages 1 and 2 (a stage of one block is named by
    // its block, layer3.0); a quarter of stage 3's residual channels.
    let residual = ["layer1.0.conv2", "layer2.0.conv2", "layer3.0.conv2", "layer3.0.downsample.0"].map(filters);
    assert_eq!(residual, [8, 16, 48, 48], "{arch}");
    assert_eq!(["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"].map(filters), [8, 16, 32], "{arch}");
    assert!(summary["flops"].as_u64().unwrap() * 2 < summary["dense"]["flops"].as_u64().unwrap());

    let eval = coppice(&["eval", run.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let tuned_out = dir.join("tuned");
    let out = coppice(&["finetune", run.to_str().unwrap(), "--epochs", "1", "--out", tuned_out.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tuned = only_run(&tuned_out);
    assert_eq!(read_summary(&tuned)["architecture"], *arch, "the saved architecture rebuilds the cut network");

    let out = coppice(&["export", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in
        ["layer2.0.conv1.weight [16, 8, 3, 3]", "layer2.0.downsample.0.weight [16, 8, 1, 1]", "fc.weight [10, 48]"]
    {
        assert!(listing.contains(name), "{name} missing: {listing}");
    }
    // The sparse engine runs the cut ResNet, adds and strided convs included.
    let out = coppice(&["eval", run.to_str().unwrap(), "--sparse"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    let accuracy = |key: &str| printed.split(key).nth(1).unwrap().split('%').next().unwrap().trim().to_string();
    assert_eq!(accuracy("test accuracy"), accuracy("dense flex"), "{printed}");
}

#[test]
fn weight_pruning_masks_a_resnets_bias_free_convs() {
    let dir = scratch("resnet-weight");
    let config = config_in(
        &dir,
        "name = \"resnet-weight\"\n[data]\ndir = \"datasets/mnist\"\ntrain_limit = 200\ntest_limit = 50\n\
         [model]\nkind = \"resnet\"\ndepth = 8\n[train]\nepochs = 1\nbatch_size = 32\n\
         [prune]\nstrategy = \"weight\"\nallocation = \"global\"\ntarget = 0.7\nretrain_epochs = 1\n",
    );
    let out_dir = dir.join("runs");
    let out = coppice(&["run", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--plain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_run(&out_dir);
    let summary = read_summary(&run);
    // report.md's layer table: `| layer | weights | non-zero | ...`, one row per prunable layer.
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    let (mut weights, mut nonzero) = (0usize, 0usize);
    for row in report.lines().skip_while(|l| !l.starts_with("## Layers")).take_while(|l| !l.starts_with("FLOPs")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if let (Some(Ok(w)), Some(Ok(n))) =
            (cells.get(2).map(|c| c.parse::<usize>()), cells.get(3).map(|c| c.parse::<usize>()))
        {
            (weights, nonzero) = (weights + w, nonzero + n);
        }
    }
    assert!(weights > 0, "{report}");
    let expected = (0.7 * weights as f64).round() as usize;
    assert_eq!(weights - nonzero, expected, "exactly 70 % of {weights} prunable weights are zero after retraining");
    let sparsity = summary["sparsity"].as_f64().unwrap();
    assert!((sparsity - expected as f64 / weights as f64).abs() < 1e-9, "summary.json: {sparsity}");
    assert!(
        summary["sparse"]["speedup_batch1000"].as_f64().unwrap() > 0.0,
        "the sparse engine runs ResNets: {summary}"
    );
}
