//! An SVG chart of a simulation run, written by hand: a few hundred lines of markup need no
//! plotting crate, and SVG text is rendered by whatever shows the picture (browser, GitLab,
//! GitHub), so the chart carries its own title, axes, units, cost and legend.
//!
//! Top panel: each in-service worker's clients stacked (one colour per instance, in launch
//! order, distinct however many there are, so a worker that leaves takes its band with it),
//! clients wanted (black), and what the scaling acts on: the scale-up (red) and scale-down
//! (blue) thresholds in lambda mode, the target × in-service workers (purple) in
//! target-tracking mode. Scale events are marked above it (▲ out, ▼ in, purple for a schedule,
//! outlined for the busiest worker), stacked when several fall close together. Middle panel:
//! the busiest and the quietest worker against the per-worker capacity. Bottom panel: workers
//! in service, booting and draining.

use std::fmt::Write as _;

use crate::policy::Direction;
use crate::sim::{Report, Sample, Trigger};

const W: f64 = 1000.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 190.0; // room for the legend
/// Title, two subtitle lines and the cost line, then room for five rows of event markers.
const TOP: f64 = 134.0;
const PLOT_H: f64 = 320.0;
const GAP: f64 = 34.0;
const PER_H: f64 = 110.0;
const BAND_H: f64 = 80.0;
const H: f64 = TOP + PLOT_H + GAP + PER_H + GAP + BAND_H + 44.0;
/// Characters of a subtitle line at 12 px before it wraps.
const WRAP: usize = 140;
/// An SVG coordinate pair.
type Point = (f64, f64);

/// Points per line at most.
const MAX_POINTS: usize = 500;

/// A light colour for worker `id`: hues a golden angle apart, so neighbours differ and no two
/// of the first few dozen look alike.
fn node_colour(id: u32) -> String {
    let hue = (f64::from(id.saturating_sub(1)) * 137.507_764) % 360.0;
    let (s, l) = (0.55, if id.is_multiple_of(2) { 0.72 } else { 0.80 });
    let c = (1.0 - (2.0 * l - 1.0_f64).abs()) * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

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
    per_max: f64,
    n_max: f64,
}

impl Frame {
    fn x(&self, t: u64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * t as f64 / self.t_max
    }
    fn y(&self, clients: f64) -> f64 {
        TOP + PLOT_H - PLOT_H * clients.clamp(0.0, self.y_max) / self.y_max
    }
    fn per_y(&self, clients: f64) -> f64 {
        let top = TOP + PLOT_H + GAP;
        top + PER_H - PER_H * clients.clamp(0.0, self.per_max) / self.per_max
    }
    fn band_y(&self, nodes: f64) -> f64 {
        let top = TOP + PLOT_H + GAP + PER_H + GAP;
        top + BAND_H - BAND_H * nodes / self.n_max
    }
}

/// The chart as an SVG document.
pub fn render(report: &Report, labels: &Labels) -> String {
    // A day has 8,641 ten-second samples: every few minutes (about 500 points across 730
    // pixels) draws the same picture at a fraction of the size.
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
    let per_peak = samples
        .iter()
        .map(|s| s.max_per_node() as f64)
        .fold(report.capacity.unwrap_or(0) as f64, f64::max)
        .max(1.0);
    let (per_max, per_tick) = nice_axis(per_peak * 1.05);
    let n_max = samples
        .iter()
        .map(|s| s.conns.len() as u32 + s.booting + s.draining)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let f = Frame {
        t_max,
        y_max,
        per_max,
        n_max: (n_max / band_tick(n_max)).ceil() * band_tick(n_max),
    };
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>
"##,
        escape(labels.title),
    );
    for (i, line) in wrap(labels.subtitle, WRAP).iter().take(2).enumerate() {
        let _ = writeln!(
            o,
            r##"<text x="{LEFT}" y="{}" fill="#444444">{}</text>"##,
            40.0 + 15.0 * i as f64,
            escape(line)
        );
    }
    let _ = writeln!(
        o,
        r##"<text x="{LEFT}" y="72" font-weight="bold">cost ${:.2} for {:.1} instance-hours: ${:.4} per million connection-minutes</text>"##,
        report.cost(),
        report.instance_hours(),
        report.cost_per_million_connection_minutes()
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
    per_worker(&mut o, &f, samples, report.capacity, per_tick);
    band(&mut o, &f, samples);
    legend(&mut o, labels.target.is_some(), report.capacity.is_some());
    o.push_str("</svg>\n");
    o
}

