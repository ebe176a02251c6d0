//! An SVG chart of a simulation run, written by hand: a few hundred lines of markup need no
//! plotting crate, and SVG text is rendered by whatever shows the picture (browser, GitLab,
//! GitHub), so the chart carries its own title, axes, units and legend.
//!
//! Top panel: each in-service node's connections stacked (one colour per instance, in launch
//! order, so a node that leaves takes its band with it), clients wanted (black), and what the
//! scaling acts on: the scale-up (red) and scale-down (blue) thresholds in lambda mode, the
//! target × in-service workers (purple) in target-tracking mode. Scale events are marked on the
//! top edge (▲ out, ▼ in). Bottom panel: workers in service and booting.

use std::fmt::Write as _;

use crate::policy::Direction;
use crate::sim::{Report, Sample};

const W: f64 = 1000.0;
const H: f64 = 600.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 185.0; // room for the legend
const TOP: f64 = 56.0;
const PLOT_H: f64 = 360.0;
const GAP: f64 = 44.0;
const BAND_H: f64 = 80.0;
/// An SVG coordinate pair.
type Point = (f64, f64);

/// Points per line at most.
const MAX_POINTS: usize = 500;

/// Node colours, cycled (Tableau 10, light enough for black lines on top to stay readable).
const NODE_COLOURS: [&str; 10] = [
    "#a6cee3", "#b2df8a", "#fdbf6f", "#cab2d6", "#ffff99", "#fb9a99", "#8dd3c7", "#bebada",
    "#fccde5", "#d9d9d9",
];

/// What the chart is of, for its title.
pub struct Labels<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    /// `Some(target)` in target-tracking mode.
    pub target: Option<u64>,
}

struct Frame {
    t_max: f64,
    y_max: f64,
    n_max: f64,
}

impl Frame {
    fn x(&self, t: u64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * t as f64 / self.t_max
    }
    fn y(&self, clients: f64) -> f64 {
        TOP + PLOT_H - PLOT_H * clients.clamp(0.0, self.y_max) / self.y_max
    }
    fn band_y(&self, nodes: f64) -> f64 {
        let top = TOP + PLOT_H + GAP;
        top + BAND_H - BAND_H * nodes / self.n_max
    }
}

/// The chart as an SVG document.
pub fn render(report: &Report, labels: &Labels) -> String {
    // A day has 1,441 one-minute samples: every few minutes (about 500 points across 750 pixels)
    // draws the same picture at a third of the size.
    let stride = report.samples.len().div_ceil(MAX_POINTS).max(1);
    let mut thinned: Vec<Sample> = report.samples.iter().step_by(stride).cloned().collect();
    if let Some(last) = report.samples.last().filter(|l| thinned.last() != Some(l)) {
        thinned.push(last.clone());
    }
    let samples = &thinned;
    let t_max = samples.last().map(|s| s.t).unwrap_or(0).max(60) as f64;
    let peak = samples
        .iter()
        .map(|s| {
            let limit = s.thresholds.map(|t| t.up).unwrap_or(0.0);
            let target = labels
                .target
                .map(|x| (x * s.conns.len() as u64) as f64)
                .unwrap_or(0.0);
            (s.load.max(s.connected()) as f64).max(limit).max(target)
        })
        .fold(1.0, f64::max);
    let (y_max, y_tick) = nice_axis(peak * 1.05);
    let n_max = samples
        .iter()
        .map(|s| s.conns.len() as u32 + s.booting)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let f = Frame {
        t_max,
        y_max,
        n_max: (n_max / band_tick(n_max)).ceil() * band_tick(n_max),
    };
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>
<text x="{LEFT}" y="40" fill="#444444">{}</text>
"##,
        escape(labels.title),
        escape(labels.subtitle)
    );
    axes(&mut o, &f, y_tick);
    stacked_nodes(&mut o, &f, samples);
    limits(&mut o, &f, samples, labels.target);
    polyline(
        &mut o,
        samples.iter().map(|s| (f.x(s.t), f.y(s.load as f64))),
        "#000000",
        1.6,
        None,
    );
    events(&mut o, &f, report);
    band(&mut o, &f, samples);
    legend(&mut o, labels.target.is_some());
    o.push_str("</svg>\n");
    o
}

