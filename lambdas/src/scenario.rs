//! Load curves for `ews-sim`: the paper's scenarios built in, or any curve from CSV.

use std::fmt;

/// Connected clients wanted over time: points `(seconds, clients)`, linearly interpolated, held
/// flat after the last point. The curve ends at its last point's time.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadCurve {
    points: Vec<(u64, u64)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CurveError {
    #[error("a load curve needs at least two points")]
    TooShort,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("times must increase: {0} s follows a later point")]
    NotIncreasing(u64),
}

impl LoadCurve {
    pub fn new(points: Vec<(u64, u64)>) -> Result<LoadCurve, CurveError> {
        if points.len() < 2 {
            return Err(CurveError::TooShort);
        }
        for pair in points.windows(2) {
            if pair[1].0 <= pair[0].0 {
                return Err(CurveError::NotIncreasing(pair[1].0));
            }
        }
        Ok(LoadCurve { points })
    }

    /// CSV of `seconds,clients` rows; a header line, blank lines and `#` comments are skipped.
    pub fn from_csv(text: &str) -> Result<LoadCurve, CurveError> {
        let mut points = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut cols = line.split(',').map(str::trim);
            let (Some(a), Some(b)) = (cols.next(), cols.next()) else {
                return Err(CurveError::Line {
                    line: i + 1,
                    why: "expected `seconds,clients`".into(),
                });
            };
            match (a.parse::<u64>(), b.parse::<f64>()) {
                (Ok(t), Ok(c)) if c.is_finite() && c >= 0.0 => points.push((t, c.round() as u64)),
                _ if points.is_empty() && a.parse::<f64>().is_err() => continue, // header
                _ => {
                    return Err(CurveError::Line {
                        line: i + 1,
                        why: format!("not `seconds,clients`: {line:?}"),
                    })
                }
            }
        }
        LoadCurve::new(points)
    }

    pub fn duration_secs(&self) -> u64 {
        self.points.last().map(|p| p.0).unwrap_or(0)
    }

    pub fn peak(&self) -> u64 {
        self.points.iter().map(|p| p.1).max().unwrap_or(0)
    }

    /// Clients wanted at `t` seconds.
    pub fn at(&self, t: u64) -> u64 {
        let i = self.points.partition_point(|p| p.0 <= t);
        if i == 0 {
            return self.points[0].1;
        }
        if i == self.points.len() {
            return self.points[i - 1].1;
        }
        let (t0, c0) = self.points[i - 1];
        let (t1, c1) = self.points[i];
        let f = (t - t0) as f64 / (t1 - t0) as f64;
        (c0 as f64 + (c1 as f64 - c0 as f64) * f).round() as u64
    }
}

/// The paper's scenarios (section III.D Table II and section IV) and a working day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Table II: clients arrive steadily from 0 to 150,000 (500 a minute); the distribution is
    /// reported at 50,000, 100,000 and 150,000.
    Table2,
    /// Case 1: 50,000 clients connected for 3 hours.
    Case1,
    /// Case 2 as the section's text gives it: 100,000 clients for 2 hours, then 50,000 for 6
    /// more hours (8 h in all).
    Case2,
    /// Case 2 as the paper's arithmetic bills it: 100,000 for 2 hours, then 50,000 for 4 (6 h).
    #[value(name = "case2-6h")]
    Case2Short,
    /// A working day (`lambdas/scenarios/day.csv`): night low, morning ramp, lunch dip, evening
    /// peak of 440,000.
    Day,
    /// A flash crowd: 20,000 clients, then 400,000 within ten minutes, for two hours.
    Flash,
    /// 680,000 clients (nine workers) for three hours, all gone for three minutes after the
    /// first hour (a network outage on the clients' side) and back after it.
    Blip,
    /// Six hours of 240,000 clients ± 6 % on a 20-minute cycle: around the three-worker step.
    #[value(name = "oscillation-low")]
    OscillationLow,
    /// Six hours of 400,000 clients ± 6 % on a 20-minute cycle: around the five-worker step.
    #[value(name = "oscillation-high")]
    OscillationHigh,
}

/// `level` ± 6 % on a 20-minute cycle for six hours, a point a minute.
fn oscillation(level: f64) -> Vec<(u64, u64)> {
    (0..=360)
        .map(|m| {
            let phase = (m % 20) as f64 / 20.0 * std::f64::consts::TAU;
            (m * 60, (level * (1.0 + 0.06 * phase.sin())).round() as u64)
        })
        .collect()
}

/// The day curve shipped as an example of the CSV format.
const DAY_CSV: &str = include_str!("../scenarios/day.csv");

