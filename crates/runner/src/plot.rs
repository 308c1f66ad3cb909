//! The charts of reports, sensitivity analyses and sweeps, drawn by `plotters` into SVG: its
//! axes pick the ticks, accuracy axes stay within [0, 100] %, and the legend sits beside the
//! plot, never on the data.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

const SIZE: (u32, u32) = (820, 440);
/// Width of the legend column right of the plot.
const LEGEND: u32 = 210;
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A named line of (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A named line of (x, mean, standard deviation) points.
pub struct SpreadSeries {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// What the x axis of a line chart shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Any number, with plotters' round ticks.
    Linear,
    /// A ratio of 1 or more (compression), on a log scale.
    Log,
    /// Counts from 1 (epochs), ticked at whole numbers.
    Count,
    /// A positive amount spanning orders of magnitude (parameters, milliseconds), on a log scale.
    Magnitude,
}

/// What the y axis of a line chart shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum YAxis {
    /// Fractions, shown in % within [0, 100].
    Accuracy,
    /// Counts (epochs) from 0.
    Count,
}

impl YAxis {
    /// What a value is multiplied by to be drawn.
    fn scale(self) -> f64 {
        match self {
            YAxis::Accuracy => 100.0,
            YAxis::Count => 1.0,
        }
    }
}

/// Lines with markers of accuracies (fractions, shown in %) against `x`.
pub fn accuracy_chart(title: &str, x: (&str, XAxis), y_label: &str, series: &[Series]) -> String {
    let spread: Vec<SpreadSeries> = series
        .iter()
        .map(|s| SpreadSeries { label: s.label.clone(), points: s.points.iter().map(|&(x, y)| (x, y, 0.0)).collect() })
        .collect();
    spread_chart(title, x, (y_label, YAxis::Accuracy), &spread)
}

/// [`accuracy_chart`] with each point's spread (a standard deviation over seeds) as an error bar.
pub fn spread_chart(
    title: &str,
    (x_label, x_axis): (&str, XAxis),
    (y_label, y_axis): (&str, YAxis),
    series: &[SpreadSeries],
) -> String {
    let points = || series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let (x0, x1) = extent(points().map(|p| p.0));
    let (y0, y1) = extent(points().flat_map(|p| [p.1 - p.2, p.1 + p.2]));
    let y = match y_axis {
        YAxis::Accuracy => percent_range(y0, y1),
        YAxis::Count => 0.0..(y1 * 1.1).max(1.0),
    };
    let mut svg = String::new();
    {
        let (plot, legend) = areas(&mut svg, title);
        let draw = |plot: &DrawingArea<SVGBackend, Shift>| -> Result<Vec<(String, RGBColor)>, String> {
            match x_axis {
                XAxis::Log => {
                    let x = (x0.max(1.0) / 1.15)..(x1.max(1.0) * 1.15);
                    lines(
                        plot,
                        x.log_scale(),
                        y.clone(),
                        (x_label, y_label, y_axis),
                        series,
                        (10, &|v| format!("{}x", number(v))),
                    )
                }
                XAxis::Magnitude => {
                    let x = (x0.max(f64::MIN_POSITIVE) / 1.3)..(x1.max(f64::MIN_POSITIVE) * 1.3);
                    let ticks = log_ticks(x.start, x.end);
                    let x = x.log_scale().with_key_points(ticks);
                    lines(plot, x, y.clone(), (x_label, y_label, y_axis), series, (10, &|v| compact(v)))
                }
                XAxis::Count => {
                    // At most one label per count, so that every tick is a whole number.
                    let (x, labels) = (0.5..(x1.max(1.0) + 0.5), (x1 as usize).clamp(1, 10));
                    lines(plot, x, y.clone(), (x_label, y_label, y_axis), series, (labels, &|v| format!("{v:.0}")))
                }
                XAxis::Linear => {
                    let pad = ((x1 - x0) * 0.05).max(0.01);
                    lines(
                        plot,
                        (x0 - pad)..(x1 + pad),
                        y.clone(),
                        (x_label, y_label, y_axis),
                        series,
                        (10, &|v| number(v)),
                    )
                }
            }
        };
        let labels = draw(&plot).unwrap_or_default();
        draw_legend(&legend, &labels);
    }
    svg
}

