//! A Lambda function served locally the way a team runs one: `cargo lambda watch` emulates the
//! Lambda invoke API and runtime API (`--only-lambda-apis`), and the function's binary (built
//! with the tests) polls it like the Lambda service's runtime. An AWS SDK reaches it with
//! `AWS_ENDPOINT_URL_LAMBDA` set to [`LocalLambda::endpoint`].

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{bin_path, free_port, net, tools_dir, workspace_root, Proc};

pub struct LocalLambda {
    pub addr: SocketAddr,
    pub function: String,
    /// The function first: it goes before the emulator it polls.
    _function: Proc,
    _emulator: Proc,
}

impl LocalLambda {
    /// Serves the workspace binary `function` as the function of that name.
    pub fn start(function: &str) -> LocalLambda {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let cargo_lambda = tools_dir().join("cargo-lambda/bin/cargo-lambda");
        assert!(
            cargo_lambda.is_file(),
            "{} missing: bash scripts/tools/cargo-lambda.sh",
            cargo_lambda.display()
        );
        let mut cmd = Command::new(cargo_lambda);
        cmd.current_dir(workspace_root())
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &addr.port().to_string()]);
        let emulator = Proc::spawn("cargo-lambda-watch", cmd);
        if let Err(e) = net::wait_for_tcp(addr, Duration::from_secs(30)) {
            panic!(
                "cargo lambda watch did not start: {e}\n{}",
                emulator.output()
            );
        }
        let mut cmd = Command::new(bin_path(function));
        cmd.env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://{addr}/.rt/{function}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        let function_proc = Proc::spawn(function, cmd);
        LocalLambda {
            addr,
            function: function.to_string(),
            _function: function_proc,
            _emulator: emulator,
        }
    }

    /// What `AWS_ENDPOINT_URL_LAMBDA` should say.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
