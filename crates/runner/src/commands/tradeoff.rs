//! `coppice report SWEEP_DIR...`: sweeps side by side, as the accuracy each method buys with the
//! parameters it keeps and with the inference time it takes. Every method is a group of a
//! sweep's runs that differ only in their seed; its point is their mean, its error bar their
//! standard deviation. The times are measured here, every network in turns in one sitting, so
//! that all of them saw the same machine: each run's network on flex and, when weights were
//! pruned, on the sparse engine too; the faster of the two is what the charts draw.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use burn::prelude::Device;
use coppice_data::Table;
use coppice_models::{Architecture, Network};
use coppice_sparse::Model;

use crate::config::Config;
use crate::inference::latency::{Timer, engine_timer, medians_in_turns, network_timer, random_images, repeats};
use crate::inference::sparse::{normalization, sparse_model};
use crate::plot::{SpreadSeries, XAxis, YAxis, spread_chart};
use crate::rundir::dir::{create_run_dir, open_saved_run, write_atomic};
use crate::rundir::saved::data_record;
use crate::rundir::saved::load_model;
use crate::sweepdir::{SweepPoints, finished_points, mean_std, method_label};

/// The batch sizes whose inference time is measured: one image (latency) and a full batch.
const BATCHES: [usize; 2] = [1, 1000];

/// One network to time: on flex, and on the sparse engine when it has a model there.
struct Timed {
    net: Network,
    /// The sparse engine's model, for a network with pruned weights that the engine runs.
    sparse: Option<Model>,
}

/// A point of the charts: a method's runs (or a dense network's seeds).
struct Point {
    /// The chart line it belongs to: the sweep's name and the method but for its target.
    series: String,
    /// The method in full, target included.
    method: String,
    params: Vec<f64>,
    accuracy: Vec<f64>,
    /// Indexes into the timed networks, one per run.
    networks: Vec<usize>,
}

/// Writes `report.md`, `tradeoff.csv` and the charts into a new directory under `out`.
pub fn report(sweep_dirs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    let (networks, points, notes) = gather(sweep_dirs)?;
    let times: Vec<Vec<Timing>> = BATCHES.iter().map(|&batch| time_all(&networks, batch)).collect::<Result<_>>()?;
    write(sweep_dirs, out, &points, &times, &notes)
}

/// The networks to time, and the charts' points that index them: the dense networks first, then
/// every method of every sweep; and a note for each sweep with unfinished points.
fn gather(sweep_dirs: &[PathBuf]) -> Result<(Vec<Timed>, Vec<Point>, Vec<String>)> {
    let device = Device::flex();
    let mut networks: Vec<Timed> = Vec::new();
    let mut points: Vec<Point> = Vec::new();
    // The dense networks: by their training settings (the config but for name, seed and
    // pruning), the accuracy of each seed's dense training and the network to time.
    let mut dense: BTreeMap<String, (String, Architecture, BTreeMap<u64, f64>)> = BTreeMap::new();
    let mut notes = Vec::new();
    for sweep_dir in sweep_dirs {
        let SweepPoints { name, groups, unfinished, total } = finished_points(sweep_dir)?;
        if unfinished > 0 {
            notes.push(format!("{name}: {unfinished} of {total} points had not finished and are left out"));
        }
        for (group, runs) in groups {
            let mut point = Point {
                series: series_label(&name, &method_label(&group, &["prune.target"])),
                method: series_label(&name, &method_label(&group, &[])),
                params: Vec::new(),
                accuracy: Vec::new(),
                networks: Vec::new(),
            };
            for run in runs {
                let (summary, config, net) = read_run(&run, &device)?;
                let number = |key: &str| {
                    summary[key].as_f64().ok_or_else(|| anyhow!("{}: summary.json has no {key}", run.display()))
                };
                point.params.push(number("params_nonzero")?);
                point.accuracy.push(number("test_accuracy")?);
                if let (Some(accuracy), Some(seed)) =
                    (summary["dense_test_accuracy"].as_f64(), summary["seed"].as_u64())
                {
                    let input = net.architecture().input();
                    let architecture = config
                        .architecture(input, net.architecture().classes())
                        .map_err(|(field, problem)| anyhow!("{}: {field}: {problem}", run.display()))?;
                    let entry = dense
                        .entry(training_key(&run)?)
                        .or_insert_with(|| (name.clone(), architecture, BTreeMap::new()));
                    entry.2.entry(seed).or_insert(accuracy);
                }
                let pruned_weights = summary["sparsity"].as_f64().is_some_and(|s| s > 0.0);
                let sparse = if pruned_weights {
                    let norm = data_record(&run, &config)?.1;
                    sparse_model(&net, Some(normalization(&norm))).ok()
                } else {
                    None
                };
                point.networks.push(networks.len());
                networks.push(Timed { net, sparse });
            }
            points.push(point);
        }
    }
    if points.is_empty() {
        return Err(anyhow!(
            "no finished runs in the sweeps given; fix: run them (or `coppice sweep --collect` to see why not)"
        ));
    }
    let several = dense.len() > 1;
    for (_, (name, architecture, seeds)) in dense {
        let net = architecture.init(&device).map_err(|e| anyhow!("{name}: the dense network: {e}"))?;
        let params = net.num_params() as f64;
        let label = if several { format!("dense ({name})") } else { "dense".to_string() };
        points.insert(
            0,
            Point {
                series: label.clone(),
                method: label,
                params: vec![params; seeds.len()],
                accuracy: seeds.values().copied().collect(),
                networks: vec![networks.len(); seeds.len()],
            },
        );
        networks.push(Timed { net, sparse: None });
    }
    Ok((networks, points, notes))
}

