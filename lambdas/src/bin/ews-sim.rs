//! `ews-sim`: replays a load curve through the scalers' policy and prints node counts,
//! per-node connections, peaks, instance-hours and cost; optionally a CSV and a PNG chart.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ews_lambdas::chart::{self, Labels};
use ews_lambdas::policy::{Bounds, Direction, Formula, Steps};
use ews_lambdas::scenario::{LoadCurve, Scenario};
use ews_lambdas::sim::{
    best_static, run, static_fleet, AlarmWindow, Mode, Rebalance, Report, Sample, Scheduled,
    Settings, Spot, TargetTracking, Termination, Trigger,
};

/// Where the defaults come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// What `terraform/` deploys by default: 100,000 clients per worker, 80,000 per step, the
    /// busy-worker alarm, scale-up on 1 of 1 minute, scale-down on 3 of 3 with a 5-minute
    /// cool-down, a reconcile every 2 minutes, 120 s warmup, the least-loaded worker removed,
    /// workers rebalancing, c6i.large in eu-central-1.
    Deployed,
    /// The paper's set-up: both alarms on 1 of 1 minute, nodes in service at once, t2.medium.
    Paper,
    /// What `terraform/` deployed before the busy-worker alarm and the guards: the paper's
    /// thresholds at 50,000, ALB gaps read as zero, the newest worker removed, a failed run
    /// re-armed.
    Previous,
}

/// Which worker a scale-in removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TerminationArg {
    /// The group's NewestInstance policy.
    Newest,
    /// The custom termination policy Lambda: the fewest clients.
    LeastLoaded,
}

/// The scaling design simulated (Terraform's `scaling_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// Two alarms and two scaler Lambdas stepping one worker at a time (the paper's design).
    Lambda,
    /// EC2 Auto Scaling target tracking on clients per in-service worker.
    TargetTracking,
}

