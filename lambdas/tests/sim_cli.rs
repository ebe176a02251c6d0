//! `ews-sim` as a user runs it: the paper's scenarios, the day in both modes, CSV in and out, the
//! SVG chart, bad input.

use std::process::Command;

fn sim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ews-sim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn table_ii_and_the_cost_cases() {
    let (ok, out, err) = sim(&["--preset", "paper", "--scenario", "table2"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("at 50000 clients: nodes (thousands) 25.0 / 25.0"),
        "{out}"
    );
    assert!(out.contains("at 150000 clients: nodes (thousands) 54.3 / 54.3 / 29.0 / 12.4"));
    assert!(
        out.contains("scale events: 1:41 up 2->3, 3:21 up 3->4"),
        "{out}"
    );

    let (ok, out, _) = sim(&["--preset", "paper", "--scenario", "case1"]);
    assert!(ok);
    assert!(out.contains("instance-hours 6.00, cost $0.2784"), "{out}");
    assert!(
        out.contains("13 nodes x 3.00 h = 39.00 instance-hours, $1.8096"),
        "{out}"
    );

    let (ok, out, _) = sim(&["--preset", "paper", "--scenario", "case2"]);
    assert!(ok);
    assert!(
        out.contains("25 nodes x 8.00 h = 200.00 instance-hours, $9.2800"),
        "{out}"
    );
    // Read as the paper bills it (2 h + 4 h), the static fleet is its $6.96 exactly.
    let (ok, out, _) = sim(&["--preset", "paper", "--scenario", "case2-6h"]);
    assert!(ok);
    assert!(
        out.contains("25 nodes x 6.00 h = 150.00 instance-hours, $6.9600"),
        "{out}"
    );
}

#[test]
fn the_day_in_both_modes() {
    let (ok, lambda, err) = sim(&["--scenario", "day", "--churn-per-hour", "0.2"]);
    assert!(ok, "{err}");
    assert!(
        lambda.contains("policy: lambda: step 80000 per-worker, hysteresis 8000"),
        "{lambda}"
    );
    assert!(lambda.contains("busy worker above 90 %"), "{lambda}");
    assert!(lambda.contains("up 1 of 1, down 3 of 3 x 60 s"), "{lambda}");
    // Deployed workers rebalance, priced as deployed; `--rebalance off` shows the day without.
    assert!(lambda.contains("rebalance 20/s above +20 %"), "{lambda}");
    assert!(lambda.contains("peak per node 90245"), "{lambda}");
    assert!(lambda.contains("cost $8.6187 at $0.101/h"), "{lambda}");
    assert!(
        lambda.contains(
            "capacity: 100000 per worker, 0.0 minutes with a worker over it, 0 connections refused"
        ),
        "{lambda}"
    );
    assert!(
        lambda.contains("cost per million connection-minutes: $0.0281"),
        "{lambda}"
    );
    let (ok, off, err) = sim(&[
        "--scenario",
        "day",
        "--churn-per-hour",
        "0.2",
        "--rebalance",
        "off",
    ]);
    assert!(ok, "{err}");
    assert!(off.contains("rebalance off"), "{off}");
    // Without rebalancing a worker fills up to its capacity and refuses.
    assert!(off.contains("peak per node 100000"), "{off}");
    let (ok, _, err) = sim(&["--rebalance", "maybe"]);
    assert!(!ok);
    assert!(err.contains("--rebalance"), "{err}");
    let (ok, tt, err) = sim(&[
        "--scenario",
        "day",
        "--churn-per-hour",
        "0.2",
        "--mode",
        "target-tracking",
    ]);
    assert!(ok, "{err}");
    assert!(
        tt.contains("target tracking: 80000 clients per worker"),
        "{tt}"
    );
    for out in [&lambda, &tt] {
        assert!(out.contains("max nodes 6"), "{out}");
        assert!(out.contains("clients moved by scale-in"), "{out}");
    }
}

#[test]
fn csv_in_csv_and_svg_out() {
    let dir = ews_testkit::Scratch::new("sim-test");
    let curve = dir.join("curve.csv");
    std::fs::write(&curve, "seconds,clients\n0,0\n3600,400000\n7200,0\n").unwrap();
    let (csv, svg) = (dir.join("out.csv"), dir.join("out.svg"));
    let (ok, out, err) = sim(&[
        "--load-csv",
        curve.to_str().unwrap(),
        "--csv-out",
        csv.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("max nodes 5"), "{out}");
    assert!(out.contains("down 3->2"), "{out}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("t_secs,clients,connected,desired,in_service,booting"));
    // A row every 10 s.
    assert_eq!(rows.lines().count(), 1 + 721);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg ") && svg.contains("load from curve.csv"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = ews_testkit::Scratch::new("sim-bad");
    let curve = dir.join("bad.csv");
    std::fs::write(&curve, "0,0\n60,lots\n").unwrap();
    let (ok, _, err) = sim(&["--load-csv", curve.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");
    let long = dir.join("long.csv");
    std::fs::write(&long, "0,0\n100000000,5\n").unwrap();
    let (ok, _, err) = sim(&["--load-csv", long.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("--tick-secs"), "{err}");
    let (ok, _, err) = sim(&["--hysteresis", "90000"]);
    assert!(!ok);
    assert!(err.contains("--hysteresis"), "{err}");
    let (ok, _, err) = sim(&["--down-datapoints-to-alarm", "4"]);
    assert!(!ok);
    assert!(err.contains("--down-evaluation-periods"), "{err}");
    for (flag, value) in [
        ("--schedule", "25:00-21:00=6"),
        ("--schedule", "21:00-07:00=6"),
        ("--busy-fraction", "2"),
        ("--lost-invocations", "1.5"),
        ("--thresholds", "both"),
    ] {
        let (ok, _, err) = sim(&[flag, value]);
        assert!(!ok, "{flag} {value}");
        assert!(
            err.contains(flag) || err.contains(value),
            "{flag} {value}: {err}"
        );
    }
}

/// `--compare` puts the run beside target tracking and the best static fleet; Spot, a
/// schedule and the previous release's settings are one flag each.
#[test]
fn compare_spot_schedule_and_the_previous_release() {
    let (ok, out, err) = sim(&[
        "--scenario",
        "day",
        "--compare",
        "--spot-base",
        "1",
        "--schedule",
        "17:00-21:00=6",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("up 4->6 (schedule)"), "{out}");
    assert!(out.contains("spot: "), "{out}");
    assert!(out.contains("0 lost to them"), "{out}");
    assert!(
        out.contains("compare: lambda, Spot above 1 | 6 | 0.0 |"),
        "{out}"
    );
    assert!(
        out.contains("compare: target tracking at 80000, Spot above 1 |"),
        "{out}"
    );
    assert!(
        out.contains(
            "compare: static 5 workers (fewest without overload) | 5 | 0.0 | 0 | 0 | 0 | 120.00 |"
        ),
        "{out}"
    );
    let (ok, out, err) = sim(&[
        "--preset",
        "previous",
        "--scenario",
        "day",
        "--price-per-hour",
        "0.085",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("cost per million connection-minutes: $0.0387"),
        "{out}"
    );
}

/// The charts in docs/scaling.md, each with the flags the docs quote. They are deterministic:
/// the committed files must be what `ews-sim` writes now (`EWS_WRITE_CHARTS=1` rewrites them).
const DOC_CHARTS: [(&str, &[&str]); 13] = [
    ("table2", &["--preset", "paper", "--scenario", "table2"]),
    (
        "table2-rebalance",
        &["--preset", "paper", "--scenario", "table2", "--rebalance"],
    ),
    ("case1", &["--preset", "paper", "--scenario", "case1"]),
    ("case2", &["--preset", "paper", "--scenario", "case2"]),
    ("case2-6h", &["--preset", "paper", "--scenario", "case2-6h"]),
    ("day-lambda", &["--scenario", "day"]),
    (
        "day-target-tracking",
        &["--scenario", "day", "--mode", "target-tracking"],
    ),
    (
        "day-previous",
        &["--preset", "previous", "--scenario", "day"],
    ),
    ("day-spot", &["--scenario", "day", "--spot-base", "0"]),
    ("flash", &["--scenario", "flash"]),
    ("blip", &["--scenario", "blip"]),
    ("oscillation-low", &["--scenario", "oscillation-low"]),
    ("oscillation-high", &["--scenario", "oscillation-high"]),
];

#[test]
fn the_charts_in_the_docs_are_current() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let page = std::fs::read_to_string(docs.join("scaling.md")).unwrap();
    let dir = ews_testkit::Scratch::new("sim-charts");
    for (name, flags) in DOC_CHARTS {
        let out = dir.join(format!("{name}.svg"));
        let mut args = flags.to_vec();
        args.extend(["--svg", out.to_str().unwrap()]);
        let (ok, _, err) = sim(&args);
        assert!(ok, "{name}: {err}");
        let fresh = std::fs::read_to_string(&out).unwrap();
        let committed = docs.join(format!("charts/{name}.svg"));
        if std::env::var_os("EWS_WRITE_CHARTS").is_some() {
            std::fs::write(&committed, &fresh).unwrap();
        }
        let old = std::fs::read_to_string(&committed).unwrap_or_default();
        assert!(
            old == fresh,
            "docs/charts/{name}.svg is stale: EWS_WRITE_CHARTS=1 cargo test -p ews-lambdas --test sim_cli"
        );
        let command = format!("ews-sim {} --svg docs/charts/{name}.svg", flags.join(" "));
        assert!(
            page.contains(&command),
            "docs/scaling.md should show `{command}`"
        );
        assert!(
            page.contains(&format!("charts/{name}.svg)")),
            "{name}: not in the page"
        );
    }
}
