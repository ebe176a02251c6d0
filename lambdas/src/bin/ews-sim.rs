//! `ews-sim`: replays a load curve through the scalers' policy and prints node counts,
//! per-node connections, peaks, instance-hours and cost; optionally a CSV and a PNG chart.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ews_lambdas::chart;
use ews_lambdas::policy::{Bounds, Direction, Steps};
use ews_lambdas::scenario::{LoadCurve, Scenario};
use ews_lambdas::sim::{run, static_fleet, Report, Sample, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "ews-sim",
    version,
    about = "Replays a load curve through the scalers' policy: node counts, per-node connections, \
             instance-hours and cost"
)]
struct Args {
    /// Built-in load curve from the paper (ignored when --load-csv is given).
    #[arg(long, env = "EWS_SCENARIO", value_enum, default_value = "case2")]
    scenario: Scenario,
    /// Load curve as CSV rows `seconds,clients` (linear between rows).
    #[arg(long, env = "EWS_LOAD_CSV")]
    load_csv: Option<PathBuf>,
    /// Clients per node step (the Lambdas' STEP).
    #[arg(long, env = "EWS_STEP", default_value_t = 50_000)]
    step: u64,
    /// Scale-down gap below the step (the Lambdas' HYSTERESIS; default STEP / 10).
    #[arg(long, env = "EWS_HYSTERESIS")]
    hysteresis: Option<u64>,
    /// Group minimum (the policy's lower bound).
    #[arg(long, env = "EWS_MIN_SIZE", default_value_t = 2)]
    min_size: u32,
    /// Group maximum.
    #[arg(long, env = "EWS_MAX_SIZE", default_value_t = 10)]
    max_size: u32,
    /// Simulation tick.
    #[arg(long, env = "EWS_TICK_SECS", default_value_t = 60)]
    tick_secs: u64,
    /// Alarm period (a multiple of the tick).
    #[arg(long, env = "EWS_PERIOD_SECS", default_value_t = 60)]
    period_secs: u64,
    /// Alarm evaluation periods (the window of datapoints).
    #[arg(long, env = "EWS_EVALUATION_PERIODS", default_value_t = 1)]
    evaluation_periods: usize,
    /// Breaching datapoints within the window that put an alarm into ALARM.
    #[arg(long, env = "EWS_DATAPOINTS_TO_ALARM", default_value_t = 1)]
    datapoints_to_alarm: usize,
    /// Seconds from launch until a new node is in service.
    #[arg(long, env = "EWS_BOOT_SECS", default_value_t = 0)]
    boot_secs: u64,
    /// Fraction of connected clients that reconnect per hour (0.2 = 20 %).
    #[arg(long, env = "EWS_CHURN_PER_HOUR", default_value_t = 0.0)]
    churn_per_hour: f64,
    /// Move clients onto a node as it enters service (even shares) instead of waiting for churn.
    #[arg(long, env = "EWS_REBALANCE")]
    rebalance: bool,
    /// Instance price, dollars per hour (t2.medium on-demand by default).
    #[arg(long, env = "EWS_PRICE_PER_HOUR", default_value_t = 0.0464)]
    price_per_hour: f64,
    /// Clients per node of the static fleet compared against (the paper's bare AMI: 4,000).
    #[arg(long, env = "EWS_STATIC_PER_NODE", default_value_t = 4000)]
    static_per_node: u64,
    /// Seed of the RNG that picks leaving and churning clients.
    #[arg(long, env = "EWS_SEED", default_value_t = 1)]
    seed: u64,
    /// Print a row every this many seconds (and at every scaling event).
    #[arg(long, env = "EWS_PRINT_EVERY_SECS", default_value_t = 1800)]
    print_every_secs: u64,
    /// Write every tick as CSV.
    #[arg(long, env = "EWS_CSV_OUT")]
    csv_out: Option<PathBuf>,
    /// Write a PNG chart.
    #[arg(long, env = "EWS_PNG")]
    png: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match simulate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ews-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(args: &Args) -> Result<(), String> {
    let hysteresis = args.hysteresis.unwrap_or(args.step / 10);
    if args.step == 0 || hysteresis >= args.step {
        return Err("--step must be positive and --hysteresis below it".into());
    }
    if args.min_size == 0 || args.min_size > args.max_size {
        return Err("--min-size must be at least 1 and not above --max-size".into());
    }
    if args.tick_secs == 0 || !args.period_secs.is_multiple_of(args.tick_secs) {
        return Err("--period-secs must be a multiple of a positive --tick-secs".into());
    }
    if args.datapoints_to_alarm == 0 || args.datapoints_to_alarm > args.evaluation_periods {
        return Err("--datapoints-to-alarm must be in 1..=--evaluation-periods".into());
    }
    let (curve, title, marks) = match &args.load_csv {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let curve =
                LoadCurve::from_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            (curve, format!("load from {}", path.display()), Vec::new())
        }
        None => (
            args.scenario.curve(),
            args.scenario.describe().to_string(),
            args.scenario.marks(),
        ),
    };
    // Every tick is kept for the report, CSV and chart: bound the run.
    const MAX_TICKS: u64 = 1_000_000;
    if curve.duration_secs() / args.tick_secs > MAX_TICKS {
        return Err(format!(
            "the curve lasts {} s: more than {MAX_TICKS} ticks of {} s; raise --tick-secs",
            curve.duration_secs(),
            args.tick_secs
        ));
    }
    let cfg = SimConfig {
        bounds: Bounds {
            min: args.min_size,
            max: args.max_size,
        },
        steps: Steps {
            step: args.step,
            hysteresis,
        },
        tick_secs: args.tick_secs,
        period_secs: args.period_secs,
        evaluation_periods: args.evaluation_periods,
        datapoints_to_alarm: args.datapoints_to_alarm,
        boot_secs: args.boot_secs,
        churn_per_hour: args.churn_per_hour,
        rebalance: args.rebalance,
        price_per_hour: args.price_per_hour,
        seed: args.seed,
    };
    let report = run(&cfg, &curve);
    print!("{}", text_report(args, &cfg, &title, &marks, &report));
    if let Some(path) = &args.csv_out {
        std::fs::write(path, csv(&report)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.png {
        let png = chart::render(&report, args.step, args.max_size);
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn hm(t: u64) -> String {
    format!("{}:{:02}", t / 3600, t % 3600 / 60)
}

fn per_node(s: &Sample) -> String {
    s.conns
        .iter()
        .map(|c| c.1.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn text_report(args: &Args, cfg: &SimConfig, title: &str, marks: &[u64], r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario: {title}");
    let _ = writeln!(
        o,
        "policy: step {}, hysteresis {}, bounds {}..{}; alarms: period {} s, {} of {} datapoints; \
         boot {} s; churn {:.0} %/h; rebalance {}; seed {}",
        cfg.steps.step,
        cfg.steps.hysteresis,
        cfg.bounds.min,
        cfg.bounds.max,
        cfg.period_secs,
        cfg.datapoints_to_alarm,
        cfg.evaluation_periods,
        cfg.boot_secs,
        cfg.churn_per_hour * 100.0,
        if cfg.rebalance { "on" } else { "off" },
        cfg.seed
    );
    let _ = writeln!(
        o,
        "{:>6} {:>8} {:>9} {:>7} {:>7}  per-node connections",
        "t", "clients", "connected", "nodes", "booting"
    );
    let event_times: Vec<u64> = r.events.iter().map(|e| e.t).collect();
    let every = args.print_every_secs.max(cfg.tick_secs);
    for (i, s) in r.samples.iter().enumerate() {
        let after_event = i > 0 && event_times.contains(&r.samples[i - 1].t);
        if s.t % every == 0 || after_event || i + 1 == r.samples.len() {
            let _ = writeln!(
                o,
                "{:>6} {:>8} {:>9} {:>7} {:>7}  {}",
                hm(s.t),
                s.load,
                s.connected(),
                s.conns.len(),
                s.booting,
                per_node(s)
            );
        }
    }
    let events: Vec<String> = r
        .events
        .iter()
        .map(|e| {
            let arrow = match e.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            };
            format!("{} {arrow} {}->{}", hm(e.t), e.from, e.to)
        })
        .collect();
    let _ = writeln!(o, "scale events: {}", events.join(", "));
    for &m in marks {
        if let Some(s) = r.first_at(m) {
            let thousands: Vec<String> = s
                .conns
                .iter()
                .map(|c| format!("{:.1}", c.1 as f64 / 1000.0))
                .collect();
            let _ = writeln!(
                o,
                "at {m} clients: nodes (thousands) {}",
                thousands.join(" / ")
            );
        }
    }
    let hours = r.duration_secs as f64 / 3600.0;
    let _ = writeln!(
        o,
        "summary: {hours:.2} h, max nodes {}, peak per node {}, instance-hours {:.2}, cost ${:.4} \
         at ${}/h",
        r.max_nodes(),
        r.peak_per_node(),
        r.instance_hours(),
        r.cost(),
        cfg.price_per_hour
    );
    let peak = r.samples.iter().map(|s| s.load).max().unwrap_or(0);
    let (n, cost) = static_fleet(peak, args.static_per_node, hours, cfg.price_per_hour);
    let _ = writeln!(
        o,
        "static fleet for the peak at {} clients per node: {n} nodes x {hours:.2} h = \
         {:.2} instance-hours, ${cost:.4}",
        args.static_per_node,
        n as f64 * hours
    );
    o
}

fn csv(r: &Report) -> String {
    let ids = r.nodes.len();
    let mut o = String::from(
        "t_secs,clients,connected,desired,in_service,booting,up_threshold,down_threshold",
    );
    for id in 1..=ids {
        let _ = write!(o, ",node{id}");
    }
    o.push('\n');
    for s in &r.samples {
        let _ = write!(
            o,
            "{},{},{},{},{},{},{},{}",
            s.t,
            s.load,
            s.connected(),
            s.desired,
            s.conns.len(),
            s.booting,
            s.thresholds.up,
            s.thresholds.down
        );
        for id in 1..=ids as u32 {
            match s.conns.iter().find(|c| c.0 == id) {
                Some(c) => {
                    let _ = write!(o, ",{}", c.1);
                }
                None => o.push(','),
            }
        }
        o.push('\n');
    }
    o
}