fn write(
    sweep_dirs: &[PathBuf],
    out: &Path,
    points: &[Point],
    times: &[Vec<Timing>],
    notes: &[String],
) -> Result<PathBuf> {
    let dir = create_run_dir(out, "report")?;
    write_atomic(&dir.join("tradeoff.csv"), tradeoff_csv(points, times).as_bytes())?;
    let chart = |x_of: &dyn Fn(&Point) -> (f64, f64), title: &str, x_label: &str| {
        let mut series: Vec<SpreadSeries> = Vec::new();
        for p in points {
            let (accuracy, std) = mean_std(&p.accuracy);
            let point = (x_of(p).0, accuracy, std);
            match series.iter_mut().find(|s| s.label == p.series) {
                Some(line) => line.points.push(point),
                None => series.push(SpreadSeries { label: p.series.clone(), points: vec![point] }),
            }
        }
        for line in &mut series {
            line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        spread_chart(title, (x_label, XAxis::Magnitude), ("test accuracy", YAxis::Accuracy), &series)
    };
    let mut md = String::from("# coppice report: sweeps side by side\n\n");
    write_atomic(
        &dir.join("accuracy-vs-parameters.svg"),
        chart(&|p| mean_std(&p.params), "Test accuracy against parameters left", "non-zero parameters (log)")
            .as_bytes(),
    )?;
    md.push_str("![accuracy against parameters](accuracy-vs-parameters.svg)\n\n");
    for (b, batch) in BATCHES.iter().enumerate() {
        let file = format!("accuracy-vs-latency-batch{batch}.svg");
        let x = |p: &Point| mean_std(&p.networks.iter().map(|&n| times[b][n].best_ms()).collect::<Vec<_>>());
        let title = format!("Test accuracy against inference time, batch of {batch}");
        write_atomic(&dir.join(&file), chart(&x, &title, "milliseconds per batch (log)").as_bytes())?;
        let _ = writeln!(md, "![accuracy against time at batch {batch}]({file})\n");
    }
    md.push_str(&tradeoff_table(points, times));
    md.push_str(
        "\nTimes: the median of passes over random images, every network in turns in one sitting, on \
         flex and, for weight-pruned networks, on the sparse engine (the faster is shown, and named).\n",
    );
    for note in notes {
        let _ = writeln!(md, "\n{note}.");
    }
    md.push_str("\nSweeps:\n\n");
    for dir in sweep_dirs {
        let _ = writeln!(md, "- `{}`", dir.display());
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(dir)
}

/// A chart line's name: the sweep's config name and its method. `configs/paper/` names every
/// sweep `paper-...`, a prefix that tells its lines apart from nothing.
fn series_label(sweep: &str, method: &str) -> String {
    let sweep = sweep.strip_prefix("paper-").unwrap_or(sweep);
    if method == "all runs" { sweep.to_string() } else { format!("{sweep}: {method}") }
}

/// A finished run's summary, resolved config and network, with its files checked.
fn read_run(run: &Path, device: &Device) -> Result<(serde_json::Value, Config, Network)> {
    let _reading = open_saved_run(run)?;
    let path = run.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let summary = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let config = Config::load(&run.join("config.toml"), &[])?;
    Ok((summary, config, load_model(run, device)?))
}

/// What decides a run's dense network: its config without its name, seed and pruning.
fn training_key(run: &Path) -> Result<String> {
    let path = run.join("config.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
    for key in ["name", "seed", "prune"] {
        table.remove(key);
    }
    Ok(table.to_string())
}

/// One network's median time at one batch size, in milliseconds.
#[derive(Clone, Copy)]
struct Timing {
    flex_ms: f64,
    sparse_ms: Option<f64>,
}

impl Timing {
    fn best_ms(&self) -> f64 {
        self.sparse_ms.map_or(self.flex_ms, |s| s.min(self.flex_ms))
    }

    fn engine(&self) -> &'static str {
        if self.sparse_ms.is_some_and(|s| s < self.flex_ms) { "sparse" } else { "flex" }
    }
}

/// Every network (and its sparse model) timed in turns at `batch`.
fn time_all(networks: &[Timed], batch: usize) -> Result<Vec<Timing>> {
    let mut timers: Vec<Timer> = Vec::new();
    let mut slots = Vec::new();
    for n in networks {
        let images = random_images(n.net.architecture().input(), batch, &Device::flex());
        let values = images.to_data().try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))?;
        timers.push(network_timer(&n.net, images));
        let sparse = n.sparse.as_ref().map(|model| {
            timers.push(engine_timer(model, values, batch));
            timers.len() - 1
        });
        slots.push((timers.len() - 1 - usize::from(sparse.is_some()), sparse));
    }
    let seconds = medians_in_turns(&mut timers, repeats(batch))?;
    Ok(slots
        .into_iter()
        .map(|(flex, sparse)| Timing { flex_ms: seconds[flex] * 1e3, sparse_ms: sparse.map(|s| seconds[s] * 1e3) })
        .collect())
}