/// Words of `s` in lines of at most `width` characters.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split(' ') {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
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

/// Time ticks for a run of `t_max` seconds: at most 12, on a round number of minutes or hours.
fn time_tick(t_max: f64) -> u64 {
    [
        60u64, 300, 600, 900, 1800, 3600, 7200, 10_800, 14_400, 21_600, 43_200, 86_400,
    ]
    .into_iter()
    .find(|step| t_max / *step as f64 <= 12.0)
    .unwrap_or(86_400)
}

fn hm(t: u64) -> String {
    format!("{}:{:02}", t / 3600, t % 3600 / 60)
}

fn axes(o: &mut String, f: &Frame, y_tick: f64) {
    let (x0, x1) = (LEFT, W - RIGHT);
    let tick = time_tick(f.t_max);
    let times: Vec<u64> = (0..)
        .map(|k| k * tick)
        .take_while(|t| *t as f64 <= f.t_max + 0.5)
        .collect();
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
    for &t in &times {
        let x = f.x(t);
        let _ = writeln!(
            o,
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}"/>"#,
            f.band_y(0.0)
        );
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
    for &t in &times {
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            f.x(t),
            f.band_y(0.0) + 16.0,
            hm(t)
        );
    }
    let vertical = |o: &mut String, y: f64, text: &str| {
        let _ = writeln!(
            o,
            r#"<text transform="translate(16 {y:.1}) rotate(-90)" text-anchor="middle">{text}</text>"#
        );
    };
    vertical(o, TOP + PLOT_H / 2.0, "connected clients");
    vertical(o, TOP + PLOT_H + GAP + PER_H / 2.0, "per worker");
    vertical(o, f.band_y(f.n_max / 2.0), "workers");
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">time since start (h:mm)</text>"#,
        (x0 + x1) / 2.0,
        H - 8.0
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
        let colour = node_colour(id);
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
            steps(o, f, up, "#d62728", &|v| f.y(v));
            let down = samples
                .iter()
                .filter_map(|s| s.thresholds.map(|t| (s.t, t.down.max(0.0))));
            steps(o, f, down, "#1f77b4", &|v| f.y(v));
        }
        Some(target) => {
            let line = samples
                .iter()
                .map(|s| (s.t, (target * s.conns.len() as u64) as f64));
            steps(o, f, line, "#9467bd", &|v| f.y(v));
        }
    }
}