/// An axis top and tick step with 4 to 10 ticks at 1, 2 or 5 × 10^k.
fn nice_axis(max: f64) -> (f64, f64) {
    let raw = max / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn thousands(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", (v / 1000.0).round())
    } else {
        format!("{v}")
    }
}

fn axes(o: &mut String, f: &Frame, y_tick: f64) {
    let (x0, x1) = (LEFT, W - RIGHT);
    let _ = writeln!(o, r##"<g stroke="#e0e0e0" stroke-width="1">"##);
    let mut v = 0.0;
    while v <= f.y_max + 0.5 {
        let _ = writeln!(
            o,
            r#"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/>"#,
            y = f.y(v)
        );
        v += y_tick;
    }
    let hours = (f.t_max / 3600.0).ceil() as u64;
    let every = [1u64, 2, 3, 4, 6, 12, 24]
        .into_iter()
        .find(|e| hours / e <= 12)
        .unwrap_or(24);
    for h in (0..=hours).step_by(every as usize) {
        let x = f.x(h * 3600);
        if x <= x1 + 0.5 {
            let _ = writeln!(
                o,
                r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}"/>"#,
                TOP + PLOT_H
            );
        }
    }
    o.push_str("</g>\n");
    // Tick labels and axis titles.
    let mut v = 0.0;
    while v <= f.y_max + 0.5 {
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            f.y(v) + 4.0,
            thousands(v)
        );
        v += y_tick;
    }
    for h in (0..=hours).step_by(every as usize) {
        let x = f.x(h * 3600);
        if x <= x1 + 0.5 {
            let _ = writeln!(
                o,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{h}:00</text>"#,
                TOP + PLOT_H + GAP + BAND_H + 16.0
            );
        }
    }
    let _ = writeln!(
        o,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">connected clients</text>"#,
        TOP + PLOT_H / 2.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">workers</text>"#,
        TOP + PLOT_H + GAP + BAND_H / 2.0
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">time since start (h:mm)</text>"#,
        (x0 + x1) / 2.0,
        H - 6.0
    );
    let _ = writeln!(
        o,
        r##"<rect x="{x0}" y="{TOP}" width="{}" height="{PLOT_H}" fill="none" stroke="#888888"/>"##,
        x1 - x0
    );
}

/// Each node's connections stacked in launch order, one filled band per node.
fn stacked_nodes(o: &mut String, f: &Frame, samples: &[Sample]) {
    let ids: std::collections::BTreeSet<u32> = samples
        .iter()
        .flat_map(|s| s.conns.iter().map(|c| c.0))
        .collect();
    for &id in &ids {
        // The band's lower edge is the sum of the older nodes, its upper edge adds this one.
        let mut upper = Vec::new();
        let mut lower = Vec::new();
        let mut runs: Vec<(Vec<Point>, Vec<Point>)> = Vec::new();
        for s in samples {
            match s.conns.iter().position(|c| c.0 == id) {
                Some(i) => {
                    let below: u64 = s.conns[..i].iter().map(|c| c.1).sum();
                    let x = f.x(s.t);
                    lower.push((x, f.y(below as f64)));
                    upper.push((x, f.y((below + s.conns[i].1) as f64)));
                }
                None if !upper.is_empty() => {
                    runs.push((std::mem::take(&mut upper), std::mem::take(&mut lower)));
                }
                None => {}
            }
        }
        if !upper.is_empty() {
            runs.push((upper, lower));
        }
        let colour = NODE_COLOURS[(id as usize - 1) % NODE_COLOURS.len()];
        for (up, low) in runs {
            let mut d = String::new();
            for (k, (x, y)) in up.iter().enumerate() {
                let _ = write!(d, "{}{x:.1},{y:.1} ", if k == 0 { "M" } else { "L" });
            }
            for (x, y) in low.iter().rev() {
                let _ = write!(d, "L{x:.1},{y:.1} ");
            }
            let _ = writeln!(
                o,
                r##"<path d="{d}Z" fill="{colour}" stroke="#666666" stroke-width="0.4"><title>node {id}</title></path>"##
            );
        }
    }
}

