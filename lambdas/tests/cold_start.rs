//! A scaler or the termination policy with missing or malformed configuration fails at cold
//! start, naming the variable.

use std::process::Command;

fn cold_start(bin: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn missing_or_malformed_config_fails_naming_the_variable() {
    for bin in [
        env!("CARGO_BIN_EXE_ews-scale-up"),
        env!("CARGO_BIN_EXE_ews-scale-down"),
    ] {
        let (ok, out) = cold_start(bin, &[]);
        assert!(!ok);
        assert!(out.contains("WS_ASG_NAME is not set"), "{out}");

        let (ok, out) = cold_start(
            bin,
            &[
                ("WS_ASG_NAME", "workers"),
                ("SCALE_UP_ALARM", "up"),
                ("SCALE_DOWN_ALARM", "down"),
                ("STEP", "fifty thousand"),
            ],
        );
        assert!(!ok);
        assert!(out.contains("STEP"), "{out}");
        assert!(out.contains("fifty thousand"), "{out}");
    }
    let (ok, out) = cold_start(env!("CARGO_BIN_EXE_ews-terminate"), &[]);
    assert!(!ok);
    assert!(out.contains("DEPLOYMENT is not set"), "{out}");
}