fn steps(
    o: &mut String,
    f: &Frame,
    points: impl Iterator<Item = (u64, f64)>,
    colour: &str,
    y: &dyn Fn(f64) -> f64,
) {
    let mut pts = Vec::new();
    let mut last: Option<f64> = None;
    for (t, v) in points {
        let x = f.x(t);
        if let Some(prev) = last.filter(|p| (p - v).abs() > f64::EPSILON) {
            pts.push((x, y(prev)));
        }
        pts.push((x, y(v)));
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

/// A marker above the plot at each event, with a faint line down: ▲ out (green), ▼ in
/// (orange), purple for a schedule, outlined black for the busiest worker. Markers closer than
/// one marker's width stack upwards, so every event stays visible.
fn events(o: &mut String, f: &Frame, r: &Report) {
    let mut placed: Vec<(f64, usize)> = Vec::new();
    for e in &r.events {
        let x = f.x(e.t.min(f.t_max as u64));
        let row = placed
            .iter()
            .filter(|(px, _)| (px - x).abs() < 11.0)
            .map(|(_, r)| r + 1)
            .max()
            .unwrap_or(0)
            .min(4);
        placed.push((x, row));
        let colour = match (e.trigger, e.direction) {
            (Trigger::Schedule, _) => "#9467bd",
            (_, Direction::Up) => "#2ca02c",
            (_, Direction::Down) => "#ff7f0e",
        };
        let glyph = match e.direction {
            Direction::Up => "M-5,0 L5,0 L0,-8 Z",
            Direction::Down => "M-5,-8 L5,-8 L0,0 Z",
        };
        let outline = if e.trigger == Trigger::Busiest {
            r##" stroke="#000000" stroke-width="1.2""##
        } else {
            ""
        };
        let why = match e.trigger {
            Trigger::Busiest => " (busiest worker)",
            Trigger::Schedule => " (schedule)",
            Trigger::Total | Trigger::Tracking => "",
        };
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="{colour}" stroke-opacity="0.35"/><path transform="translate({x:.1} {:.1})" d="{glyph}" fill="{colour}"{outline}><title>{} {} {} -> {}{why}</title></path>"##,
            TOP + PLOT_H,
            TOP - 3.0 - 11.0 * row as f64,
            hm(e.t),
            e.direction.as_str(),
            e.from,
            e.to
        );
    }
}

/// The busiest and the quietest in-service worker against the per-worker capacity.
fn per_worker(o: &mut String, f: &Frame, samples: &[Sample], capacity: Option<u64>, tick: f64) {
    let top = TOP + PLOT_H + GAP;
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PER_H}" fill="none" stroke="#888888"/>"##,
        W - LEFT - RIGHT
    );
    let mut v = 0.0;
    while v <= f.per_max + 0.5 {
        let y = f.per_y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            thousands(v)
        );
        v += tick * 2.0;
    }
    if let Some(cap) = capacity {
        let y = f.per_y(cap as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#000000" stroke-width="1.4" stroke-dasharray="2 2"/>"##,
            W - RIGHT
        );
    }
    polyline(
        o,
        samples
            .iter()
            .map(|s| (f.x(s.t), f.per_y(s.max_per_node() as f64))),
        "#b2182b",
        1.4,
        None,
    );
    polyline(
        o,
        samples.iter().map(|s| {
            let least = s.conns.iter().map(|c| c.1).min().unwrap_or(0);
            (f.x(s.t), f.per_y(least as f64))
        }),
        "#2166ac",
        1.2,
        None,
    );
}