#[derive(Parser, Debug)]
#[command(
    name = "ews-sim",
    version,
    about = "Replays a load curve through the scalers' policy or AWS target tracking: node counts, \
             per-node connections, scale events, instance-hours and cost"
)]
struct Args {
    /// Built-in load curve (ignored when --load-csv is given).
    #[arg(long, env = "EWS_SCENARIO", value_enum, default_value = "case2")]
    scenario: Scenario,
    /// Load curve as CSV rows `seconds,clients` (linear between rows; see lambdas/scenarios/).
    #[arg(long, env = "EWS_LOAD_CSV")]
    load_csv: Option<PathBuf>,
    /// Defaults for every setting below that is not given.
    #[arg(long, env = "EWS_PRESET", value_enum, default_value = "deployed")]
    preset: Preset,
    /// Scaling design (Terraform's scaling_mode).
    #[arg(long, env = "EWS_MODE", value_enum, default_value = "lambda")]
    mode: ModeArg,
    /// Target-tracking mode: clients per in-service worker (default 80 % of --step).
    #[arg(long, env = "EWS_TARGET_PER_WORKER")]
    target_per_worker: Option<u64>,
    /// Target-tracking mode: never scale in.
    #[arg(long, env = "EWS_DISABLE_SCALE_IN")]
    disable_scale_in: bool,
    /// Clients per node step (the Lambdas' STEP).
    #[arg(long, env = "EWS_STEP")]
    step: Option<u64>,
    /// Scale-down gap below the step (the Lambdas' HYSTERESIS; default STEP / 10).
    #[arg(long, env = "EWS_HYSTERESIS")]
    hysteresis: Option<u64>,
    /// How thresholds follow from the capacity (the Lambdas' THRESHOLDS): per-worker or paper.
    #[arg(long, env = "EWS_THRESHOLDS")]
    thresholds: Option<Formula>,
    /// Clients one worker takes before refusing with 503 (`worker_max_clients`); 0 = no limit.
    #[arg(long, env = "EWS_CAPACITY")]
    capacity: Option<u64>,
    /// Scale out when the busiest worker holds more than this fraction of its capacity
    /// (`busy_fraction`); 0 = no busy-worker alarm.
    #[arg(long, env = "EWS_BUSY_FRACTION")]
    busy_fraction: Option<f64>,
    /// No scale-in within this long of the last step (SCALE_IN_COOLDOWN_SECS).
    #[arg(long, env = "EWS_SCALE_IN_COOLDOWN_SECS")]
    scale_in_cooldown_secs: Option<u64>,
    /// No busy-worker scale-out within this long of the last scale-out (FILL_SECS).
    #[arg(long, env = "EWS_FILL_SECS")]
    fill_secs: Option<u64>,
    /// Which worker a scale-in removes.
    #[arg(long, env = "EWS_TERMINATION", value_enum)]
    termination: Option<TerminationArg>,
    /// A removed worker's drain (`drain_seconds`).
    #[arg(long, env = "EWS_DRAIN_SECS")]
    drain_secs: Option<u64>,
    /// After the drain until the instance is gone (deregistration delay), billed.
    #[arg(long, env = "EWS_DEREGISTRATION_SECS")]
    deregistration_secs: Option<u64>,
    /// Sessions a shedding worker closes per second (--rebalance-rate of the worker).
    #[arg(long, env = "EWS_REBALANCE_RATE")]
    rebalance_rate: Option<f64>,
    /// Above the mean by this fraction a worker sheds (--rebalance-margin of the worker).
    #[arg(long, env = "EWS_REBALANCE_MARGIN")]
    rebalance_margin: Option<f64>,
    /// Chance that a period's datapoint never arrives.
    #[arg(long, env = "EWS_GAP_PROBABILITY")]
    gap_probability: Option<f64>,
    /// Periods a datapoint takes to reach the alarms.
    #[arg(long, env = "EWS_METRIC_DELAY_PERIODS")]
    metric_delay_periods: Option<usize>,
    /// Read a missing datapoint as zero (FILL(m, 0)), as the old ALB alarm did.
    #[arg(long, env = "EWS_FILL_GAPS_WITH_ZERO")]
    fill_gaps_with_zero: bool,
    /// Chance that an alarm's invocation is lost.
    #[arg(long, env = "EWS_LOST_INVOCATIONS")]
    lost_invocations: Option<f64>,
    /// Chance that an invocation is delivered twice.
    #[arg(long, env = "EWS_DUPLICATE_INVOCATIONS")]
    duplicate_invocations: Option<f64>,
    /// Every SetDesiredCapacity fails (a persistent error).
    #[arg(long, env = "EWS_FAILING_SET_DESIRED")]
    failing_set_desired: bool,
    /// A failed run re-arms its alarm (the old failure path).
    #[arg(long, env = "EWS_REARM_ON_FAILURE")]
    rearm_on_failure: bool,
    /// A scheduled minimum, `HH:MM-HH:MM=N` each day (`scheduled_capacity`); repeatable.
    #[arg(long = "schedule", env = "EWS_SCHEDULE", value_delimiter = ';', value_parser = scheduled)]
    schedule: Vec<Scheduled>,
    /// Spot workers above this many On-Demand ones (`spot_on_demand_base`).
    #[arg(long, env = "EWS_SPOT_BASE")]
    spot_base: Option<u32>,
    /// Spot price, dollars per hour (default 40 % of the On-Demand price).
    #[arg(long, env = "EWS_SPOT_PRICE_PER_HOUR")]
    spot_price_per_hour: Option<f64>,
    /// Spot interruptions per worker-hour (seeded).
    #[arg(long, env = "EWS_SPOT_INTERRUPTIONS_PER_HOUR", default_value_t = 0.05)]
    spot_interruptions_per_hour: f64,
    /// Also run target tracking and the best static fleet on the same curve, side by side.
    #[arg(long, env = "EWS_COMPARE")]
    compare: bool,
    /// Group minimum (the policy's lower bound).
    #[arg(long, env = "EWS_MIN_SIZE")]
    min_size: Option<u32>,
    /// Group maximum.
    #[arg(long, env = "EWS_MAX_SIZE")]
    max_size: Option<u32>,
    /// Simulation tick (10 s deployed, 60 s for the paper).
    #[arg(long, env = "EWS_TICK_SECS")]
    tick_secs: Option<u64>,
    /// Alarm period (a multiple of the tick).
    #[arg(long, env = "EWS_PERIOD_SECS")]
    period_secs: Option<u64>,
    /// Scale-up alarm: evaluation periods (the window of datapoints).
    #[arg(long, env = "EWS_UP_EVALUATION_PERIODS")]
    up_evaluation_periods: Option<usize>,
    /// Scale-up alarm: breaching datapoints within the window (default all of them).
    #[arg(long, env = "EWS_UP_DATAPOINTS_TO_ALARM")]
    up_datapoints_to_alarm: Option<usize>,
    /// Scale-down alarm: evaluation periods.
    #[arg(long, env = "EWS_DOWN_EVALUATION_PERIODS")]
    down_evaluation_periods: Option<usize>,
    /// Scale-down alarm: breaching datapoints within the window (default all of them).
    #[arg(long, env = "EWS_DOWN_DATAPOINTS_TO_ALARM")]
    down_datapoints_to_alarm: Option<usize>,
    /// Count every client twice, as the ALB's raw ActiveConnectionCount does.
    #[arg(long, env = "EWS_DOUBLE_COUNT")]
    double_count: bool,
    /// No datapoint in a period without clients (read as not breaching), as the ALB's raw metric.
    #[arg(long, env = "EWS_MISSING_AT_ZERO")]
    missing_at_zero: bool,
    /// Seconds after a re-arm until the alarm re-evaluates ("often within seconds", AWS).
    #[arg(long, env = "EWS_REARM_SECS")]
    rearm_secs: Option<u64>,
    /// Seconds between scheduled reconciles (0 = none).
    #[arg(long, env = "EWS_RECONCILE_SECS")]
    reconcile_secs: Option<u64>,
    /// Seconds in ALARM after which the reconcile re-arms an alarm (REARM_STUCK_AFTER_SECS).
    #[arg(long, env = "EWS_REARM_STUCK_AFTER_SECS")]
    rearm_stuck_after_secs: Option<u64>,
    /// Seconds from launch until a new node is in service (the instance warmup).
    #[arg(long, env = "EWS_BOOT_SECS")]
    boot_secs: Option<u64>,
    /// Fraction of connected clients that reconnect per hour (0.2 = 20 %).
    #[arg(long, env = "EWS_CHURN_PER_HOUR", default_value_t = 0.0)]
    churn_per_hour: f64,
    /// Move clients onto a node as it enters service (even shares) instead of waiting for churn:
    /// `--rebalance` or `--rebalance on|off` (default: on for `deployed`, as the workers do;
    /// off for `paper`).
    #[arg(
        long,
        env = "EWS_REBALANCE",
        num_args = 0..=1,
        require_equals = false,
        default_missing_value = "on",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    rebalance: Option<bool>,
    /// Instance price, dollars per hour.
    #[arg(long, env = "EWS_PRICE_PER_HOUR")]
    price_per_hour: Option<f64>,
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
    /// Write an SVG chart.
    #[arg(long, env = "EWS_SVG")]
    svg: Option<PathBuf>,
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

/// `HH:MM-HH:MM=N`: a scheduled minimum.
fn scheduled(s: &str) -> Result<Scheduled, String> {
    let bad = || format!("{s:?}: expected HH:MM-HH:MM=N, e.g. 07:30-21:00=5");
    let (span, n) = s.split_once('=').ok_or_else(bad)?;
    let (a, b) = span.split_once('-').ok_or_else(bad)?;
    let secs = |hm: &str| -> Result<u64, String> {
        let (h, m) = hm.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 || h * 3600 + m * 60 > 86_400 {
            return Err(bad());
        }
        Ok(h * 3600 + m * 60)
    };
    let (from_secs, to_secs) = (secs(a)?, secs(b)?);
    if from_secs >= to_secs {
        return Err(format!("{s:?}: the window must end after it starts"));
    }
    Ok(Scheduled {
        from_secs,
        to_secs,
        min: n.trim().parse().map_err(|_| bad())?,
    })
}

/// The preset, with every given flag over it; checked as the Lambdas check their configuration.
fn settings(args: &Args) -> Result<Settings, String> {
    let mut cfg = match args.preset {
        Preset::Deployed => Settings::deployed(),
        Preset::Paper => Settings::paper(),
        Preset::Previous => Settings::previous(),
    };
    let step = args.step.unwrap_or(cfg.steps.step);
    let hysteresis = args.hysteresis.unwrap_or(if args.step.is_some() {
        step / 10
    } else {
        cfg.steps.hysteresis
    });
    if step == 0 || hysteresis >= step {
        return Err("--step must be positive and --hysteresis below it".into());
    }
    cfg.steps = Steps {
        step,
        hysteresis,
        formula: args.thresholds.unwrap_or(cfg.steps.formula),
    };
    let min = args.min_size.unwrap_or(cfg.bounds.min);
    let max = args.max_size.unwrap_or(cfg.bounds.max);
    if min == 0 || min > max {
        return Err("--min-size must be at least 1 and not above --max-size".into());
    }
    cfg.bounds = Bounds { min, max };
    cfg.tick_secs = args.tick_secs.unwrap_or(cfg.tick_secs);
    cfg.period_secs = args.period_secs.unwrap_or(cfg.period_secs);
    if cfg.tick_secs == 0 || !cfg.period_secs.is_multiple_of(cfg.tick_secs) {
        return Err("--period-secs must be a multiple of a positive --tick-secs".into());
    }
    let window = |n: Option<usize>, m: Option<usize>, base: AlarmWindow, which: &str| {
        let n = n.unwrap_or(base.evaluation_periods);
        let m = m.unwrap_or(n);
        if n == 0 || m == 0 || m > n {
            return Err(format!(
                "--{which}-datapoints-to-alarm must be in 1..=--{which}-evaluation-periods"
            ));
        }
        Ok(AlarmWindow {
            evaluation_periods: n,
            datapoints_to_alarm: m,
        })
    };
    cfg.up = window(
        args.up_evaluation_periods,
        args.up_datapoints_to_alarm,
        cfg.up,
        "up",
    )?;
    cfg.down = window(
        args.down_evaluation_periods,
        args.down_datapoints_to_alarm,
        cfg.down,
        "down",
    )?;
    cfg.metric.double_count |= args.double_count;
    cfg.metric.missing_at_zero |= args.missing_at_zero;
    cfg.metric.fill_gaps_with_zero |= args.fill_gaps_with_zero;
    cfg.metric.delay_periods = args
        .metric_delay_periods
        .unwrap_or(cfg.metric.delay_periods);
    cfg.rearm_secs = args.rearm_secs.unwrap_or(cfg.rearm_secs);
    cfg.reconcile_secs = args.reconcile_secs.unwrap_or(cfg.reconcile_secs);
    cfg.rearm_stuck_after_secs = args
        .rearm_stuck_after_secs
        .unwrap_or(cfg.rearm_stuck_after_secs);
    cfg.boot_secs = args.boot_secs.unwrap_or(cfg.boot_secs);
    cfg.drain_secs = args.drain_secs.unwrap_or(cfg.drain_secs);
    cfg.deregistration_secs = args.deregistration_secs.unwrap_or(cfg.deregistration_secs);
    cfg.churn_per_hour = args.churn_per_hour;
    if let Some(c) = args.capacity {
        cfg.capacity = (c > 0).then_some(c);
    }
    if let Some(f) = args.busy_fraction {
        if !(0.0..=1.0).contains(&f) {
            return Err("--busy-fraction must be within 0..=1".into());
        }
        cfg.busy_fraction = (f > 0.0).then_some(f);
    }
    cfg.guards.scale_in_cooldown_secs = args
        .scale_in_cooldown_secs
        .unwrap_or(cfg.guards.scale_in_cooldown_secs);
    cfg.guards.fill_secs = args.fill_secs.unwrap_or(cfg.guards.fill_secs);
    if let Some(t) = args.termination {
        cfg.termination = match t {
            TerminationArg::Newest => Termination::Newest,
            TerminationArg::LeastLoaded => Termination::LeastLoaded,
        };
    }
    let on = args.rebalance.unwrap_or(cfg.rebalance.is_some());
    let base = cfg.rebalance.unwrap_or(Rebalance::WORKER);
    let rebalance = Rebalance {
        rate_per_sec: args.rebalance_rate.unwrap_or(base.rate_per_sec),
        margin: args.rebalance_margin.unwrap_or(base.margin),
    };
    if !(rebalance.rate_per_sec >= 0.0 && rebalance.margin >= 0.0) {
        return Err("--rebalance-rate and --rebalance-margin must not be negative".into());
    }
    cfg.rebalance = (on && rebalance.rate_per_sec > 0.0).then_some(rebalance);
    let chance = |v: Option<f64>, base: f64, name: &str| match v.unwrap_or(base) {
        p if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("--{name} must be a chance within 0..=1")),
    };
    cfg.metric.gap_probability = chance(
        args.gap_probability,
        cfg.metric.gap_probability,
        "gap-probability",
    )?;
    cfg.faults.lost_invocation = chance(
        args.lost_invocations,
        cfg.faults.lost_invocation,
        "lost-invocations",
    )?;
    cfg.faults.duplicate_invocation = chance(
        args.duplicate_invocations,
        cfg.faults.duplicate_invocation,
        "duplicate-invocations",
    )?;
    cfg.faults.failing_set_desired |= args.failing_set_desired;
    cfg.faults.rearm_on_failure |= args.rearm_on_failure;
    cfg.schedule.extend(args.schedule.iter().copied());
    cfg.price_per_hour = args.price_per_hour.unwrap_or(cfg.price_per_hour);
    if let Some(base) = args.spot_base {
        cfg.spot = Some(Spot {
            on_demand_base: base,
            price_per_hour: args.spot_price_per_hour.unwrap_or(cfg.price_per_hour * 0.4),
            interruptions_per_hour: args.spot_interruptions_per_hour,
            notice_secs: 120,
        });
    }
    cfg.seed = args.seed;
    if cfg.reconcile_secs > 0 && !cfg.reconcile_secs.is_multiple_of(cfg.period_secs) {
        return Err("--reconcile-secs must be a multiple of --period-secs (or 0)".into());
    }
    if !(0.0..=1.0).contains(&cfg.churn_per_hour) {
        return Err("--churn-per-hour must be within 0..=1".into());
    }
    if args.mode == ModeArg::TargetTracking {
        let target = args.target_per_worker.unwrap_or(cfg.default_target());
        if target == 0 {
            return Err("--target-per-worker must be positive".into());
        }
        cfg.mode = Mode::TargetTracking(TargetTracking {
            target,
            disable_scale_in: args.disable_scale_in,
        });
    }
    Ok(cfg)
}

