//! The CSV files of a run (`metrics.csv`, `rounds.csv`, `attempts.csv`, `sensitivity.csv`)
//! and the line each round prints.

use std::path::PathBuf;

use anyhow::Result;
use coppice_data::Table;
use coppice_prune::{LayerAttempt, RoundRecord, SensitivityPoint};
use coppice_train::EpochRecord;

use super::dir::write_atomic;

/// Metrics of every epoch of a run, by round (0 = dense training), rewritten after each epoch
/// batch so an interrupted run keeps what it measured.
pub struct MetricsLog {
    pub path: PathBuf,
    pub rows: Vec<(usize, EpochRecord)>,
}

impl MetricsLog {
    pub fn extend(&mut self, round: usize, epochs: &[EpochRecord]) -> Result<()> {
        self.rows.extend(epochs.iter().map(|e| (round, e.clone())));
        write_atomic(&self.path, metrics_csv(&self.rows).as_bytes())
    }
}

/// `metrics.csv`: `round` 0 is dense training, then each pruning round's retraining.
pub fn metrics_csv(rows: &[(usize, EpochRecord)]) -> String {
    let mut table = Table::new(["round", "epoch", "split", "loss", "accuracy", "lr", "seconds", "train_seconds"]);
    let number = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for (round, e) in rows {
        let (lr, secs) = (format!("{:.6}", e.lr), format!("{:.3}", e.seconds));
        let train_secs = format!("{:.3}", e.train_seconds);
        for (split, loss, accuracy) in
            [("train", Some(e.train_loss), Some(e.train_accuracy)), ("valid", e.valid_loss, e.valid_accuracy)]
        {
            table.push([
                round.to_string(),
                e.epoch.to_string(),
                split.to_string(),
                number(loss),
                number(accuracy),
                lr.clone(),
                secs.clone(),
                train_secs.clone(),
            ]);
        }
    }
    table.to_csv()
}

/// `attempts.csv`: every layer-wise try, backed-off ones included.
pub fn attempts_csv(attempts: &[LayerAttempt]) -> String {
    let mut table = Table::new([
        "layer",
        "attempt",
        "target",
        "valid_accuracy",
        "accepted",
        "sparsity",
        "params_total",
        "test_accuracy",
        "seconds",
    ]);
    for a in attempts {
        table.push([
            a.layer.clone(),
            a.attempt.to_string(),
            format!("{:.6}", a.target),
            format!("{:.6}", a.valid_accuracy),
            a.accepted.to_string(),
            format!("{:.6}", a.sparsity.sparsity),
            a.sparsity.params_total.to_string(),
            format!("{:.6}", a.test.accuracy),
            format!("{:.3}", a.seconds),
        ]);
    }
    table.to_csv()
}

/// The line a round prints when it ends.
pub fn round_line(r: &RoundRecord, total: usize) -> String {
    if let Some(q) = &r.quantized {
        let bits: Vec<String> = q.bits.iter().map(|(layer, bits)| format!("{layer} {bits}")).collect();
        return format!(
            "quantize ({:?}, bits {}): test acc {} before retraining, {:.2}% after, loss {:.4} | {:.1}s",
            q.method,
            bits.join(", "),
            r.pruned.map_or("-".into(), |e| format!("{:.2}%", e.accuracy * 100.0)),
            r.test.accuracy * 100.0,
            r.test.loss,
            r.seconds
        );
    }
    if let Some(s) = &r.scratch {
        return format!(
            "scratch ({:?}, {} epochs): test acc {} at initialization, {:.2}% trained, loss {:.4} | {:.1}s",
            s.budget,
            s.epochs,
            r.pruned.map_or("-".into(), |e| format!("{:.2}%", e.accuracy * 100.0)),
            r.test.accuracy * 100.0,
            r.test.loss,
            r.seconds
        );
    }
    let target = r.target.map_or("-".into(), |t| format!("{:.2}%", t * 100.0));
    format!(
        "round {}/{total}: target {target}, sparsity {:.2}%, compression {:.2}x | test acc {:.2}% loss {:.4} | {:.1}s",
        r.round,
        r.sparsity.sparsity * 100.0,
        r.sparsity.compression_ratio,
        r.test.accuracy * 100.0,
        r.test.loss,
        r.seconds
    )
}

