//! The `ews-chat` binary itself: it is a worker under its own name with the chat handler
//! registered. (Being an integration test also makes `cargo test --no-run` link the binary,
//! which the browser tests in `e2e` start.)

use std::process::Command;

fn chat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ews-chat"))
}

#[test]
fn help_names_the_binary_and_offers_every_worker_flag() {
    let out = chat().arg("--help").output().expect("run ews-chat --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: ews-chat"), "{help}");
    assert!(
        help.starts_with("ews-chat:"),
        "the about line names this binary: {help}"
    );
    for flag in [
        "--routes",
        "--standalone",
        "--cluster-secret-file",
        "--sink",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
}

#[test]
fn a_route_to_an_unknown_handler_is_refused_naming_the_chat_handler_among_those_it_has() {
    let out = chat()
        .args([
            "--standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--routes", "/chat=nope"])
        .output()
        .expect("run ews-chat");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"no handler named "nope" (this node has: backend, chat, echo, greet, ingest)"#
        ),
        "{err}"
    );
}