/// Bars per category (layers), one per series side by side: fractions shown in % on [0, 100],
/// or counts from 0.
pub fn bar_chart(title: &str, y_label: &str, categories: &[String], series: &[Series], percent: bool) -> String {
    let top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let y = if percent { 0.0..100.0 } else { 0.0..(top * 1.1).max(1.0) };
    // Category c spans [100 c, 100 c + 100) on an integer axis: its tick, and so its name, at
    // the middle, and its bars side by side over the middle 80.
    let centers: Vec<i32> = (0..categories.len() as i32).map(|c| 100 * c + 50).collect();
    let x = (0..100 * categories.len().max(1) as i32).with_key_points(centers);
    let mut svg = String::new();
    {
        let (plot, legend) = areas(&mut svg, title);
        let draw = || -> Result<(), String> {
            let mut chart = frame(&plot).build_cartesian_2d(x, y).map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&|v| categories.get(*v as usize / 100).cloned().unwrap_or_default())
                .y_desc(y_label)
                .y_label_formatter(&|v| if percent { format!("{} %", number(*v)) } else { number(*v) })
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| e.to_string())?;
            let width = 80 / series.len().max(1) as i32;
            for (i, s) in series.iter().enumerate() {
                let color = color(i);
                let bars = s.points.iter().take(categories.len()).enumerate().map(|(c, &(_, value))| {
                    let left = 100 * c as i32 + 10 + i as i32 * width;
                    let value = if percent { value * 100.0 } else { value };
                    Rectangle::new([(left, 0.0), (left + width, value)], color.filled())
                });
                chart.draw_series(bars).map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let _ = draw();
        let labels: Vec<(String, RGBColor)> =
            series.iter().enumerate().map(|(i, s)| (s.label.clone(), color(i))).collect();
        draw_legend(&legend, &labels);
    }
    svg
}

/// Every chart's margins and room for its axis labels.
fn frame<'a, 'b>(plot: &'a DrawingArea<SVGBackend<'b>, Shift>) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(plot);
    builder.margin(12).x_label_area_size(40).y_label_area_size(64);
    builder
}

/// Series `i`'s colour.
fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The chart's plotting area and its legend column, under a title.
fn areas<'a>(
    svg: &'a mut String,
    title: &str,
) -> (DrawingArea<SVGBackend<'a>, Shift>, DrawingArea<SVGBackend<'a>, Shift>) {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    let _ = root.fill(&WHITE);
    let root = root.titled(title, ("sans-serif", 20)).unwrap_or_else(|_| root.clone());
    root.split_horizontally(SIZE.0 - LEGEND)
}

/// Draws `series` on axes over `x` and `y` (scaled as `y_axis` says), and returns the legend's
/// entries.
fn lines<X>(
    plot: &DrawingArea<SVGBackend, Shift>,
    x: X,
    y: Range<f64>,
    (x_label, y_label, y_axis): (&str, &str, YAxis),
    series: &[SpreadSeries],
    (x_labels, x_format): (usize, &dyn Fn(f64) -> String),
) -> Result<Vec<(String, RGBColor)>, String>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = frame(plot).build_cartesian_2d(x, y).map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(x_labels)
        .x_label_formatter(&|v| x_format(*v))
        .y_label_formatter(&|v| match y_axis {
            YAxis::Accuracy => format!("{} %", number(*v)),
            YAxis::Count => number(*v),
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| e.to_string())?;
    let scale = y_axis.scale();
    let mut labels = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let color = color(i);
        let points: Vec<(f64, f64, f64)> =
            s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).copied().collect();
        let percent = |(x, mean, _): &(f64, f64, f64)| (*x, mean * scale);
        chart
            .draw_series(LineSeries::new(points.iter().map(percent), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(percent(p), 3, color.filled())))
            .map_err(|e| e.to_string())?;
        let spread = points.iter().filter(|p| p.2 > 0.0).map(|&(x, mean, std)| {
            ErrorBar::new_vertical(
                x,
                (mean - std) * scale,
                mean * scale,
                (mean + std) * scale,
                color.stroke_width(1),
                8,
            )
        });
        chart.draw_series(spread).map_err(|e| e.to_string())?;
        labels.push((s.label.clone(), color));
    }
    Ok(labels)
}

/// The legend, in its own column: a swatch and the label per series.
fn draw_legend(area: &DrawingArea<SVGBackend, Shift>, labels: &[(String, RGBColor)]) {
    for (i, (label, color)) in labels.iter().enumerate() {
        let y = 24 + i as i32 * 22;
        let _ = area.draw(&Rectangle::new([(4, y - 5), (22, y + 5)], color.filled()));
        let _ = area.draw(&Text::new(label.clone(), (28, y - 7), ("sans-serif", 14)));
    }
}

/// The smallest and largest of `values`; (0, 1) when there are none.
fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

/// The y range, in %, for accuracies from `lo` to `hi` (fractions): a little room around them,
/// never beyond [0, 100] %.
fn percent_range(lo: f64, hi: f64) -> Range<f64> {
    let (lo, hi) = (lo * 100.0, hi * 100.0);
    let pad = ((hi - lo) * 0.1).max(0.5);
    (lo - pad).max(0.0)..(hi + pad).min(100.0)
}

