//! Per-layer sensitivity: how much accuracy each layer loses when it alone is pruned.

use std::collections::BTreeMap;

use burn::prelude::*;
use coppice_models::{Network, Prunable};
use coppice_train::Evaluation;
use serde::Serialize;

use crate::PruneError;
use crate::allocation::Allocation;
use crate::criteria::WeightCriterion;
use crate::schedule::Schedule;
use crate::weight::{WeightPruner, WeightPruning};

/// The levels `coppice sensitivity` tries when none are given.
pub const DEFAULT_LEVELS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensitivityPoint {
    pub layer: String,
    /// Sparsity of this layer alone; every other layer is dense.
    pub sparsity: f64,
    pub accuracy: f64,
    pub loss: f64,
}

/// Prunes each layer alone (magnitude, exact per-layer counts) at every level and evaluates
/// without retraining. The first point of every layer is the unpruned network.
pub fn sensitivity(
    net: &Network,
    levels: &[f64],
    device: &Device,
    evaluate: &mut dyn FnMut(&Network) -> Result<Evaluation, PruneError>,
) -> Result<Vec<SensitivityPoint>, PruneError> {
    if let Some(bad) = levels.iter().find(|l| !(0.0..1.0).contains(*l)) {
        return Err(PruneError::Invalid(format!("sensitivity level {bad} is not a sparsity in [0, 1)")));
    }
    let dense = evaluate(net)?;
    let mut points = Vec::new();
    for layer in net.prunable_layers() {
        points.push(SensitivityPoint {
            layer: layer.name.clone(),
            sparsity: 0.0,
            accuracy: dense.accuracy,
            loss: dense.loss,
        });
        for &level in levels {
            let pruning = WeightPruning {
                criterion: WeightCriterion::Magnitude,
                allocation: Allocation::Layer { target: 0.0, overrides: BTreeMap::from([(layer.name.clone(), level)]) },
                schedule: Schedule::OneShot,
                include_bias: false,
                seed: 0,
            };
            let pruned = WeightPruner::new(pruning, device.clone()).prune_to(net.clone(), &|t| t);
            let result = evaluate(&pruned)?;
            points.push(SensitivityPoint {
                layer: layer.name.clone(),
                sparsity: level,
                accuracy: result.accuracy,
                loss: result.loss,
            });
        }
    }
    Ok(points)
}

/// `sensitivity.csv`.
pub fn sensitivity_csv(points: &[SensitivityPoint]) -> String {
    let mut csv = String::from("layer,sparsity,accuracy,loss\n");
    for p in points {
        csv.push_str(&format!("{},{:.4},{:.6},{:.6}\n", p.layer, p.sparsity, p.accuracy, p.loss));
    }
    csv
}

/// For each layer, the largest level whose accuracy stays within `tolerance` (a fraction, e.g.
/// 0.005 for half a point) of the unpruned network: the layer's share of pruning.
pub fn tolerated_sparsity(points: &[SensitivityPoint], tolerance: f64) -> BTreeMap<String, f64> {
    let mut best: BTreeMap<String, f64> = BTreeMap::new();
    let dense: BTreeMap<&str, f64> =
        points.iter().filter(|p| p.sparsity == 0.0).map(|p| (p.layer.as_str(), p.accuracy)).collect();
    for p in points {
        let entry = best.entry(p.layer.clone()).or_insert(0.0);
        if dense.get(p.layer.as_str()).is_some_and(|d| d - p.accuracy <= tolerance) && p.sparsity > *entry {
            *entry = p.sparsity;
        }
    }
    best
}

/// An SVG line chart of accuracy against sparsity, one line per layer, readable as a picture.
pub fn sensitivity_svg(points: &[SensitivityPoint], title: &str) -> String {
    const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    let (w, h, left, right, top, bottom) = (640.0, 420.0, 60.0, 130.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let min_acc = points.iter().map(|p| p.accuracy).fold(1.0f64, f64::min).min(0.9);
    let y_low = (min_acc * 10.0).floor() / 10.0;
    let x = |s: f64| left + s * pw;
    let y = |a: f64| top + (1.0 - (a - y_low) / (1.0 - y_low)) * ph;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        left + pw / 2.0
    );
    for i in 0..=10 {
        let s = i as f64 / 10.0;
        svg.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#eee\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4:.0}%</text>\n",
            x(s),
            top,
            top + ph,
            top + ph + 16.0,
            s * 100.0
        ));
        let a = y_low + (1.0 - y_low) * s;
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4:.0}%</text>\n",
            y(a),
            left + pw,
            left - 6.0,
            y(a) + 4.0,
            a * 100.0
        ));
    }
    svg.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">sparsity of the layer (others dense)</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">accuracy without retraining</text>\n",
        left + pw / 2.0,
        h - 10.0,
        top + ph / 2.0,
        top + ph / 2.0
    ));
    let mut layers: Vec<&str> = Vec::new();
    for p in points {
        if !layers.contains(&p.layer.as_str()) {
            layers.push(&p.layer);
        }
    }
    for (i, layer) in layers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<String> = points
            .iter()
            .filter(|p| p.layer == *layer)
            .map(|p| format!("{:.1},{:.1}", x(p.sparsity), y(p.accuracy.max(y_low))))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            line.join(" ")
        ));
        let ly = top + 10.0 + i as f64 * 18.0;
        svg.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{3}\" y=\"{4}\">{layer}</text>\n",
            left + pw + 12.0,
            ly,
            left + pw + 32.0,
            left + pw + 38.0,
            ly + 4.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(layer: &str, sparsity: f64, accuracy: f64) -> SensitivityPoint {
        SensitivityPoint { layer: layer.into(), sparsity, accuracy, loss: 0.0 }
    }

    #[test]
    fn tolerated_sparsity_is_the_largest_level_within_tolerance() {
        let points = [
            point("fc1", 0.0, 0.98),
            point("fc1", 0.5, 0.979),
            point("fc1", 0.9, 0.97),
            point("fc2", 0.0, 0.98),
            point("fc2", 0.5, 0.95),
        ];
        let best = tolerated_sparsity(&points, 0.005);
        assert_eq!(best["fc1"], 0.5);
        assert_eq!(best["fc2"], 0.0);
        let svg = sensitivity_svg(&points, "t");
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