/// The runs' timings of a point at batch index `b`: mean and standard deviation of the best
/// times, and the engine most of its runs ran fastest on.
fn point_times(point: &Point, times: &[Vec<Timing>], b: usize) -> (f64, f64, &'static str) {
    let timings: Vec<Timing> = point.networks.iter().map(|&n| times[b][n]).collect();
    let (mean, std) = mean_std(&timings.iter().map(Timing::best_ms).collect::<Vec<_>>());
    let sparse = timings.iter().filter(|t| t.engine() == "sparse").count();
    (mean, std, if 2 * sparse > timings.len() { "sparse" } else { "flex" })
}

fn tradeoff_csv(points: &[Point], times: &[Vec<Timing>]) -> String {
    let mut header: Vec<String> =
        ["method", "runs", "params_nonzero_mean", "test_accuracy_mean", "test_accuracy_std"].map(String::from).to_vec();
    for batch in BATCHES {
        header.extend([
            format!("ms_batch{batch}_mean"),
            format!("ms_batch{batch}_std"),
            format!("engine_batch{batch}"),
        ]);
    }
    let mut table = Table::new(header);
    for p in points {
        let (accuracy, std) = mean_std(&p.accuracy);
        let mut row = vec![
            p.method.clone(),
            p.accuracy.len().to_string(),
            format!("{:.1}", mean_std(&p.params).0),
            format!("{accuracy:.6}"),
            format!("{std:.6}"),
        ];
        for b in 0..BATCHES.len() {
            let (mean, std, engine) = point_times(p, times, b);
            row.extend([format!("{mean:.4}"), format!("{std:.4}"), engine.to_string()]);
        }
        table.push(row);
    }
    table.to_csv()
}

fn tradeoff_table(points: &[Point], times: &[Vec<Timing>]) -> String {
    let mut md = String::from("| method | seeds | non-zero parameters | test accuracy (%) |");
    for batch in BATCHES {
        let _ = write!(md, " ms at batch {batch} |");
    }
    md.push_str("\n| --- | ---: | ---: | ---: |");
    md.push_str(&" ---: |".repeat(BATCHES.len()));
    md.push('\n');
    for p in points {
        let (accuracy, std) = mean_std(&p.accuracy);
        let _ = write!(
            md,
            "| {} | {} | {:.0} | {:.2} ± {:.2} |",
            p.method,
            p.accuracy.len(),
            mean_std(&p.params).0,
            accuracy * 100.0,
            std * 100.0
        );
        for b in 0..BATCHES.len() {
            let (mean, std, engine) = point_times(p, times, b);
            let _ = write!(md, " {} ({engine}) |", milliseconds(mean, std));
        }
        md.push('\n');
    }
    md
}

/// Mean ± standard deviation, both to the mean's third significant digit.
fn milliseconds(mean: f64, std: f64) -> String {
    let decimals = if mean >= 100.0 {
        0
    } else if mean >= 1.0 {
        2
    } else {
        3
    };
    format!("{mean:.decimals$} ± {std:.decimals$}")
}
