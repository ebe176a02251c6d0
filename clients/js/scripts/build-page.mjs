// Bundles the test page (page/main.ts and the library) into worker/src/page/page.js, which the
// worker embeds. `--check` rebuilds in memory and fails when the committed bundle differs.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outPath = join(here, "../../../worker/src/page/page.js");
const result = await build({
  entryPoints: [join(here, "../page/main.ts")],
  bundle: true,
  format: "esm",
  target: "es2020",
  write: false,
  legalComments: "none",
  banner: { js: "// Built from clients/js (page/main.ts) by `npm run page`: do not edit." },
});
const js = result.outputFiles[0].text;
if (process.argv.includes("--check")) {
  if (readFileSync(outPath, "utf8") !== js) {
    console.error("worker/src/page/page.js is out of date: run `npm run page` in clients/js");
    process.exit(1);
  }
  console.log("worker/src/page/page.js matches clients/js");
} else {
  writeFileSync(outPath, js);
  console.log(`wrote ${outPath} (${js.length} bytes)`);
}