/// `rounds.csv`: one row per round, round 0 being the network before pruning.
pub fn rounds_csv(rounds: &[RoundRecord]) -> String {
    let layer_names: Vec<&str> =
        rounds.first().map_or(vec![], |r| r.sparsity.layers.iter().map(|l| l.name.as_str()).collect());
    let mut header = vec!["round".to_string(), "target".into(), "sparsity".into()];
    header.extend(layer_names.iter().map(|name| format!("sparsity_{name}")));
    header.extend(
        [
            "params_nonzero",
            "compression_ratio",
            "pruned_test_accuracy",
            "test_accuracy",
            "test_loss",
            "seconds",
            "stage",
        ]
        .map(String::from),
    );
    let mut table = Table::new(header);
    for r in rounds {
        let mut row = vec![r.round.to_string(), r.target.map_or(String::new(), |t| format!("{t:.6}"))];
        row.push(format!("{:.6}", r.sparsity.sparsity));
        row.extend(r.sparsity.layers.iter().map(|layer| format!("{:.6}", layer.sparsity)));
        row.extend([
            r.sparsity.params_nonzero.to_string(),
            format!("{:.4}", r.sparsity.compression_ratio),
            r.pruned.map_or(String::new(), |e| format!("{:.6}", e.accuracy)),
            format!("{:.6}", r.test.accuracy),
            format!("{:.6}", r.test.loss),
            format!("{:.3}", r.seconds),
            stage(r).into(),
        ]);
        table.push(row);
    }
    table.to_csv()
}

/// What a record of `rounds.csv` is: the network before pruning, a pruning round, the
/// quantization after the last round (whose `pruned_test_accuracy` is then the quantized
/// network's before its retraining), or the train-from-scratch control (whose
/// `pruned_test_accuracy` is the pruned architecture's at its fresh initialization).
pub fn stage(r: &RoundRecord) -> &'static str {
    match (r.round, &r.quantized, &r.scratch) {
        (_, Some(_), _) => "quantize",
        (_, _, Some(_)) => "scratch",
        (0, None, None) => "dense",
        _ => "prune",
    }
}

/// `sensitivity.csv`.
pub fn sensitivity_csv(points: &[SensitivityPoint]) -> String {
    let mut table = Table::new(["layer", "sparsity", "accuracy", "loss"]);
    for p in points {
        table.push([
            p.layer.clone(),
            format!("{:.4}", p.sparsity),
            format!("{:.6}", p.accuracy),
            format!("{:.6}", p.loss),
        ]);
    }
    table.to_csv()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coppice_models::{InputShape, presets};
    use coppice_prune::sparsity_report;
    use coppice_train::Evaluation;

    #[test]
    fn rounds_csv_has_a_column_per_layer_and_a_row_per_round() {
        let input = InputShape { channels: 1, height: 2, width: 2 };
        let net = presets::mlp(input, &[3, 2], 2).init(&burn::prelude::Device::flex()).unwrap();
        let record = |round| RoundRecord {
            round,
            target: Some(0.5),
            sparsity: sparsity_report(&net),
            test: Evaluation { accuracy: 0.9, loss: 0.3, samples: 10 },
            pruned: None,
            seconds: 1.0,
            epochs: Vec::new(),
            quantized: None,
            scratch: None,
        };
        let csv = rounds_csv(&[record(0), record(1), record(2), record(3)]);
        assert!(csv.starts_with("round,target,sparsity,sparsity_fc1,sparsity_fc2,sparsity_fc3,params_nonzero"));
        assert_eq!(csv.lines().count(), 5);
    }
}
