// Drives the test page in headless Chromium (Debian's package, through playwright-core) for
// e2e/tests/browser.rs, which starts the workers, the load balancer and the token server, and
// drains a worker when told. Prints `READY <json>` once some events are acknowledged (the test
// then drains the worker the page is on), then `RESULT <json>` when every event is acknowledged,
// and saves a screenshot.
//
//   node e2e/browser.mjs --page URL --count N --screenshot FILE
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
};
const pageUrl = arg("page");
const count = Number(arg("count"));
const screenshot = arg("screenshot");
const executablePath =
  process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const stats = (page) =>
  page.evaluate(() => {
    const p = window.ewsPage;
    const text = (id) => document.getElementById(id).textContent;
    return {
      state: document.getElementById("state").dataset.state,
      stateText: text("state"),
      sent: p.stats.sent,
      acked: p.stats.acked,
      failed: p.stats.failed,
      pending: p.client.unacknowledged,
      opens: p.client.opens,
      resent: p.client.resent,
      tokens: Number(text("tokens")),
      subject: text("subject"),
      ackedIds: p.acked,
      shownAcked: Number(text("acked")),
      shownReconnects: Number(text("reconnects")),
    };
  });
const waitFor = async (page, what, cond, ms) => {
  const start = Date.now();
  for (;;) {
    const s = await stats(page);
    if (cond(s)) return s;
    if (Date.now() - start > ms) {
      throw new Error(`${what}: not within ${ms} ms: ${JSON.stringify({ ...s, ackedIds: undefined })}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
};

let code = 0;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => console.log(`console: ${m.text()}`));
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto(pageUrl);
  const ready = await waitFor(page, "first acknowledgements", (s) => s.acked >= 5, 30_000);
  console.log(`READY ${JSON.stringify({ ...ready, ackedIds: undefined })}`);
  const done = await waitFor(
    page,
    "every event acknowledged",
    (s) => s.sent >= count && s.acked + s.failed >= count && s.pending === 0,
    90_000,
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`RESULT ${JSON.stringify(done)}`);
} catch (e) {
  console.log(`FAILED ${e.stack ?? e}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
