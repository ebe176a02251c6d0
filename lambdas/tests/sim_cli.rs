//! `ews-sim` as a user runs it: the paper's scenarios, CSV in and out, the PNG, bad input.

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
    let (ok, out, err) = sim(&["--scenario", "table2"]);
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

    let (ok, out, _) = sim(&["--scenario", "case1"]);
    assert!(ok);
    assert!(out.contains("instance-hours 6.00, cost $0.2784"), "{out}");
    assert!(
        out.contains("13 nodes x 3.00 h = 39.00 instance-hours, $1.8096"),
        "{out}"
    );

    let (ok, out, _) = sim(&["--scenario", "case2"]);
    assert!(ok);
    assert!(
        out.contains("25 nodes x 8.00 h = 200.00 instance-hours, $9.2800"),
        "{out}"
    );
}

#[test]
fn csv_in_csv_and_png_out() {
    let dir = ews_testkit::Scratch::new("sim-test");
    let curve = dir.join("curve.csv");
    std::fs::write(&curve, "seconds,clients\n0,0\n3600,160000\n7200,0\n").unwrap();
    let (csv, png) = (dir.join("out.csv"), dir.join("out.png"));
    let (ok, out, err) = sim(&[
        "--load-csv",
        curve.to_str().unwrap(),
        "--csv-out",
        csv.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("max nodes 5"), "{out}");
    assert!(out.contains("down 3->2"), "{out}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("t_secs,clients,connected,desired,in_service,booting"));
    assert_eq!(rows.lines().count(), 1 + 121);
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
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
    let (ok, _, err) = sim(&["--hysteresis", "60000"]);
    assert!(!ok);
    assert!(err.contains("--hysteresis"), "{err}");
}
