#!/usr/bin/env bash
# cargo-lambda (with its bundled zig for cross-linking): `cargo lambda watch|invoke|build` for the
# scaler Lambdas, and the tests' local Lambda endpoint for backend hooks (`cargo lambda watch`);
# the release build (arm64 zips) uses it too.
source "$(dirname "$0")/lib.sh"
ensure_venv cargo-lambda 3.11 'cargo-lambda==1.9.2'
