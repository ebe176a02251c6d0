#!/usr/bin/env bash
# The TypeScript client: its protocol types match docs/protocol.schema.json (which matches the
# Rust types), it builds, its unit tests pass, and the test page the worker embeds is the one
# its sources build. (The browser test itself is e2e/tests/browser.rs, in `cargo test`.)
set -euo pipefail
cd "$(dirname "$0")/../../clients/js"
node scripts/gen-protocol.mjs --check
npm test --silent
node scripts/build-page.mjs --check
# The package a team installs: `npm pack` (which builds first), installed into an empty project
# from the file, offline; it imports, and carries its README, LICENSE and types.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" >/dev/null
tgz="$(ls "$tmp"/*.tgz)"
# Listed once: `tar | grep -q` would fail under pipefail whenever grep stops reading first.
contents="$(tar -tzf "$tgz")"
for f in package/README.md package/LICENSE package/dist/index.d.ts; do
  grep -qx "$f" <<<"$contents" || { echo "npm pack: $f missing from the package"; exit 1; }
done
cmp -s LICENSE ../../LICENSE || { echo "clients/js/LICENSE differs from the repository's"; exit 1; }
mkdir "$tmp/app"
(cd "$tmp/app" && printf '{"name":"app","version":"1.0.0","type":"module"}\n' >package.json &&
  npm install --offline --no-audit --no-fund "$tgz" >/dev/null &&
  node -e "import('@elastic-ws/client').then((m) => { if (typeof m.connect !== 'function') process.exit(1); })")
echo "npm pack: a package that installs from its file and imports"
