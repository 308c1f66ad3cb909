//! Layer-wise pruning on a tiny model: order, back-off, freezing.

use std::collections::BTreeMap;

use burn::prelude::*;
use coppice_data::{ImageBatcher, ImageDataset, Normalization, synthetic_images};
use coppice_models::{Architecture, MlpConfig, Network, Prunable};
use coppice_prune::*;
use coppice_train::{Progress, TrainConfig, TrainSetup};

fn rounds(tag: &str) -> Rounds {
    let all = synthetic_images(384, 4, 1, 6, 6, 7);
    let (train, test) = (all.subset(&(0..320).collect::<Vec<_>>()), all.subset(&(320..384).collect::<Vec<_>>()));
    let batcher = ImageBatcher::for_set(&train, Normalization { mean: 0.5, std: 0.5 });
    Rounds {
        rounds: 1,
        retrain: TrainSetup {
            config: TrainConfig { epochs: 1, batch_size: 16, lr: 0.02, ..TrainConfig::default() },
            device: Device::flex(),
            artifact_dir: std::env::temp_dir().join(format!("coppice-layerwise-{}-{tag}", std::process::id())),
            seed: 3,
            progress: Progress::Quiet,
            label: tag.into(),
        },
        train: ImageDataset::new(train),
        valid: ImageDataset::new(test.clone()),
        test: ImageDataset::new(test),
        batcher,
        rewind_to: None,
    }
}

fn net() -> Network {
    Architecture::Mlp(MlpConfig { inputs: 36, hidden: vec![16, 8], classes: 4 }).init(&Device::flex())
}

fn config(granularity: Granularity, max_drop: f64, freeze_pruned: bool) -> LayerWise {
    LayerWise {
        granularity,
        unit_criterion: UnitCriterion::L1,
        targets: BTreeMap::from([("fc1".into(), 0.8), ("fc2".into(), 0.5), ("fc3".into(), 0.5)]),
        freeze_pruned,
        max_drop,
        max_retries: 2,
        seed: 1,
    }
}

#[test]
fn layers_go_in_forward_order_one_accepted_round_each() {
    let mut seen = Vec::new();
    let (out, attempts) =
        run_layerwise(net(), &config(Granularity::Weight, 1.0, false), &rounds("order"), vec![], None, &mut |a, _| {
            seen.push(a.layer.clone())
        })
        .unwrap();
    assert_eq!(seen, ["fc1", "fc2", "fc3"]);
    assert!(attempts.iter().all(|a| a.accepted));
    let report = sparsity_report(&out);
    let sparsity: Vec<f64> = report.layers.iter().map(|l| (l.sparsity * 100.0).round() / 100.0).collect();
    assert_eq!(sparsity, [0.8, 0.5, 0.5], "each layer at its target, the earlier ones kept");
}

#[test]
fn a_layer_that_drops_too_far_backs_off_by_halving_its_step() {
    // No accuracy can satisfy a negative allowance: every try backs off until the last.
    let mut config = config(Granularity::Weight, -1.0, false);
    config.targets = BTreeMap::from([("fc1".into(), 0.8)]);
    let (_, attempts) = run_layerwise(net(), &config, &rounds("backoff"), vec![], None, &mut |_, _| {}).unwrap();
    let tries: Vec<(f64, bool)> = attempts.iter().map(|a| (a.target, a.accepted)).collect();
    assert_eq!(tries, [(0.8, false), (0.4, false), (0.2, true)], "halved twice, then kept after max_retries");
    let fc1 = &attempts[2].sparsity.layers[0];
    assert!(
        (fc1.sparsity - 0.2).abs() < 1.0 / fc1.weights as f64 + 1e-12,
        "each retry starts from the layer's state before it"
    );
}

#[test]
fn frozen_layers_keep_their_values_while_later_layers_retrain() {
    for granularity in [Granularity::Weight, Granularity::Unit] {
        let mut snapshots: Vec<(String, Vec<f32>)> = Vec::new();
        run_layerwise(net(), &config(granularity, 1.0, true), &rounds("freeze"), vec![], None, &mut |a, n| {
            snapshots.push((a.layer.clone(), values_of(n, "fc.0.weight").unwrap()))
        })
        .unwrap();
        let after_fc1 = &snapshots[0].1;
        for (layer, values) in &snapshots[1..] {
            assert_eq!(values, after_fc1, "{granularity:?}: fc1 unchanged while {layer} retrained");
        }
    }
}

/// What `coppice run --resume` relies on for layer-wise runs: started again from the network
/// after the first accepted layer and the tries so far, the walk goes on at the next layer and
/// ends where the uninterrupted walk ends.
#[test]
fn resuming_after_the_first_layer_ends_where_an_uninterrupted_walk_ends() {
    for granularity in [Granularity::Weight, Granularity::Unit] {
        let config = config(granularity, 1.0, true);
        let dense = net();
        let mut after_first: Option<(Vec<LayerAttempt>, Network)> = None;
        let mut seen = Vec::new();
        let (whole, attempts) =
            run_layerwise(dense.deep_clone(), &config, &rounds("resume-whole"), vec![], None, &mut |a, n| {
                seen.push(a.clone());
                if a.accepted && after_first.is_none() {
                    after_first = Some((seen.clone(), n.deep_clone()));
                }
            })
            .unwrap();
        let (done, net_after_first) = after_first.unwrap();
        let mut later = Vec::new();
        let (resumed, resumed_attempts) = run_layerwise(
            net_after_first,
            &config,
            &rounds("resume-rest"),
            vec![],
            Some(LayerwiseDone::new(done, dense)),
            &mut |a, _| later.push(a.layer.clone()),
        )
        .unwrap();
        // Unit pruning never prunes the output layer, so its walk is fc1, fc2.
        let rest = &layer_order(&whole, granularity)[1..];
        assert_eq!(later, rest, "{granularity:?}: the first layer is not pruned again");
        assert_eq!(resumed_attempts.len(), attempts.len());
        assert_eq!(resumed.architecture(), whole.architecture());
        for layer in whole.prunable_layers() {
            assert_eq!(
                values_of(&whole, &layer.weight_path),
                values_of(&resumed, &layer.weight_path),
                "{granularity:?}: {}",
                layer.name
            );
        }
    }
}