/// A tick's value as people write it: plotters' ticks are round, but sums of floats are not
/// exactly (83.899999 for 83.9).
/// Ticks of a log axis over `from..to`: 1, 2 and 5 times the powers of ten, and more steps
/// (1, 1.5, 2, 3, 4, 5, 6, 8) when the axis spans little more than a decade.
fn log_ticks(from: f64, to: f64) -> Vec<f64> {
    let steps: &[f64] = if to / from < 20.0 { &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0] } else { &[1.0, 2.0, 5.0] };
    let first = from.log10().floor() as i32;
    (first..=to.log10().ceil() as i32)
        .flat_map(|power| steps.iter().map(move |s| s * 10f64.powi(power)))
        .filter(|v| (from..=to).contains(v))
        .collect()
}

/// A tick label: thousands as k and millions as M.
fn compact(value: f64) -> String {
    match value.abs() {
        v if v >= 1e6 => format!("{}M", number(value / 1e6)),
        v if v >= 1e3 => format!("{}k", number(value / 1e3)),
        _ => number(value),
    }
}

fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every label in an SVG: title, axis names, tick labels, legend.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
            .collect()
    }

    /// The values of the tick labels that end with `unit`.
    fn ticks(svg: &str, unit: &str) -> Vec<f64> {
        texts(svg).iter().filter_map(|t| t.strip_suffix(unit)?.trim().parse().ok()).collect()
    }

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series { label: label.into(), points: points.to_vec() }
    }

    #[test]
    fn accuracy_axes_stay_within_0_and_100_percent_with_round_ticks() {
        for points in [vec![(1.0, 0.985)], vec![(1.0, 0.97), (12.0, 0.999), (40.0, 0.2)]] {
            let svg = accuracy_chart("t", ("compression", XAxis::Log), "accuracy", &[series("run", &points)]);
            let y = ticks(&svg, "%");
            assert!(y.len() >= 3, "{y:?}");
            assert!(y.iter().all(|v| (0.0..=100.0).contains(v)), "{y:?}");
            assert!(y.iter().all(|v| (v * 10.0).fract().abs() < 1e-9), "round ticks: {y:?}");
            let x = ticks(&svg, "x");
            assert!(x.contains(&1.0), "{x:?}");
        }
    }

    #[test]
    fn epochs_are_ticked_at_whole_numbers_and_the_legend_names_every_series() {
        for epochs in [2, 3, 20] {
            let points: Vec<(f64, f64)> = (1..=epochs).map(|e| (e as f64, 0.9 + e as f64 / 1000.0)).collect();
            let svg = accuracy_chart(
                "t",
                ("epoch", XAxis::Count),
                "accuracy",
                &[series("first", &points), series("second", &points[..1])],
            );
            let x = ticks(&svg, "");
            let whole: Vec<f64> = x.iter().copied().filter(|v| *v >= 1.0 && *v <= epochs as f64).collect();
            assert!(!whole.is_empty() && whole.iter().all(|v| v.fract() == 0.0), "{epochs}: {x:?}");
            let labels = texts(&svg);
            assert!(labels.contains(&"first".to_string()) && labels.contains(&"second".to_string()));
        }
    }

    #[test]
    fn spread_and_bars() {
        let spread = SpreadSeries { label: "magnitude".into(), points: vec![(50.0, 0.98, 0.002), (90.0, 0.97, 0.01)] };
        let svg = spread_chart("t", ("sparsity", XAxis::Linear), ("accuracy", YAxis::Accuracy), &[spread]);
        assert!(ticks(&svg, "%").iter().all(|v| (0.0..=100.0).contains(v)));
        let layers = vec!["fc1".to_string(), "fc2".to_string()];
        let svg = bar_chart("t", "sparsity", &layers, &[series("run", &[(0.0, 0.9), (0.0, 0.5)])], true);
        let y = ticks(&svg, "%");
        assert_eq!((y.first(), y.last()), (Some(&0.0), Some(&100.0)), "{y:?}");
        assert!(texts(&svg).contains(&"fc2".to_string()));
    }

    #[test]
    fn magnitudes_get_ticks_inside_one_decade_and_short_labels() {
        let spread = |points: Vec<(f64, f64, f64)>| {
            let line = SpreadSeries { label: "method".into(), points };
            spread_chart("t", ("ms", XAxis::Magnitude), ("accuracy", YAxis::Accuracy), &[line])
        };
        let x = ticks(&spread(vec![(0.75, 0.98, 0.001), (4.1, 0.985, 0.0)]), "");
        assert!([0.6, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0].iter().all(|t| x.contains(t)), "{x:?}");
        let labels = texts(&spread(vec![(5734.0, 0.98, 0.0), (266_610.0, 0.985, 0.0)]));
        for tick in ["5k", "10k", "20k", "50k", "100k", "200k"] {
            assert!(labels.contains(&tick.to_string()), "{tick} in {labels:?}");
        }
    }
}
