//! `ews-sim`'s default settings are what `terraform/` deploys by default: read from the
//! Terraform variables themselves, so changing one without the other fails here.

use ews_lambdas::policy::Direction;
use ews_lambdas::sim::{AlarmWindow, Settings};

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
    // Workers rebalance unless told otherwise: nothing deployed passes `--rebalance-rate 0`.
    assert!(sim.rebalance);
    for dir in ["../terraform", "../packer"] {
        for text in files_under(dir) {
            assert!(!text.contains("rebalance-rate") && !text.contains("REBALANCE_RATE"));
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
}
