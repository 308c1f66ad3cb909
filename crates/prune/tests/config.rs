//! The `[prune]` config: every check names its field.

use std::collections::BTreeMap;

use coppice_prune::*;

fn layer(target: f64) -> PruneConfig {
    PruneConfig { target: Some(target), ..PruneConfig::default() }
}

#[test]
fn layerwise_settings_are_checked() {
    let layerwise = PruneConfig { strategy: StrategyKind::Layerwise, ..layer(0.5) };
    assert!(layerwise.validate().is_ok());
    assert_eq!(field_of(&PruneConfig { max_drop: -0.1, ..layerwise.clone() }), "prune.max_drop");
    assert_eq!(field_of(&PruneConfig { allocation: AllocationKind::Global, ..layerwise.clone() }), "prune.allocation");
    let unit = PruneConfig { granularity: Granularity::Unit, criterion: Criterion::L2, ..layerwise.clone() };
    assert!(unit.validate().is_ok());
    let sensitivity = PruneConfig { targets: TargetSource::Sensitivity, target: None, ..layerwise };
    assert!(sensitivity.validate().is_ok(), "sensitivity needs no target");
    assert_eq!(field_of(&PruneConfig { tolerance: 1.5, ..sensitivity }), "prune.tolerance");
    let names = ["fc1".to_string(), "fc2".to_string()];
    let mut config = layer(0.5);
    config.layers.insert("fc2".into(), 0.9);
    assert_eq!(config.config_targets(&names), BTreeMap::from([("fc1".into(), 0.5), ("fc2".into(), 0.9)]));
}

#[test]
fn neuron_settings_are_checked() {
    let neuron = |criterion| PruneConfig { strategy: StrategyKind::Neuron, criterion, ..layer(0.5) };
    assert!(neuron(Criterion::L1).validate().is_ok());
    assert_eq!(field_of(&neuron(Criterion::Magnitude)), "prune.criterion");
    assert_eq!(field_of(&PruneConfig { target: Some(1.0), ..neuron(Criterion::L2) }), "prune.target");
    assert_eq!(field_of(&PruneConfig { min_units: 0, ..neuron(Criterion::L2) }), "prune.min_units");
    let no_data = PruneConfig { calibration_batches: 0, ..neuron(Criterion::Taylor) };
    assert_eq!(field_of(&no_data), "prune.calibration_batches");
    let weight_with_unit_criterion = PruneConfig { criterion: Criterion::L1, ..layer(0.5) };
    assert_eq!(field_of(&weight_with_unit_criterion), "prune.criterion");
}

fn field_of(config: &PruneConfig) -> String {
    config.validate().expect_err("must be rejected").0
}

#[test]
fn sparsity_outside_unit_interval_is_rejected() {
    assert_eq!(field_of(&layer(1.3)), "prune.target");
    assert_eq!(field_of(&layer(-0.1)), "prune.target");
    assert_eq!(field_of(&layer(1.0)), "prune.target");
    let mut config = layer(0.5);
    config.layers.insert("fc3".into(), 1.2);
    assert_eq!(field_of(&config), "prune.layers.fc3");
    assert!(layer(0.0).validate().is_ok());
}

#[test]
fn negative_threshold_and_zero_rounds_are_rejected() {
    let config =
        PruneConfig { allocation: AllocationKind::Threshold, threshold: Some(-0.05), ..PruneConfig::default() };
    assert_eq!(field_of(&config), "prune.threshold");
    let config = PruneConfig { rounds: 0, ..layer(0.5) };
    assert_eq!(field_of(&config), "prune.rounds");
}

#[test]
fn allocations_need_their_key() {
    assert_eq!(field_of(&PruneConfig::default()), "prune.target");
    let config = PruneConfig { allocation: AllocationKind::Quality, ..PruneConfig::default() };
    assert_eq!(field_of(&config), "prune.quality");
}

#[test]
fn unknown_layer_override_is_named() {
    let mut config = layer(0.5);
    config.layers.insert("fc9".into(), 0.5);
    let (field, text) = config.check_network(&["fc1".into(), "fc2".into()], &[]).unwrap_err();
    assert_eq!(field, "prune.layers.fc9");
    assert!(text.contains("fc1, fc2"));
}

#[test]
fn unit_pruning_refuses_the_output_layer_and_floors_above_a_layer() {
    let names = ["fc1".to_string(), "fc2".to_string()];
    let units = [("fc1".to_string(), 12)];
    let mut config = PruneConfig { strategy: StrategyKind::Neuron, criterion: Criterion::L1, ..layer(0.5) };
    config.layers.insert("fc2".into(), 0.5);
    let (field, text) = config.check_network(&names, &units).unwrap_err();
    assert_eq!(field, "prune.layers.fc2");
    assert!(text.contains("output layer"), "{text}");
    config.layers.clear();
    config.min_units = 13;
    let (field, text) = config.check_network(&names, &units).unwrap_err();
    assert_eq!(field, "prune.min_units");
    assert!(text.contains("12 units of fc1"), "{text}");
    // Weight pruning may override the output layer.
    let mut weight = layer(0.5);
    weight.layers.insert("fc2".into(), 0.5);
    assert!(weight.check_network(&names, &units).is_ok());
}

#[test]
fn agp_places_its_ramp_in_steps() {
    let config = PruneConfig {
        schedule: ScheduleKind::Agp,
        retrain_epochs: 3,
        agp_start_epoch: 0.5,
        agp_end_epoch: Some(2.0),
        agp_frequency: 10,
        ..layer(0.9)
    };
    config.validate().unwrap();
    let pruning = config.weight_pruning(1, 100).unwrap();
    assert_eq!(pruning.schedule, Schedule::Agp { initial: 0.0, start: 50, end: 200, frequency: 10 });
    let bad = PruneConfig { agp_end_epoch: Some(4.0), ..config };
    assert_eq!(field_of(&bad), "prune.agp_end_epoch");
}

#[test]
fn n_of_m_patterns_are_checked() {
    let pattern = |p: &str| PruneConfig { pattern: Some(p.into()), ..PruneConfig::default() };
    assert!(pattern("2:4").validate().is_ok(), "a pattern needs no target");
    for bad in ["2-4", "4:4", "0:4", "x:4"] {
        assert_eq!(field_of(&pattern(bad)), "prune.pattern", "{bad}");
    }
    assert_eq!(field_of(&PruneConfig { target: Some(0.5), ..pattern("2:4") }), "prune.pattern");
    assert_eq!(
        field_of(&PruneConfig { strategy: StrategyKind::Neuron, criterion: Criterion::L1, ..pattern("2:4") }),
        "prune.pattern"
    );
    assert_eq!(field_of(&PruneConfig { include_bias: true, ..pattern("2:4") }), "prune.include_bias");
    let pruning = pattern("2:4").weight_pruning(1, 100).unwrap();
    assert_eq!(pruning.allocation, Allocation::NofM { n: 2, m: 4 });
}
