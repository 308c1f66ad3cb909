//! Per-class accuracy and the confusion matrix of a test evaluation: printed by `coppice eval`
//! and kept in the run directory as `confusion.csv`, one row per true class, and drawn as
//! `confusion.svg`.

use std::path::Path;

use anyhow::Result;
use coppice_train::Confusion;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::rundir::dir::write_atomic;

pub const CONFUSION_FILE: &str = "confusion.csv";
pub const CONFUSION_CHART: &str = "confusion.svg";

/// The name of class `i`, or its number where the data named none.
fn name(names: &[String], i: usize) -> String {
    names.get(i).cloned().unwrap_or_else(|| i.to_string())
}

/// `class,samples,correct,accuracy,<predicted class>...`: a row per true class, its counts of
/// each prediction in the class columns.
pub fn write_csv(path: &Path, confusion: &Confusion, names: &[String]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["class".to_string(), "samples".into(), "correct".into(), "accuracy".into()];
    header.extend((0..confusion.classes).map(|i| name(names, i)));
    writer.write_record(&header)?;
    for truth in 0..confusion.classes {
        let (samples, correct) = confusion.class_totals(truth);
        let accuracy = if samples == 0 { String::new() } else { format!("{:.6}", correct as f64 / samples as f64) };
        let mut row = vec![name(names, truth), samples.to_string(), correct.to_string(), accuracy];
        row.extend((0..confusion.classes).map(|p| confusion.count(truth, p).to_string()));
        writer.write_record(&row)?;
    }
    write_atomic(path, &writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)
}

/// The per-class lines and, for up to 20 classes, the matrix, as `eval` prints them.
pub fn table(confusion: &Confusion, names: &[String]) -> String {
    let width = (0..confusion.classes).map(|i| name(names, i).len()).max().unwrap_or(1).max(5);
    let mut out = String::from("per class (accuracy, right of samples):\n");
    for truth in 0..confusion.classes {
        let (samples, correct) = confusion.class_totals(truth);
        let accuracy =
            if samples == 0 { "-".to_string() } else { format!("{:.2}%", 100.0 * correct as f64 / samples as f64) };
        out += &format!("  {:>width$}  {accuracy:>7}  {correct} of {samples}\n", name(names, truth));
    }
    // A wider matrix wraps on a terminal; confusion.csv holds it whatever its size.
    if confusion.classes <= 20 {
        let cell = confusion.counts.iter().max().map_or(1, |m| m.to_string().len()).max(3);
        out += &format!("confusion (rows: true class, columns: predicted, in class order):\n  {:>width$} ", "");
        out += &(0..confusion.classes).map(|p| format!(" {p:>cell$}")).collect::<String>();
        out += "\n";
        for truth in 0..confusion.classes {
            out += &format!("  {:>width$} ", name(names, truth));
            out +=
                &(0..confusion.classes).map(|p| format!(" {:>cell$}", confusion.count(truth, p))).collect::<String>();
            out += "\n";
        }
    }
    out
}

/// The matrix as an SVG heat map, rows the true classes from the top: each cell shaded by the
/// share of its row's samples, with its count written in up to 20 classes.
pub fn svg(confusion: &Confusion, names: &[String]) -> String {
    let k = confusion.classes.max(1) as i32;
    let side = (240 + 36 * k as u32).min(1200);
    // Class c spans [100 c, 100 c + 100) on each axis, its name ticked at the middle.
    let centers: Vec<i32> = (0..k).map(|c| 100 * c + 50).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (side + 60, side)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let draw = || -> Result<(), String> {
            let axis = || (0..100 * k).with_key_points(centers.clone());
            let mut chart = ChartBuilder::on(&root)
                .caption("test set: share of each true class taken for each class", ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(90)
                .y_label_area_size(110)
                .build_cartesian_2d(axis(), axis())
                .map_err(|e| e.to_string())?;
            let column = |v: &i32| name(names, (*v / 100) as usize);
            let row = |v: &i32| name(names, (k - 1 - *v / 100) as usize);
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("predicted")
                .y_desc("true class")
                .x_label_formatter(&column)
                .y_label_formatter(&row)
                .x_label_style(("sans-serif", 12).into_font().transform(FontTransform::Rotate90))
                .draw()
                .map_err(|e| e.to_string())?;
            let cells: Vec<(i32, i32, u64, f64)> = (0..k)
                .flat_map(|t| (0..k).map(move |p| (t, p)))
                .map(|(t, p)| {
                    let (samples, _) = confusion.class_totals(t as usize);
                    let count = confusion.count(t as usize, p as usize);
                    (t, p, count, if samples == 0 { 0.0 } else { count as f64 / samples as f64 })
                })
                .collect();
            let shade = |share: f64| {
                let light = (255.0 * (1.0 - share)).round() as u8;
                RGBColor(light, light, 255)
            };
            chart
                .draw_series(cells.iter().map(|&(t, p, _, share)| {
                    let top = 100 * (k - t);
                    Rectangle::new([(100 * p, top - 100), (100 * p + 100, top)], shade(share).filled())
                }))
                .map_err(|e| e.to_string())?;
            if k <= 20 {
                let text = |share: f64| if share > 0.5 { WHITE } else { BLACK };
                chart
                    .draw_series(cells.iter().map(|&(t, p, count, share)| {
                        let style = ("sans-serif", 11)
                            .into_font()
                            .color(&text(share))
                            .pos(Pos::new(HPos::Center, VPos::Center));
                        Text::new(count.to_string(), (100 * p + 50, 100 * (k - t) - 50), style)
                    }))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let _ = draw();
    }
    svg
}
