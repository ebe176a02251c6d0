//! `ews-worker`: the library's command line with the built-in handlers.

fn main() -> std::process::ExitCode {
    ews_worker::cli::main("ews-worker", |node| node)
}
