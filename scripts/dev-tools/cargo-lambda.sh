#!/usr/bin/env bash
# cargo-lambda (with its bundled zig for cross-linking): `cargo lambda watch|invoke|build` for the
# scaler Lambdas. Not needed by the tests; the release build (arm64 zips) uses it.
source "$(dirname "$0")/../tools/lib.sh"
ensure_venv cargo-lambda 3.11 'cargo-lambda==1.9.2'