fn simulate(args: &Args) -> Result<(), String> {
    let cfg = settings(args)?;
    let (curve, title, marks) = match &args.load_csv {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let curve =
                LoadCurve::from_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (curve, format!("load from {name}"), Vec::new())
        }
        None => (
            args.scenario.curve(),
            args.scenario.describe().to_string(),
            args.scenario.marks(),
        ),
    };
    // Every tick is kept for the report, CSV and chart: bound the run.
    const MAX_TICKS: u64 = 1_000_000;
    if curve.duration_secs() / cfg.tick_secs > MAX_TICKS {
        return Err(format!(
            "the curve lasts {} s: more than {MAX_TICKS} ticks of {} s; raise --tick-secs",
            curve.duration_secs(),
            cfg.tick_secs
        ));
    }
    let report = run(&cfg, &curve);
    print!("{}", text_report(args, &cfg, &title, &marks, &report));
    if args.compare {
        print!("{}", compare(&cfg, &curve, &report));
    }
    if let Some(path) = &args.csv_out {
        std::fs::write(path, csv(&report)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let mut subtitle = format!("{}; {}", describe_mode(&cfg), describe_alarms(&cfg));
        if cfg.churn_per_hour > 0.0 {
            let _ = write!(subtitle, "; churn {:.0} %/h", cfg.churn_per_hour * 100.0);
        }
        if cfg.rebalance.is_some() {
            subtitle.push_str("; rebalancing");
        }
        let _ = write!(subtitle, "; {}", summary_line(&report));
        let svg = chart::render(
            &report,
            &Labels {
                title: &title,
                subtitle: &subtitle,
                target: match cfg.mode {
                    Mode::TargetTracking(tt) => Some(tt.target),
                    Mode::Lambda => None,
                },
            },
        );
        std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The run beside target tracking and the best static fleet on the same curve.
fn compare(cfg: &Settings, curve: &LoadCurve, report: &Report) -> String {
    let mut o = String::from(
        "compare: run | max workers | minutes over capacity | refused | moved by scale-in | \
         scale events | instance-hours | cost | $ per million connection-minutes\n",
    );
    let mut row = |name: &str, r: &Report| {
        let _ = writeln!(
            o,
            "compare: {name} | {} | {:.1} | {} | {} | {} | {:.2} | ${:.4} | ${:.4}",
            r.max_nodes(),
            r.minutes_over_capacity(),
            r.refused(),
            r.forced_reconnects,
            r.events.len(),
            r.instance_hours(),
            r.cost(),
            r.cost_per_million_connection_minutes()
        );
    };
    row(&describe_short(cfg), report);
    if cfg.mode == Mode::Lambda {
        let tt = Settings {
            mode: Mode::TargetTracking(TargetTracking {
                target: cfg.default_target(),
                disable_scale_in: false,
            }),
            ..cfg.clone()
        };
        row(&describe_short(&tt), &run(&tt, curve));
    }
    match best_static(cfg, curve) {
        Some((n, r)) => row(&format!("static {n} workers (fewest without overload)"), &r),
        None => {
            let _ = writeln!(
                o,
                "compare: no static fleet within the maximum serves this curve"
            );
        }
    }
    o
}

fn describe_short(cfg: &Settings) -> String {
    let spot = cfg
        .spot
        .map(|s| format!(", Spot above {}", s.on_demand_base))
        .unwrap_or_default();
    match cfg.mode {
        Mode::Lambda => format!("lambda{spot}"),
        Mode::TargetTracking(tt) => format!("target tracking at {}{spot}", tt.target),
    }
}

fn describe_mode(cfg: &Settings) -> String {
    match cfg.mode {
        Mode::Lambda => format!(
            "lambda: step {} {}, hysteresis {}, bounds {}..{}{}",
            cfg.steps.step,
            cfg.steps.formula.as_str(),
            cfg.steps.hysteresis,
            cfg.bounds.min,
            cfg.bounds.max,
            cfg.busy_fraction
                .map(|f| format!(", busy worker above {:.0} %", f * 100.0))
                .unwrap_or_default()
        ),
        Mode::TargetTracking(tt) => format!(
            "target tracking: {} clients per worker{}, bounds {}..{}",
            tt.target,
            if tt.disable_scale_in {
                ", no scale-in"
            } else {
                ""
            },
            cfg.bounds.min,
            cfg.bounds.max
        ),
    }
}

fn describe_alarms(cfg: &Settings) -> String {
    match cfg.mode {
        Mode::Lambda => format!(
            "up {} of {}, down {} of {} x {} s",
            cfg.up.datapoints_to_alarm,
            cfg.up.evaluation_periods,
            cfg.down.datapoints_to_alarm,
            cfg.down.evaluation_periods,
            cfg.period_secs
        ),
        Mode::TargetTracking(_) => format!(
            "out after {} min above, in after {} min below 90 %",
            TargetTracking::OUT_DATAPOINTS,
            TargetTracking::IN_DATAPOINTS
        ),
    }
}

fn summary_line(r: &Report) -> String {
    format!(
        "{} scale events, {} connections refused, {} clients moved by scale-in",
        r.events.len(),
        r.refused(),
        r.forced_reconnects
    )
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

fn text_report(args: &Args, cfg: &Settings, title: &str, marks: &[u64], r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario: {title}");
    let _ = writeln!(
        o,
        "policy: {}; alarms: {}; metric: {}{}; re-arm {} s, reconcile every {} s; boot {} s; \
         churn {:.0} %/h; rebalance {}; seed {}",
        describe_mode(cfg),
        describe_alarms(cfg),
        if cfg.metric.double_count {
            "doubled"
        } else {
            "clients"
        },
        if cfg.metric.missing_at_zero {
            ", missing at zero"
        } else {
            ""
        },
        cfg.rearm_secs,
        cfg.reconcile_secs,
        cfg.boot_secs,
        cfg.churn_per_hour * 100.0,
        match cfg.rebalance {
            Some(r) => format!("{}/s above +{:.0} %", r.rate_per_sec, r.margin * 100.0),
            None => "off".into(),
        },
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
            let why = match e.trigger {
                Trigger::Total | Trigger::Tracking => "",
                Trigger::Busiest => " (busiest worker)",
                Trigger::Schedule => " (schedule)",
            };
            format!("{} {arrow} {}->{}{why}", hm(e.t), e.from, e.to)
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
         at ${}/h, {} scale events, {} scaler invocations, {} clients moved by scale-in",
        r.max_nodes(),
        r.peak_per_node(),
        r.instance_hours(),
        r.cost(),
        cfg.price_per_hour,
        r.events.len(),
        r.invocations,
        r.forced_reconnects
    );
    let _ = writeln!(
        o,
        "capacity: {} per worker, {:.1} minutes with a worker over it, {} connections refused; \
         most scale-ins in 10 minutes {}; {} failed scaler runs; {} clients moved by rebalancing",
        cfg.capacity
            .map(|c| c.to_string())
            .unwrap_or_else(|| "no limit".into()),
        r.minutes_over_capacity(),
        r.refused(),
        r.most_scale_ins_within(600),
        r.failed_invocations,
        r.rebalanced
    );
    if let Some(spot) = r.spot_price_per_hour {
        let _ = writeln!(
            o,
            "spot: {:.2} of the instance-hours at ${spot:.4}/h, {} interruptions, {} clients \
             moved by them, {} lost to them",
            r.spot_hours(),
            r.interruptions,
            r.interruption_reconnects,
            r.lost_to_interruptions
        );
    }
    let _ = writeln!(
        o,
        "cost per million connection-minutes: ${:.4} ({:.0} million connection-minutes)",
        r.cost_per_million_connection_minutes(),
        r.connection_minutes() / 1e6
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
        "t_secs,clients,connected,desired,in_service,booting,draining,refused,up_threshold,down_threshold",
    );
    for id in 1..=ids {
        let _ = write!(o, ",node{id}");
    }
    o.push('\n');
    for s in &r.samples {
        let _ = write!(
            o,
            "{},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.load,
            s.connected(),
            s.desired,
            s.conns.len(),
            s.booting,
            s.draining,
            s.refused,
            s.thresholds.map(|t| t.up.to_string()).unwrap_or_default(),
            s.thresholds.map(|t| t.down.to_string()).unwrap_or_default()
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
