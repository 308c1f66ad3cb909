//! `coppice sweep --collect`: what the points of a sweep came to, wherever they ran, as
//! `sweep.csv` and `sweep.svg`, and which points are missing, running, stopped or failed.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use coppice_data::Table;

use super::rounds;
use crate::plot::{SpreadSeries, XAxis, YAxis, spread_chart};
use crate::rundir::dir::write_atomic;
use crate::sweepdir::{
    Axis, COMMANDS_FILE, Plan, PointState, cell, groups, mean_std, method_label, point_dir, point_state, read_plan,
    seedless,
};

/// The points that have not finished, by index.
pub struct Status {
    pub unfinished: Vec<usize>,
}

/// `sweep.csv` and `sweep.svg` from the finished points; a line on stdout for every other one,
/// with the command that runs or resumes it.
pub fn summarize(sweep_dir: &Path, plan: &Plan) -> Result<Status> {
    let commands = std::fs::read_to_string(sweep_dir.join(COMMANDS_FILE)).unwrap_or_default();
    let commands: Vec<&str> = commands.lines().collect();
    let mut results = Vec::new();
    let mut unfinished = Vec::new();
    for (index, settings) in plan.points.iter().enumerate() {
        let point = settings[..plan.grid_keys].to_vec();
        let problem = match point_state(&point_dir(sweep_dir, index)) {
            PointState::Finished(summary) => {
                results.push((point, Ok(summary)));
                continue;
            }
            PointState::Missing => "missing".to_string(),
            PointState::Running => "running".to_string(),
            PointState::Stopped => "stopped; its line resumes it".to_string(),
            PointState::Failed(error) => format!("failed: {error}"),
        };
        println!("point {index} ({}): {problem}", point.join(" "));
        if let Some(command) = commands.get(index) {
            println!("  {command}");
        }
        results.push((point, Err(anyhow!("{problem}"))));
        unfinished.push(index);
    }
    write_atomic(&sweep_dir.join("sweep.csv"), sweep_csv(&plan.axes, &results).as_bytes())?;
    write_atomic(&sweep_dir.join("sweep.svg"), sweep_svg(&results).as_bytes())?;
    let finished: Vec<(usize, Vec<String>)> = (0..plan.points.len())
        .filter(|i| !unfinished.contains(i))
        .map(|i| (i, plan.points[i][..plan.grid_keys].to_vec()))
        .collect();
    rounds::write(sweep_dir, &plan.axes, &finished)?;
    Ok(Status { unfinished })
}

/// `coppice sweep --collect SWEEP_DIR`: summarizes whatever has finished; an error, after the
/// list of the others, when not every point has.
pub fn collect(sweep_dir: &Path) -> Result<PathBuf> {
    let plan = read_plan(sweep_dir)?;
    let status = summarize(sweep_dir, &plan)?;
    let total = plan.points.len();
    println!(
        "{} of {total} points finished -> {}",
        total - status.unfinished.len(),
        sweep_dir.join("sweep.csv").display()
    );
    if !status.unfinished.is_empty() {
        return Err(anyhow!(
            "{}: {} of {total} points have not finished (listed above); fix: run their lines, then collect again",
            sweep_dir.display(),
            status.unfinished.len()
        ));
    }
    Ok(sweep_dir.to_path_buf())
}

const METRICS: [&str; 6] =
    ["test_accuracy", "sparsity", "compression_ratio", "params_nonzero", "dense_test_accuracy", "pruned_test_accuracy"];

fn sweep_csv(axes: &[Axis], results: &[(Vec<String>, Result<serde_json::Value>)]) -> String {
    let mut header: Vec<String> = axes.iter().filter(|a| a.key != "seed").map(|a| a.key.clone()).collect();
    header.extend(["runs".to_string(), "failed".to_string()]);
    header.extend(METRICS.iter().flat_map(|m| [format!("{m}_mean"), format!("{m}_std")]));
    let mut table = Table::new(header);
    for group in groups(results) {
        let members: Vec<&Result<serde_json::Value>> =
            results.iter().filter(|(p, _)| seedless(p) == group).map(|(_, r)| r).collect();
        let ok: Vec<&serde_json::Value> = members.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut row: Vec<String> =
            group.iter().map(|s| cell(s.split_once('=').map_or(s.as_str(), |(_, v)| v))).collect();
        row.extend([ok.len().to_string(), (members.len() - ok.len()).to_string()]);
        for m in METRICS {
            let xs: Vec<f64> = ok.iter().filter_map(|s| s[m].as_f64()).collect();
            let (mean, std) = mean_std(&xs);
            row.extend([format!("{mean:.6}"), format!("{std:.6}")]);
        }
        table.push(row);
    }
    table.to_csv()
}

/// Test accuracy against sparsity, one line per method (the grid's keys other than the seed and
/// the target), each point the mean over seeds with their standard deviation as an error bar.
fn sweep_svg(results: &[(Vec<String>, Result<serde_json::Value>)]) -> String {
    let method = |group: &[String]| method_label(group, &["prune.target"]);
    let mut series: Vec<SpreadSeries> = Vec::new();
    for group in groups(results) {
        let ok: Vec<&serde_json::Value> =
            results.iter().filter(|(p, _)| seedless(p) == group).filter_map(|(_, r)| r.as_ref().ok()).collect();
        let (sparsity, _) = mean_std(&ok.iter().map(|s| s["sparsity"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>());
        let (accuracy, spread) = mean_std(&ok.iter().filter_map(|s| s["test_accuracy"].as_f64()).collect::<Vec<_>>());
        let label = method(&group);
        let point = (sparsity * 100.0, accuracy, spread);
        match series.iter_mut().find(|s| s.label == label) {
            Some(line) => line.points.push(point),
            None => series.push(SpreadSeries { label, points: vec![point] }),
        }
    }
    for line in &mut series {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    spread_chart(
        "Sweep: test accuracy against sparsity (mean and standard deviation over seeds)",
        ("sparsity of the prunable weights (%)", XAxis::Linear),
        ("test accuracy", YAxis::Accuracy),
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sweep::prepare::{axes, grid};

    #[test]
    fn swept_strings_are_one_csv_cell_without_their_toml_quotes() {
        let axes = axes(&toml::from_str("name = [\"a\", \"b,c\"]\nseed = [0]\n").unwrap());
        let summary = serde_json::json!({"test_accuracy": 0.5});
        let results: Vec<(Vec<String>, Result<serde_json::Value>)> =
            grid(&axes).into_iter().map(|point| (point, Ok(summary.clone()))).collect();
        let table = Table::from_csv(&sweep_csv(&axes, &results)).unwrap();
        let names: Vec<&str> = table.rows.iter().map(|row| row[0].as_str()).collect();
        assert_eq!(names, ["a", "b,c"]);
        assert_eq!(table.number(&table.rows[0], "test_accuracy_mean"), Some(0.5));
    }
}
