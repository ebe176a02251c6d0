// Writes src/protocol.ts from the protocol's JSON Schema (docs/protocol.schema.json, itself
// generated from the Rust types), so the client and the server cannot drift. `--check` compares
// instead of writing and fails when the file is out of date.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const schemaPath = join(here, "../../../docs/protocol.schema.json");
const outPath = join(here, "../src/protocol.ts");
const schema = JSON.parse(readFileSync(schemaPath, "utf8"));

// One root naming every definition, so each becomes an exported type.
const names = Object.keys(schema.$defs).sort();
const root = {
  title: "Protocol",
  type: "object",
  additionalProperties: false,
  properties: Object.fromEntries(names.map((n) => [n, { $ref: `#/$defs/${n}` }])),
  $defs: schema.$defs,
};
let ts = await compile(root, "Protocol", {
  bannerComment:
    "/* Generated from docs/protocol.schema.json by `npm run gen`: do not edit. */",
  additionalProperties: false,
  strictIndexSignatures: true,
  style: { singleQuote: false },
});
const want = ts.endsWith("\n") ? ts : ts + "\n";
if (process.argv.includes("--check")) {
  const have = readFileSync(outPath, "utf8");
  if (have !== want) {
    console.error("src/protocol.ts is out of date with docs/protocol.schema.json: run `npm run gen`");
    process.exit(1);
  }
  console.log("src/protocol.ts matches docs/protocol.schema.json");
} else {
  writeFileSync(outPath, want);
  console.log(`wrote ${outPath}`);
}