/// What the scaling acts on: both thresholds (lambda) or target × in-service workers.
fn limits(o: &mut String, f: &Frame, samples: &[Sample], target: Option<u64>) {
    match target {
        None => {
            let up = samples
                .iter()
                .filter_map(|s| s.thresholds.map(|t| (s.t, t.up)));
            steps(o, f, up, "#d62728");
            let down = samples
                .iter()
                .filter_map(|s| s.thresholds.map(|t| (s.t, t.down.max(0.0))));
            steps(o, f, down, "#1f77b4");
        }
        Some(target) => {
            let line = samples
                .iter()
                .map(|s| (s.t, (target * s.conns.len() as u64) as f64));
            steps(o, f, line, "#9467bd");
        }
    }
}

fn steps(o: &mut String, f: &Frame, points: impl Iterator<Item = (u64, f64)>, colour: &str) {
    let mut pts = Vec::new();
    let mut last: Option<f64> = None;
    for (t, v) in points {
        let x = f.x(t);
        if let Some(prev) = last.filter(|p| (p - v).abs() > f64::EPSILON) {
            pts.push((x, f.y(prev)));
        }
        pts.push((x, f.y(v)));
        last = Some(v);
    }
    polyline(o, pts.into_iter(), colour, 1.6, Some("6 3"));
}

fn polyline(
    o: &mut String,
    points: impl Iterator<Item = (f64, f64)>,
    colour: &str,
    width: f64,
    dash: Option<&str>,
) {
    let mut p = String::new();
    for (x, y) in points {
        let _ = write!(p, "{x:.1},{y:.1} ");
    }
    let dash = dash
        .map(|d| format!(r#" stroke-dasharray="{d}""#))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="{width}"{dash}/>"#,
        p.trim_end()
    );
}

/// ▲ (scale out) and ▼ (scale in) above the plot at each event, with a faint line down.
fn events(o: &mut String, f: &Frame, r: &Report) {
    for e in &r.events {
        let x = f.x(e.t.min(f.t_max as u64));
        let (glyph, colour) = match e.direction {
            Direction::Up => ("M-5,0 L5,0 L0,-8 Z", "#2ca02c"),
            Direction::Down => ("M-5,-8 L5,-8 L0,0 Z", "#ff7f0e"),
        };
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="{colour}" stroke-opacity="0.35"/><path transform="translate({x:.1} {})" d="{glyph}" fill="{colour}"><title>{} {} -> {}</title></path>"##,
            TOP + PLOT_H,
            TOP - 2.0,
            e.direction.as_str(),
            e.from,
            e.to
        );
    }
}

