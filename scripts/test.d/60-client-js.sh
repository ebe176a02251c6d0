#!/usr/bin/env bash
# The TypeScript client: its protocol types match docs/protocol.schema.json (which matches the
# Rust types), it builds, its unit tests pass, and the test page the worker embeds is the one
# its sources build. (The browser test itself is e2e/tests/browser.rs, in `cargo test`.)
set -euo pipefail
cd "$(dirname "$0")/../../clients/js"
node scripts/gen-protocol.mjs --check
npm test --silent
node scripts/build-page.mjs --check
