//! `ews-sim`'s default settings are what `terraform/` deploys by default: read from the
//! Terraform variables themselves, so changing one without the other fails here.

use ews_lambdas::policy::Direction;
use ews_lambdas::sim::{AlarmWindow, Rebalance, Settings, Termination};

fn read(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `default` of `variable "name"` in a variables file, as written.
fn default_of(tf: &str, name: &str) -> String {
    let start = tf
        .find(&format!("variable \"{name}\" {{"))
        .unwrap_or_else(|| panic!("variable {name} not found"));
    let block = &tf[start..];
    let end = block[1..]
        .find("\nvariable \"")
        .map_or(block.len(), |i| i + 1);
    block[..end]
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("default")
                .and_then(|rest| rest.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("variable {name} has no default"))
}

/// Every file's text under a directory of this repository, recursively.
fn files_under(rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if !path.ends_with(".terraform") {
                    dirs.push(path);
                }
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                out.push(text);
            }
        }
    }
    out
}

fn number(tf: &str, name: &str) -> u64 {
    let v = default_of(tf, name);
    v.parse()
        .unwrap_or_else(|_| panic!("variable {name}: default {v:?} is not a whole number"))
}

#[test]
fn the_simulator_defaults_are_the_terraform_defaults() {
    let root = read("../terraform/variables.tf");
    let scaling = read("../terraform/modules/scaling/variables.tf");
    let scaling_main = read("../terraform/modules/scaling/main.tf");
    let sim = Settings::deployed();

    assert_eq!(sim.steps.step, number(&root, "step"));
    assert_eq!(sim.steps.hysteresis, number(&root, "hysteresis"));
    assert_eq!(
        sim.steps.formula.as_str(),
        default_of(&root, "threshold_formula")
    );
    // Each worker's capacity and the busy-worker line, the guards, the drain.
    assert_eq!(sim.capacity, Some(number(&root, "worker_max_clients")));
    assert_eq!(
        sim.busy_fraction.map(|f| f.to_string()),
        Some(default_of(&root, "busy_fraction"))
    );
    assert!(scaling_main.contains("evaluation_periods  = 2"));
    assert_eq!(sim.busy, AlarmWindow::all_of(2));
    assert_eq!(
        sim.guards.scale_in_cooldown_secs,
        number(&root, "scale_in_cooldown_secs")
    );
    assert_eq!(sim.guards.fill_secs, number(&root, "fill_secs"));
    assert_eq!(sim.drain_secs, number(&root, "drain_seconds"));
    let main = read("../terraform/main.tf");
    assert!(main.contains("deregistration_delay_secs = var.drain_seconds + 15"));
    assert_eq!(sim.deregistration_secs, sim.drain_secs + 15);
    // The least-loaded worker goes (the termination-policy Lambda, on by default).
    assert_eq!(default_of(&root, "least_loaded_termination"), "true");
    assert_eq!(sim.termination, Termination::LeastLoaded);
    // The cluster metric: a gap is missing, never zero (FILL only on the ALB's).
    assert_eq!(default_of(&root, "scaling_metric"), "cluster");
    assert!(!sim.metric.fill_gaps_with_zero);
    // No schedule and no Spot unless asked for.
    assert_eq!(default_of(&root, "scheduled_capacity"), "[]");
    assert_eq!(default_of(&root, "spot"), "null");
    assert!(sim.schedule.is_empty() && sim.spot.is_none());
    assert_eq!(u64::from(sim.bounds.min), number(&root, "worker_min_size"));
    assert_eq!(u64::from(sim.bounds.max), number(&root, "worker_max_size"));
    // Terraform sets no datapoints_to_alarm: AWS then needs every evaluation period.
    assert!(!scaling_main.contains("datapoints_to_alarm"));
    assert_eq!(
        sim.up,
        AlarmWindow::all_of(number(&root, "scale_up_evaluation_periods") as usize)
    );
    assert_eq!(
        sim.down,
        AlarmWindow::all_of(number(&root, "scale_down_evaluation_periods") as usize)
    );
    assert!(scaling_main.contains("period      = 60"));
    assert_eq!(sim.period_secs, 60);
    assert_eq!(sim.boot_secs, number(&root, "worker_instance_warmup_secs"));
    assert_eq!(
        sim.reconcile_secs,
        60 * number(&scaling, "reconcile_minutes")
    );
    assert_eq!(
        sim.default_target(),
        number(&root, "target_clients_per_worker")
    );
    assert_eq!(default_of(&root, "scaling_mode"), "lambda");
    // The price is c6i.large's on-demand price in the default region, as docs/deploy.md's cost
    // table gives it.
    assert_eq!(default_of(&root, "worker_instance_type"), "c6i.large");
    assert_eq!(default_of(&root, "region"), "eu-central-1");
    let deploy = read("../docs/deploy.md");
    assert!(deploy.contains("on-demand list prices for eu-central-1"));
    let row = format!("2 × c6i.large (≈ ${:.3}/h)", sim.price_per_hour);
    assert!(deploy.contains(&row), "docs/deploy.md has no row {row:?}");
    // Workers rebalance at their defaults: nothing deployed passes `--rebalance-rate` or
    // `--rebalance-margin`.
    assert_eq!(sim.rebalance, Some(Rebalance::WORKER));
    for dir in ["../terraform", "../packer"] {
        for text in files_under(dir) {
            assert!(!text.contains("rebalance-rate") && !text.contains("REBALANCE_RATE"));
            assert!(!text.contains("rebalance-margin") && !text.contains("REBALANCE_MARGIN"));
        }
    }
    // REARM_STUCK_AFTER_SECS, which Terraform leaves at the scalers' default.
    assert!(!scaling_main.contains("REARM_STUCK_AFTER_SECS"));
    let cfg = ews_lambdas::config::Config::from_lookup(Direction::Up, |name| match name {
        "WS_ASG_NAME" => Some("g".into()),
        "SCALE_UP_ALARM" => Some("u".into()),
        "SCALE_DOWN_ALARM" => Some("d".into()),
        _ => None,
    });
    let cfg = cfg.expect("a minimal configuration");
    assert_eq!(cfg.rearm_stuck_after.as_secs(), sim.rearm_stuck_after_secs);
    assert_eq!(cfg.steps, sim.steps);
    assert_eq!(cfg.guards, sim.guards);
}