/// Workers in service (green), booting (grey) and draining (orange), stacked.
fn band(o: &mut String, f: &Frame, samples: &[Sample]) {
    let top = f.band_y(f.n_max);
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
    let all = area(&|s: &Sample| (s.conns.len() as u32 + s.booting + s.draining) as f64);
    let launched = area(&|s: &Sample| (s.conns.len() as u32 + s.booting) as f64);
    let serving = area(&|s: &Sample| s.conns.len() as f64);
    let _ = writeln!(o, r##"<path d="{all}" fill="#fdae6b"/>"##);
    let _ = writeln!(o, r##"<path d="{launched}" fill="#c7c7c7"/>"##);
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

fn legend(o: &mut String, target: bool, capacity: bool) {
    let line = |colour: &str, dash: &str| {
        format!(
            r#"<line x1="0" y1="0" x2="20" y2="0" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#
        )
    };
    let marker = |d: &str, colour: &str, outline: &str| {
        format!(r##"<path transform="translate(10 4)" d="{d}" fill="{colour}"{outline}/>"##)
    };
    const OUT: &str = "M-5,0 L5,0 L0,-8 Z";
    const IN: &str = "M-5,-8 L5,-8 L0,0 Z";
    let mut top = vec![
        (line("#000000", "none"), "clients wanted"),
        (
            format!(
                r##"<rect x="0" y="-6" width="10" height="12" fill="{}"/><rect x="10" y="-6" width="10" height="12" fill="{}"/>"##,
                node_colour(1),
                node_colour(2)
            ),
            "per worker (stacked)",
        ),
    ];
    if target {
        top.push((line("#9467bd", "6 3"), "target x workers"));
    } else {
        top.push((line("#d62728", "6 3"), "scale-up threshold"));
        top.push((line("#1f77b4", "6 3"), "scale-down threshold"));
    }
    top.push((marker(OUT, "#2ca02c", ""), "scale out"));
    top.push((
        marker(OUT, "#2ca02c", r##" stroke="#000000" stroke-width="1.2""##),
        "out: busiest worker",
    ));
    top.push((marker(OUT, "#9467bd", ""), "out: schedule"));
    top.push((marker(IN, "#ff7f0e", ""), "scale in"));
    let mut middle = vec![
        (line("#b2182b", "none"), "busiest worker"),
        (line("#2166ac", "none"), "quietest worker"),
    ];
    if capacity {
        middle.push((line("#000000", "2 2"), "capacity"));
    }
    let bottom = [
        (
            r##"<rect x="0" y="-6" width="20" height="12" fill="#2ca02c"/>"##.to_string(),
            "in service",
        ),
        (
            r##"<rect x="0" y="-6" width="20" height="12" fill="#c7c7c7"/>"##.to_string(),
            "booting",
        ),
        (
            r##"<rect x="0" y="-6" width="20" height="12" fill="#fdae6b"/>"##.to_string(),
            "draining",
        ),
    ];
    let x = W - RIGHT + 14.0;
    for (start, rows) in [
        (TOP + 8.0, &top[..]),
        (TOP + PLOT_H + GAP + 8.0, &middle[..]),
        (TOP + PLOT_H + GAP + PER_H + GAP + 8.0, &bottom[..]),
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
    fn colours_stay_distinct_past_ten_workers() {
        let colours: std::collections::HashSet<String> = (1..=40).map(node_colour).collect();
        assert_eq!(colours.len(), 40);
        assert!(node_colour(1).starts_with('#') && node_colour(1).len() == 7);
    }

    #[test]
    fn time_ticks_fit_the_run() {
        assert_eq!(time_tick(600.0), 60);
        assert_eq!(time_tick(3600.0), 300);
        assert_eq!(time_tick(4.0 * 3600.0), 1800);
        assert_eq!(time_tick(86_400.0), 7200);
        assert_eq!(wrap("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
    }

    /// Events a few seconds apart each get their own marker, stacked.
    #[test]
    fn close_events_stack_their_markers() {
        let r = run(&Settings::previous(), &Scenario::Flash.curve());
        let svg = render(
            &r,
            &Labels {
                title: "flash",
                subtitle: "previous",
                target: None,
            },
        );
        let markers = svg.matches("<title>").count() - svg.matches("<title>node ").count();
        assert_eq!(markers, r.events.len());
        // The old alarms step several times a minute: some markers sit a row above others.
        let (first, second) = (
            format!(" {:.1})\" d=", TOP - 3.0),
            format!(" {:.1})\" d=", TOP - 14.0),
        );
        assert!(svg.contains(&first) && svg.contains(&second), "{svg}");
    }

    #[test]
    fn renders_a_complete_svg() {
        let r = run(&Settings::paper(), &Scenario::Table2.curve());
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
            "per million connection-minutes",
            "busiest worker",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        // One band per node, one marker per event.
        assert_eq!(svg.matches("<title>node ").count(), 4);
        let markers = svg.matches("<title>").count() - svg.matches("<title>node ").count();
        assert_eq!(markers, r.events.len());
        assert!(svg.len() < 200_000, "{} bytes", svg.len());
    }
}
