//! The function's binary outside Lambda: it needs the runtime API, and says so instead of
//! hanging. (Its decisions are unit-tested in the library; `e2e/tests/hooks.rs` invokes it
//! through `cargo lambda watch` from a worker.)

use std::process::Command;

#[test]
fn outside_lambda_the_binary_fails_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_ews-hooks-lambda"))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS_LAMBDA"), "{err}");
}
