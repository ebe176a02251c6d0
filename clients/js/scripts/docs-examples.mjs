// Compiles every TypeScript example of the docs (```ts blocks of docs/client.md and this
// package's README.md) against the built package with `tsc --strict`, so a documented example
// cannot drift from the library's types. Run by `npm test`.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = [join(pkg, "../../docs/client.md"), join(pkg, "README.md")];
// Inside the package, so `@elastic-ws/client` resolves to it (a package may import itself).
const out = join(pkg, ".docs-examples");
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
let n = 0;
for (const file of sources) {
  const blocks = readFileSync(file, "utf8").split("```ts\n").slice(1).map((b) => b.split("```")[0]);
  for (const code of blocks) {
    n += 1;
    // A module of its own each (top-level await, its own names).
    writeFileSync(join(out, `example-${n}.ts`), `${code}\nexport {};\n`);
  }
}
writeFileSync(
  join(out, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2022", "DOM"],
      types: ["node"],
      strict: true,
      noEmit: true,
    },
    include: ["*.ts"],
  }),
);
try {
  execFileSync(join(pkg, "node_modules/.bin/tsc"), ["-p", out], { stdio: "inherit" });
} catch {
  console.error(`a documented example does not compile (sources: ${sources.join(", ")})`);
  process.exit(1);
}
console.log(`${n} documented TypeScript examples compile`);
rmSync(out, { recursive: true, force: true });
