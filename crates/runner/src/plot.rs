//! Small SVG charts for reports: what a person looks at first, with no plotting dependency.

use std::fmt::Write as _;

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;

pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Lines with markers; `log_x` spaces the x axis by powers of ten (compression ratios).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
    y_percent: bool,
) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| x.is_finite()).collect();
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite()).collect();
    let tx = |x: f64| if log_x { x.max(1e-9).log10() } else { x };
    let (mut x0, mut x1) = bounds(xs.iter().map(|&x| tx(x)));
    if log_x {
        (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
    }
    let (y0, y1) = bounds(ys.iter().copied());
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| LEFT + (tx(x) - x0) / (x1 - x0) * pw;
    let tick_x = |t: f64| LEFT + (t - x0) / (x1 - x0) * pw;
    let py = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * ph;
    let mut svg = header(title, x_label, y_label);
    // A log axis gets its ticks at 1, 2 and 5 times the powers of ten; a linear one five steps.
    let x_ticks: Vec<f64> = if log_x {
        (x0 as i32..=x1 as i32)
            .flat_map(|e| [1.0, 2.0, 5.0].map(|m| (m * 10f64.powi(e)).log10()))
            .filter(|t| *t <= x1 + 1e-9)
            .collect()
    } else {
        (0..=5).map(|i| x0 + (x1 - x0) * i as f64 / 5.0).collect()
    };
    for t in x_ticks {
        let x = tick_x(t);
        let label = if log_x { format!("{}x", short(10f64.powf(t))) } else { short(t) };
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            TOP + ph,
            TOP + ph + 16.0
        );
    }
    for i in 0..=5 {
        let y = y0 + (y1 - y0) * i as f64 / 5.0;
        let label = if y_percent { format!("{:.2}%", y * 100.0) } else { format!("{y:.3}") };
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{label}</text>",
            py(y),
            LEFT + pw,
            LEFT - 6.0,
            py(y) + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(svg, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>");
        }
        legend(&mut svg, i, color, &s.label);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Grouped bars: one group per category, one bar per series, values in [0, 1] as percent.
pub fn bar_chart(title: &str, y_label: &str, categories: &[String], series: &[Series]) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let mut svg = header(title, "layer", y_label);
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let y = TOP + (1.0 - v) * ph;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>",
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            v * 100.0
        );
    }
    let group = pw / categories.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{category}</text>",
            LEFT + group * (c as f64 + 0.5),
            TOP + ph + 16.0
        );
        for (i, s) in series.iter().enumerate() {
            let Some(&(_, v)) = s.points.get(c) else { continue };
            let h = v.clamp(0.0, 1.0) * ph;
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                LEFT + group * (c as f64 + 0.1) + bar * i as f64,
                TOP + ph - h,
                COLORS[i % COLORS.len()]
            );
        }
    }
    for (i, s) in series.iter().enumerate() {
        legend(&mut svg, i, COLORS[i % COLORS.len()], &s.label);
    }
    svg.push_str("</svg>\n");
    svg
}

fn header(title: &str, x_label: &str, y_label: &str) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{0:.1}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n\
         <text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\">{x_label}</text>\n\
         <text x=\"14\" y=\"{2:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {2:.1})\">{y_label}</text>\n",
        LEFT + pw / 2.0,
        H - 10.0,
        TOP + ph / 2.0
    )
}

fn legend(svg: &mut String, i: usize, color: &str, label: &str) {
    let x = W - RIGHT + 12.0;
    let y = TOP + 10.0 + i as f64 * 18.0;
    let label: String = label.chars().take(28).collect();
    let _ = writeln!(
        svg,
        "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{label}</text>",
        x + 20.0,
        x + 26.0,
        y + 4.0
    );
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 { (lo - 0.5, hi + 0.5) } else { (lo, hi) }
}

/// Up to three decimals, without trailing zeros.
fn short(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_one_line_or_bar_set_per_series() {
        let series = vec![
            Series { label: "a".into(), points: vec![(1.0, 0.98), (10.0, 0.97)] },
            Series { label: "b".into(), points: vec![(1.0, 0.98), (50.0, 0.95)] },
        ];
        let svg = line_chart("t", "x", "y", &series, true, true);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("100x"), "a log axis up to a power of ten: {svg}");
        let bars = bar_chart("t", "y", &["fc1".into(), "fc2".into()], &series);
        assert_eq!(bars.matches("<rect x=").count(), 1 + 4, "frame plus two bars per layer");
    }
}
