//! The shell commands README.md and docs/ show, checked so they cannot drift from the binaries:
//! every invocation of one of our binaries (in a ```` ```sh ```` block or an inline code span)
//! names only subcommands and flags that binary's `--help` lists, and the commands a reader runs
//! on their own machine against a standalone worker are run here, as written, against one.
//!
//! Running them rewrites only what a test must: `cargo run [--release] --bin X --` and
//! `cargo run -p X --` become the built `X` (on `PATH`, as `ews-load` is), and the documented
//! ports (`127.0.0.1:8080`, `127.0.0.1:9090`, `leader-1:9090`) become the worker's free ones.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ews_testkit::{bin_path, free_port, wait_for_http_ok, workspace_root, Proc, Scratch};

/// The binaries whose flags the docs may name.
const OURS: [&str; 6] = [
    "ews-worker",
    "ews-leader",
    "ews-queue",
    "ews-load",
    "ews-sim",
    "ews-chat",
];

/// One documented command line: where it is, and its text (continuations joined, comments cut).
#[derive(Debug)]
struct Documented {
    at: String,
    text: String,
}

/// README.md and every page of docs/.
fn pages() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable page");
            let name = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
            (name, text)
        })
        .collect()
}

/// The commands of every ```` ```sh ```` block, and the inline code spans that start with one
/// of our binaries or `cargo run`.
fn documented() -> Vec<Documented> {
    let mut out = Vec::new();
    for (name, text) in pages() {
        let mut in_sh = None;
        let mut fenced = false;
        let mut pending = String::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", i + 1);
            if let Some(info) = line.trim_start().strip_prefix("```") {
                if fenced {
                    fenced = false;
                    in_sh = None;
                } else {
                    fenced = true;
                    if matches!(info.trim(), "sh" | "bash" | "shell") {
                        in_sh = Some(());
                    }
                }
                continue;
            }
            if in_sh.is_some() {
                let line = strip_comment(line);
                if let Some(cont) = line.trim_end().strip_suffix('\\') {
                    pending.push_str(cont);
                    pending.push(' ');
                    continue;
                }
                pending.push_str(&line);
                let text = std::mem::take(&mut pending);
                if !text.trim().is_empty() {
                    out.push(Documented {
                        at,
                        text: text.trim().to_string(),
                    });
                }
            } else if !fenced {
                for span in line.split('`').skip(1).step_by(2) {
                    let span = span.trim();
                    let first = span.split_whitespace().next().unwrap_or("");
                    if OURS.contains(&first) || span.starts_with("cargo run ") {
                        out.push(Documented {
                            at: at.clone(),
                            text: span.to_string(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// A line without its shell comment (a `#` at a word's start, outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return line[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    line.to_string()
}

/// Shell words, quotes removed, `$(…)` kept whole; then split into the simple commands of a
/// pipeline or list (`|`, `&&`, `;`).
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut all = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') if depth == 0 => {
                quote = Some(c);
                in_word = true;
            }
            (None, '(') if word.ends_with('$') || depth > 0 => {
                depth += 1;
                word.push(c);
            }
            (None, ')') if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            (None, c) if depth == 0 && (c.is_whitespace() || c == '|' || c == ';' || c == '&') => {
                if in_word || !word.is_empty() {
                    all.last_mut()
                        .expect("a command")
                        .push(std::mem::take(&mut word));
                    in_word = false;
                }
                if c != ' ' && c != '\t' {
                    if c == '&' && chars.peek() != Some(&'&') {
                        continue;
                    }
                    if matches!(c, '|' | '&') {
                        chars.next_if_eq(&c);
                    }
                    all.push(Vec::new());
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word || !word.is_empty() {
        all.last_mut().expect("a command").push(word);
    }
    all.retain(|c| !c.is_empty());
    all
}

/// Which of our binaries a simple command runs, and its arguments.
fn invocation(words: &[String]) -> Option<(&'static str, Vec<String>)> {
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let first = *words.first()?;
    let ours = |name: &str| OURS.iter().copied().find(|b| *b == name);
    if first == "cargo" && words.get(1) == Some(&"run") {
        let sep = words.iter().position(|w| *w == "--")?;
        let named = words[..sep]
            .windows(2)
            .find(|w| w[0] == "--bin" || w[0] == "-p")
            .map(|w| w[1])?;
        return Some((ours(named)?, own(&words[sep + 1..])));
    }
    let base = first.rsplit('/').next().unwrap_or(first);
    let base = base.split("-linux-").next().unwrap_or(base);
    Some((ours(base)?, own(&words[1..])))
}

fn own(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// `--help` of a binary (or of one of its subcommands).
fn help(binary: &str, sub: Option<&str>) -> String {
    let mut cmd = Command::new(bin_path(binary));
    cmd.args(sub).arg("--help");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{binary} --help: {e}"));
    assert!(out.status.success(), "{binary} {sub:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands a `--help` lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a `--help` text lists this flag (`--name` or `-n`) as a whole word.
fn lists(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let after = help[i + flag.len()..].chars().next().unwrap_or(' ');
        let before = help[..i].chars().next_back().unwrap_or(' ');
        !(after.is_ascii_alphanumeric() || after == '-' || after == '_')
            && (before.is_whitespace() || before == '[' || before == ',')
    })
}

#[test]
fn every_documented_flag_is_one_the_binary_takes() {
    let mut helps = std::collections::HashMap::new();
    let mut help_of = |binary: &'static str, sub: Option<String>| -> String {
        helps
            .entry((binary, sub.clone()))
            .or_insert_with(|| help(binary, sub.as_deref()))
            .clone()
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in documented() {
        for words in commands(&doc.text) {
            let Some((binary, args)) = invocation(&words) else {
                continue;
            };
            let top = help_of(binary, None);
            let subs = subcommands(&top);
            let sub = args.first().filter(|a| subs.contains(a)).cloned();
            let text = match &sub {
                Some(s) => help_of(binary, Some(s.clone())),
                None => top,
            };
            for arg in &args {
                let flag = arg.split('=').next().unwrap_or(arg);
                let is_flag = (flag.starts_with("--") && flag.len() > 2)
                    || (flag.len() == 2 && flag.starts_with('-') && flag != "--");
                if !is_flag || flag.contains('…') {
                    continue;
                }
                checked += 1;
                if !lists(&text, flag) {
                    wrong.push(format!(
                        "{}: `{binary}{}` has no {flag}: {}",
                        doc.at,
                        sub.as_deref().map(|s| format!(" {s}")).unwrap_or_default(),
                        doc.text
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "documented flags the binaries do not take:\n{}",
        wrong.join("\n")
    );
    // The scan finds what it should: the README alone names a dozen.
    assert!(checked > 50, "only {checked} documented flags found");
}

/// A standalone worker started the README's way (in a fresh directory, so `./data` is its own),
/// on free ports.
struct Standalone {
    cwd: Scratch,
    public: u16,
    admin: u16,
    proc: Proc,
}

impl Standalone {
    fn start(binary: &str, extra: &[&str]) -> Standalone {
        let cwd = Scratch::new("docs-commands");
        let (public, admin) = (free_port(), free_port());
        let mut cmd = Command::new(bin_path(binary));
        cmd.current_dir(cwd.path())
            .arg("--standalone")
            .args(["--listen", &format!("127.0.0.1:{public}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(extra);
        let proc = Proc::spawn(binary, cmd);
        wait_for_http_ok(
            ([127, 0, 0, 1], public).into(),
            "/info",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("the worker did not start: {e}\n{}", proc.output()));
        Standalone {
            cwd,
            public,
            admin,
            proc,
        }
    }

    /// A documented command as this worker's reader would run it.
    fn localise(&self, text: &str) -> String {
        let mut text = text.to_string();
        for binary in OURS {
            for form in [
                format!("cargo run --release --bin {binary} --"),
                format!("cargo run --bin {binary} --"),
                format!("cargo run --release -p {binary} --"),
                format!("cargo run -p {binary} --"),
            ] {
                text = text.replace(&form, binary);
            }
        }
        text.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", self.public))
            .replace("127.0.0.1:9090", &format!("127.0.0.1:{}", self.admin))
            .replace("leader-1:9090", &format!("127.0.0.1:{}", self.admin))
    }

    /// Runs a documented command in the worker's directory; its output, or why it failed.
    fn run(&self, doc: &str, env: &[(&str, &str)]) -> Result<String, String> {
        let script = format!("set -euo pipefail\n{}", self.localise(doc));
        let bins = bin_path("ews-load");
        let bins = bins.parent().unwrap_or(Path::new("."));
        let path = format!(
            "{}:{}",
            bins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.current_dir(self.cwd.path())
            .args(["-c", &script])
            .env("PATH", path)
            .envs(env.iter().copied());
        let out = cmd.output().map_err(|e| format!("bash: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("`{script}` failed ({}):\n{text}", out.status))
        }
    }
}

/// The ```` ```sh ```` block of a page that contains `needle`, as written.
fn block(page: &str, needle: &str) -> String {
    let (_, text) = pages()
        .into_iter()
        .find(|(name, _)| name == page)
        .unwrap_or_else(|| panic!("no page {page}"));
    text.split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|b| b.strip_prefix("sh\n"))
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("{page} has no sh block with {needle:?}"))
        .to_string()
}

/// The inline code span of a page that starts with `prefix`.
fn span(page: &str, prefix: &str) -> String {
    documented()
        .into_iter()
        .find(|d| d.at.starts_with(&format!("{page}:")) && d.text.starts_with(prefix))
        .unwrap_or_else(|| panic!("{page} has no `{prefix}…`"))
        .text
}

#[test]
fn the_standalone_commands_run_as_written() {
    let worker = Standalone::start("ews-worker", &[]);

    // README: make a token with the kept development secret, and use it.
    let token = worker
        .run(&span("README.md", "ews-load token --sub NAME"), &[])
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.proc.output()));
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    ews_testkit::ws_open(
        ([127, 0, 0, 1], worker.public).into(),
        &format!("/ws?access_token={token}"),
    )
    .unwrap_or_else(|e| panic!("the made token is accepted: {e}\n{}", worker.proc.output()));

    // docs/pipeline.md: the delivery check against the standalone worker's queue.
    let out = worker
        .run(&block("docs/pipeline.md", "ews-load verify"), &[])
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.proc.output()));
    assert!(out.contains("missing 0"), "{out}");

    // docs/cluster-sessions.md: publish and presence, asked of the worker's admin port.
    for needle in ["api/v1/publish", "topic=news.sport'", "after=carol"] {
        let out = worker
            .run(
                &block("docs/cluster-sessions.md", needle),
                &[("ADMIN_TOKEN", "unused")],
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", worker.proc.output()));
        assert!(out.starts_with('{'), "a JSON answer: {out}");
    }
}

#[test]
fn the_chat_example_starts_as_documented() {
    let doc = block("docs/handlers.md", "cargo run -p ews-chat");
    let words = commands(doc.trim()).remove(0);
    let (binary, args) = invocation(&words).expect("ews-chat");
    assert_eq!(binary, "ews-chat");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--standalone")
        .collect();
    let worker = Standalone::start(binary, &args);
    let url = worker
        .proc
        .wait_for_word(
            &format!("http://127.0.0.1:{}/?access_token=", worker.public),
            Duration::from_secs(5),
        )
        .expect("the test page's URL");
    let token = url.rsplit('=').next().unwrap_or_default();
    ews_testkit::ws_open(
        ([127, 0, 0, 1], worker.public).into(),
        &format!("/chat?access_token={token}"),
    )
    .unwrap_or_else(|e| {
        panic!(
            "the /chat route the command sets up: {e}\n{}",
            worker.proc.output()
        )
    });
}