impl Scenario {
    pub fn curve(self) -> LoadCurve {
        const H: u64 = 3600;
        let points = match self {
            // Parsed by the `built_in_scenarios` test: a broken file fails it.
            Scenario::Day => {
                return LoadCurve::from_csv(DAY_CSV).unwrap_or_else(|_| LoadCurve {
                    points: vec![(0, 0), (H, 0)],
                })
            }
            Scenario::Table2 => vec![(0, 0), (300 * 60, 150_000)],
            Scenario::Flash => vec![
                (0, 20_000),
                (H / 2, 20_000),
                (H / 2 + 600, 400_000),
                (5 * H / 2, 400_000),
                (3 * H, 20_000),
                (4 * H, 20_000),
            ],
            Scenario::Blip => vec![
                (0, 680_000),
                (H, 680_000),
                (H + 1, 0),
                (H + 180, 0),
                (H + 181, 680_000),
                (3 * H, 680_000),
            ],
            Scenario::OscillationLow => oscillation(240_000.0),
            Scenario::OscillationHigh => oscillation(400_000.0),
            Scenario::Case1 => vec![(0, 50_000), (3 * H, 50_000)],
            Scenario::Case2 => vec![
                (0, 100_000),
                (2 * H - 1, 100_000),
                (2 * H, 50_000),
                (8 * H, 50_000),
            ],
            Scenario::Case2Short => vec![
                (0, 100_000),
                (2 * H - 1, 100_000),
                (2 * H, 50_000),
                (6 * H, 50_000),
            ],
        };
        // The points above are increasing and more than one: `new` cannot fail.
        LoadCurve { points }
    }

    /// Load levels at which the node distribution is reported.
    pub fn marks(self) -> Vec<u64> {
        match self {
            Scenario::Table2 => vec![50_000, 100_000, 150_000],
            Scenario::Case1 => vec![50_000],
            Scenario::Case2 | Scenario::Case2Short => vec![100_000],
            _ => Vec::new(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Table2 => "Table II: 0 -> 150,000 clients at 500 a minute",
            Scenario::Case1 => "Case 1: 50,000 clients for 3 h",
            Scenario::Case2 => "Case 2: 100,000 clients for 2 h, then 50,000 for 6 h",
            Scenario::Case2Short => {
                "Case 2 as billed: 100,000 clients for 2 h, then 50,000 for 4 h"
            }
            Scenario::Day => {
                "A working day: 14,000 at night, 310,000 late morning, 440,000 at 20:00"
            }
            Scenario::Flash => "A flash crowd: 20,000 to 400,000 clients in ten minutes",
            Scenario::Blip => "680,000 clients, all gone for three minutes after an hour",
            Scenario::OscillationLow => "240,000 clients ± 6 % on a 20-minute cycle",
            Scenario::OscillationHigh => "400,000 clients ± 6 % on a 20-minute cycle",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_holds() {
        let c = LoadCurve::new(vec![(0, 0), (100, 1000), (200, 1000)]).unwrap();
        assert_eq!(c.at(0), 0);
        assert_eq!(c.at(50), 500);
        assert_eq!(c.at(150), 1000);
        assert_eq!(c.at(10_000), 1000);
        assert_eq!(c.duration_secs(), 200);
        assert_eq!(c.peak(), 1000);
    }

    #[test]
    fn parses_csv() {
        let c = LoadCurve::from_csv("seconds,clients\n# ramp\n0,0\n\n60, 1200.4\n").unwrap();
        assert_eq!(c.at(60), 1200);
        assert_eq!(
            LoadCurve::from_csv("0,0\n60,x\n"),
            Err(CurveError::Line {
                line: 2,
                why: "not `seconds,clients`: \"60,x\"".into()
            })
        );
        assert_eq!(LoadCurve::from_csv("0,5\n"), Err(CurveError::TooShort));
        assert_eq!(
            LoadCurve::from_csv("0,5\n60,5\n30,5\n"),
            Err(CurveError::NotIncreasing(30))
        );
        assert!(LoadCurve::from_csv("0,-3\n60,5\n").is_err());
    }

    #[test]
    fn built_in_scenarios() {
        let case2 = Scenario::Case2.curve();
        assert_eq!(case2.at(3600), 100_000);
        assert_eq!(case2.at(3 * 3600), 50_000);
        assert_eq!(case2.duration_secs(), 8 * 3600);
        assert_eq!(Scenario::Table2.curve().at(100 * 60), 50_000);
        for s in [
            Scenario::Table2,
            Scenario::Case1,
            Scenario::Case2,
            Scenario::Case2Short,
        ] {
            let c = s.curve();
            assert_eq!(LoadCurve::new(c.points.clone()), Ok(c));
        }
        assert_eq!(Scenario::Case2Short.curve().duration_secs(), 6 * 3600);
        let day = LoadCurve::from_csv(DAY_CSV).unwrap();
        assert_eq!(Scenario::Day.curve(), day);
        assert_eq!(day.duration_secs(), 24 * 3600);
        assert_eq!(day.peak(), 440_000);
    }
}