/// Workers in service (filled) and booting (stacked on top, hatched grey).
fn band(o: &mut String, f: &Frame, samples: &[Sample]) {
    let top = TOP + PLOT_H + GAP;
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{BAND_H}" fill="none" stroke="#888888"/>"##,
        W - LEFT - RIGHT
    );
    let mut n = 0.0;
    let tick = band_tick(f.n_max);
    while n <= f.n_max + 0.01 {
        let y = f.band_y(n);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{n}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        n += tick;
    }
    let area = |value: &dyn Fn(&Sample) -> f64| {
        let mut d = format!("M{:.1},{:.1} ", f.x(0), f.band_y(0.0));
        for s in samples {
            let _ = write!(d, "L{:.1},{:.1} ", f.x(s.t), f.band_y(value(s)));
        }
        let last = samples.last().map(|s| s.t).unwrap_or(0);
        let _ = write!(d, "L{:.1},{:.1} Z", f.x(last), f.band_y(0.0));
        d
    };
    let total = area(&|s: &Sample| (s.conns.len() as u32 + s.booting) as f64);
    let serving = area(&|s: &Sample| s.conns.len() as f64);
    let _ = writeln!(o, r##"<path d="{total}" fill="#c7c7c7"/>"##);
    let _ = writeln!(o, r##"<path d="{serving}" fill="#2ca02c"/>"##);
}

/// Worker-count ticks: every worker up to 5, then every 2nd, past 12 every 5th.
fn band_tick(n_max: f64) -> f64 {
    if n_max <= 5.0 {
        1.0
    } else if n_max <= 12.0 {
        2.0
    } else {
        5.0
    }
}

fn legend(o: &mut String, target: bool) {
    let line = |colour: &str, dash: &str| {
        format!(
            r#"<line x1="0" y1="0" x2="20" y2="0" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#
        )
    };
    let mut top = vec![
        (line("#000000", "none"), "clients wanted"),
        (
            format!(
                r##"<rect x="0" y="-6" width="10" height="12" fill="{}"/><rect x="10" y="-6" width="10" height="12" fill="{}"/>"##,
                NODE_COLOURS[0], NODE_COLOURS[1]
            ),
            "per node (stacked)",
        ),
    ];
    if target {
        top.push((line("#9467bd", "6 3"), "target x workers"));
    } else {
        top.push((line("#d62728", "6 3"), "scale-up threshold"));
        top.push((line("#1f77b4", "6 3"), "scale-down threshold"));
    }
    top.push((
        r##"<path transform="translate(10 4)" d="M-5,0 L5,0 L0,-8 Z" fill="#2ca02c"/>"##.into(),
        "scale out",
    ));
    top.push((
        r##"<path transform="translate(10 4)" d="M-5,-8 L5,-8 L0,0 Z" fill="#ff7f0e"/>"##.into(),
        "scale in",
    ));
    let bottom = [
        (
            r##"<rect x="0" y="-6" width="20" height="12" fill="#2ca02c"/>"##.to_string(),
            "in service",
        ),
        (
            r##"<rect x="0" y="-6" width="20" height="12" fill="#c7c7c7"/>"##.to_string(),
            "booting",
        ),
    ];
    let x = W - RIGHT + 14.0;
    for (start, rows) in [
        (TOP + 8.0, &top[..]),
        (TOP + PLOT_H + GAP + 8.0, &bottom[..]),
    ] {
        for (i, (swatch, text)) in rows.iter().enumerate() {
            let y = start + 20.0 * i as f64;
            let _ = writeln!(
                o,
                r#"<g transform="translate({x} {y})">{swatch}<text x="26" y="4">{text}</text></g>"#
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use crate::sim::{run, Settings};

    #[test]
    fn axes_are_round_numbers() {
        assert_eq!(nice_axis(157_500.0), (160_000.0, 20_000.0));
        assert_eq!(nice_axis(472_500.0), (500_000.0, 100_000.0));
        assert_eq!(nice_axis(9.0), (10.0, 2.0));
        assert_eq!(thousands(150_000.0), "150k");
    }

    #[test]
    fn renders_a_complete_svg() {
        let r = run(&Settings::deployed(), &Scenario::Table2.curve());
        let svg = render(
            &r,
            &Labels {
                title: "Table II <paper>",
                subtitle: "deployed settings",
                target: None,
            },
        );
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("Table II &lt;paper&gt;"));
        for label in [
            "connected clients",
            "workers",
            "time since start",
            "scale-up threshold",
            "0:00",
            "100k",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        // One band per node, one marker per event.
        assert_eq!(svg.matches("<title>node ").count(), 4);
        assert_eq!(svg.matches("<title>up ").count(), r.events.len());
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
    }
}
