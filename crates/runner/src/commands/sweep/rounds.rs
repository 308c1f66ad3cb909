//! The rounds of an iterative sweep, round by round over seeds: `sweep-rounds.csv`, and the
//! charts of the lottery-ticket experiment (Frankle & Carbin 2019), test accuracy and the epoch
//! of early stopping against the weights left, one line per method.

use std::path::Path;

use anyhow::Result;
use coppice_data::Table;

use crate::plot::{SpreadSeries, XAxis, YAxis, spread_chart};
use crate::rundir::dir::write_atomic;
use crate::sweepdir::{Axis, cell, groups, mean_std, method_label, point_dir, seedless};

/// One round of one run.
struct Round {
    round: usize,
    /// Fraction of the prunable weights that are zero.
    sparsity: f64,
    test_accuracy: f64,
    /// The epoch of the round's training with the lowest validation loss (Frankle & Carbin's
    /// early-stopping iteration); none without training.
    early_stop: Option<f64>,
}

fn read_rounds(run_dir: &Path) -> Option<Vec<Round>> {
    let rounds = Table::from_csv(&std::fs::read_to_string(run_dir.join("rounds.csv")).ok()?).ok()?;
    let metrics = Table::from_csv(&std::fs::read_to_string(run_dir.join("metrics.csv")).ok()?).ok()?;
    let early_stop = |round: usize| -> Option<f64> {
        let split = metrics.column("split")?;
        metrics
            .rows
            .iter()
            .filter(|row| {
                metrics.number(row, "round") == Some(round as f64) && row.get(split).is_some_and(|s| s == "valid")
            })
            .filter_map(|row| Some((metrics.number(row, "epoch")?, metrics.number(row, "loss")?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(epoch, _)| epoch)
    };
    rounds
        .rows
        .iter()
        .map(|row| {
            let round = rounds.number(row, "round")? as usize;
            Some(Round {
                round,
                sparsity: rounds.number(row, "sparsity")?,
                test_accuracy: rounds.number(row, "test_accuracy")?,
                early_stop: early_stop(round),
            })
        })
        .collect()
}

/// Writes the per-round table and charts when the finished points pruned in two rounds or
/// more; `finished` are their indices and grid values.
pub fn write(sweep_dir: &Path, axes: &[Axis], finished: &[(usize, Vec<String>)]) -> Result<()> {
    let runs: Vec<(Vec<String>, Vec<Round>)> = finished
        .iter()
        .filter_map(|(index, point)| Some((seedless(point), read_rounds(&point_dir(sweep_dir, *index))?)))
        .collect();
    if !runs.iter().any(|(_, rounds)| rounds.len() > 2) {
        return Ok(());
    }
    let groups = groups(&runs);
    let mut header: Vec<String> = axes.iter().filter(|a| a.key != "seed").map(|a| a.key.clone()).collect();
    header.extend(["round", "runs"].map(String::from));
    for metric in ["weights_left", "test_accuracy", "early_stop_epoch"] {
        header.extend([format!("{metric}_mean"), format!("{metric}_std")]);
    }
    let mut table = Table::new(header);
    let (mut accuracy, mut early) = (Vec::new(), Vec::new());
    for group in &groups {
        let members: Vec<&Vec<Round>> = runs.iter().filter(|(g, _)| g == group).map(|(_, r)| r).collect();
        let last = members.iter().map(|r| r.len()).max().unwrap_or(0);
        let label = method_label(group, &[]);
        let (mut accuracy_line, mut early_line) = (Vec::new(), Vec::new());
        for round in 0..last {
            let at: Vec<&Round> = members.iter().filter_map(|r| r.iter().find(|x| x.round == round)).collect();
            let (left, left_std) = mean_std(&at.iter().map(|r| 1.0 - r.sparsity).collect::<Vec<_>>());
            let (acc, acc_std) = mean_std(&at.iter().map(|r| r.test_accuracy).collect::<Vec<_>>());
            let (stop, stop_std) = mean_std(&at.iter().filter_map(|r| r.early_stop).collect::<Vec<_>>());
            let mut row: Vec<String> =
                group.iter().map(|s| cell(s.split_once('=').map_or(s.as_str(), |(_, v)| v))).collect();
            row.extend([round.to_string(), at.len().to_string()]);
            for value in [left, left_std, acc, acc_std, stop, stop_std] {
                row.push(format!("{value:.6}"));
            }
            table.push(row);
            let compression = 1.0 / left.max(1e-9);
            accuracy_line.push((compression, acc, acc_std));
            if stop.is_finite() {
                early_line.push((compression, stop, stop_std));
            }
        }
        accuracy.push(SpreadSeries { label: label.clone(), points: accuracy_line });
        early.push(SpreadSeries { label, points: early_line });
    }
    write_atomic(&sweep_dir.join("sweep-rounds.csv"), table.to_csv().as_bytes())?;
    let x = ("compression of the prunable weights (1 / weights left, log)", XAxis::Log);
    let accuracy_svg = spread_chart(
        "Test accuracy after each round (mean and standard deviation over seeds)",
        x,
        ("test accuracy", YAxis::Accuracy),
        &accuracy,
    );
    write_atomic(&sweep_dir.join("sweep-rounds.svg"), accuracy_svg.as_bytes())?;
    let early_svg = spread_chart(
        "Epoch of early stopping (lowest validation loss) in each round's training",
        x,
        ("epoch", YAxis::Count),
        &early,
    );
    write_atomic(&sweep_dir.join("sweep-early-stop.svg"), early_svg.as_bytes())?;
    Ok(())
}
