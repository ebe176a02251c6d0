//! `ews-chat`: an elastic-ws worker with the chat handler registered. Every `ews-worker` flag
//! works; route the handler with `--routes /chat=chat` (or `/chat=chat@key-hash` in a cluster).

fn main() -> std::process::ExitCode {
    ews_worker::cli::main("ews-chat", |node| node.handler("chat", ews_chat::Chat))
}
