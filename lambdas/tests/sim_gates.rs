//! Regression gates: the simulator's runs of the curves docs/scaling.md reports, in the deployed
//! default mode, held to what the page promises. The simulator is seeded, so each figure is
//! exact; the gates are the promises, not the figures, so a change that keeps its promises
//! passes and one that breaks one fails here and says which.

use ews_lambdas::scenario::Scenario;
use ews_lambdas::sim::{best_static, run, Mode, Report, Settings, Spot, TargetTracking};

/// c6i.large On-Demand in us-east-1, the price the cost targets are stated at.
const ON_DEMAND: f64 = 0.085;
/// What the previous release cost on the day curve, per million connection-minutes, at
/// [`ON_DEMAND`] (`ews-sim --preset previous --scenario day --price-per-hour 0.085`).
const PREVIOUS_DAY: f64 = 0.0386;

fn deployed() -> Settings {
    Settings {
        price_per_hour: ON_DEMAND,
        ..Settings::deployed()
    }
}

fn target_tracking() -> Settings {
    let cfg = deployed();
    Settings {
        mode: Mode::TargetTracking(TargetTracking {
            target: cfg.default_target(),
            disable_scale_in: false,
        }),
        ..cfg
    }
}

/// The promises every curve keeps in the deployed mode.
fn holds(name: &str, r: &Report) {
    assert_eq!(
        r.minutes_over_capacity(),
        0.0,
        "{name}: a worker over its capacity"
    );
    assert!(
        r.most_scale_ins_within(600) <= 2,
        "{name}: {} scale-ins within ten minutes: {:?}",
        r.most_scale_ins_within(600),
        r.events
    );
    let last = r.samples.last().expect("samples");
    assert_eq!(last.connected(), last.load, "{name}: clients left waiting");
}

#[test]
fn the_day_costs_at_least_35_percent_less_than_before_and_less_than_any_static_fleet() {
    let curve = Scenario::Day.curve();
    let previous = run(
        &Settings {
            price_per_hour: ON_DEMAND,
            ..Settings::previous()
        },
        &curve,
    );
    assert!(
        (previous.cost_per_million_connection_minutes() - PREVIOUS_DAY).abs() < 0.0005,
        "the previous release's figure moved: {}",
        previous.cost_per_million_connection_minutes()
    );
    let r = run(&deployed(), &curve);
    holds("day", &r);
    assert_eq!(r.refused(), 0, "day: refusals");
    let per_m = r.cost_per_million_connection_minutes();
    assert!(per_m <= PREVIOUS_DAY * 0.65, "day: ${per_m:.4}");
    let (n, fixed) = best_static(&deployed(), &curve).expect("a static fleet serves the day");
    assert!(
        per_m < fixed.cost_per_million_connection_minutes(),
        "day: ${per_m:.4} against {n} static workers' ${:.4}",
        fixed.cost_per_million_connection_minutes()
    );
    holds("day, target tracking", &run(&target_tracking(), &curve));
}

#[test]
fn the_day_on_spot_costs_at_most_a_cent_and_a_fifth_and_loses_no_client() {
    let cfg = Settings {
        spot: Some(Spot {
            on_demand_base: 0,
            // 35 % of On-Demand: c6i.large's usual Spot discount.
            price_per_hour: ON_DEMAND * 0.35,
            // Far more than AWS's "<5 % a month" for c6i: the drain is what is tested.
            interruptions_per_hour: 0.1,
            notice_secs: 120,
        }),
        ..deployed()
    };
    let r = run(&cfg, &Scenario::Day.curve());
    holds("day on Spot", &r);
    assert!(r.interruptions >= 3, "{} interruptions", r.interruptions);
    assert!(r.interruption_reconnects > 0);
    assert_eq!(r.lost_to_interruptions, 0);
    let per_m = r.cost_per_million_connection_minutes();
    assert!(per_m <= 0.012, "day on Spot: ${per_m:.4}");
}

#[test]
fn a_flash_crowd_never_overloads_a_worker() {
    let curve = Scenario::Flash.curve();
    let r = run(&deployed(), &curve);
    holds("flash", &r);
    // AWS's target tracking, the alternative mode, steps in by several workers at once.
    let tt = run(&target_tracking(), &curve);
    assert_eq!(tt.minutes_over_capacity(), 0.0);
    assert!(tt.most_scale_ins_within(600) > r.most_scale_ins_within(600));
}

#[test]
fn a_drop_of_every_client_costs_one_scale_in_at_most() {
    let r = run(&deployed(), &Scenario::Blip.curve());
    holds("blip", &r);
    assert!(r.scale_ins() <= 1, "{:?}", r.events);
}

#[test]
fn slow_oscillations_do_not_flap() {
    for scenario in [Scenario::OscillationLow, Scenario::OscillationHigh] {
        let r = run(&deployed(), &scenario.curve());
        holds(scenario.describe(), &r);
        assert!(
            r.events.len() <= 6,
            "{}: {} scale events: {:?}",
            scenario.describe(),
            r.events.len(),
            r.events
        );
    }
}
