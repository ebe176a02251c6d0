// The test page of `ews-worker --standalone` (and `--test-page`), built on the client library:
// connect, send events with acknowledgements, show what comes back. Bundled by
// `npm run page` into worker/src/page/page.js, which the worker embeds.
import { connect, type ConnectionState, type TokenSource } from "../src/index.js";

const q = new URLSearchParams(location.search);
const $ = (id: string) => document.getElementById(id) as HTMLElement;

/** Where the token comes from: `access_token` as given, or `token_url` fetched before every connect. */
let tokenFetches = 0;
function tokenSource(): TokenSource | undefined {
  const tokenUrl = q.get("token_url");
  if (tokenUrl) {
    return async () => {
      tokenFetches += 1;
      $("tokens").textContent = String(tokenFetches);
      const resp = await fetch(tokenUrl, { cache: "no-store" });
      if (!resp.ok) throw new Error(`token_url answered ${resp.status}`);
      const token = (await resp.text()).trim();
      showSubject(token);
      return token;
    };
  }
  const token = q.get("access_token");
  if (token) showSubject(token);
  return token ?? undefined;
}

/** The token's `sub`: the client id every stored event carries, whatever the page sends. */
function showSubject(token: string): void {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const sub = JSON.parse(atob(payload)).sub;
    $("subject").textContent = typeof sub === "string" ? sub : "(none)";
  } catch {
    $("subject").textContent = "(not a JWT)";
  }
}

const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
const client = connect({ url: wsUrl, token: tokenSource() });

const stats = { sent: 0, acked: 0, failed: 0, pushes: 0, latencies: [] as number[] };
const acked: string[] = [];
// `connect` too, so the console (and the browser tests) can open a client of their own on any
// route: `ewsPage.connect({url: "ws://…/chat", token: "…"})`.
(window as unknown as { ewsPage: unknown }).ewsPage = { client, stats, acked, connect };

function log(line: string): void {
  const el = $("log");
  const row = document.createElement("div");
  row.textContent = `${new Date().toISOString().slice(11, 23)} ${line}`;
  el.prepend(row);
  while (el.childElementCount > 200) el.lastElementChild?.remove();
}

function render(): void {
  $("sent").textContent = String(stats.sent);
  $("acked").textContent = String(stats.acked);
  $("pending").textContent = String(client.unacknowledged);
  $("failed").textContent = String(stats.failed);
  $("reconnects").textContent = String(Math.max(0, client.opens - 1));
  $("resent").textContent = String(client.resent);
  $("pushes").textContent = String(stats.pushes);
  const l = [...stats.latencies].sort((a, b) => a - b);
  const at = (p: number) => (l.length ? `${l[Math.min(l.length - 1, Math.floor(p * l.length))]} ms` : "–");
  $("latency").textContent = `p50 ${at(0.5)} · p99 ${at(0.99)}`;
}

/** What a close code with no reason means, as far as a browser can tell. */
function meaning(code: number): string {
  switch (code) {
    case 1006:
      return "connection lost, or refused: a browser is not told which (a stopped worker, or a token it does not accept)";
    case 1012:
      return "server restarting or draining";
    case 4001:
      return "token refused or expired";
    default:
      return "no reason given";
  }
}

client.onState((s: ConnectionState) => {
  const el = $("state");
  el.dataset.state = s.state;
  if (s.state === "open") el.textContent = "open";
  else if (s.state === "connecting") el.textContent = `connecting (attempt ${s.attempt + 1})`;
  else {
    const again = s.reconnectInMs === null ? "not reconnecting" : `reconnecting in ${s.reconnectInMs} ms`;
    el.textContent = `closed ${s.code} (${s.reason || meaning(s.code)}): ${again}`;
  }
  log(`state: ${el.textContent}`);
  render();
});

client.onPush((msg) => {
  stats.pushes += 1;
  log(`← push: ${msg}`);
  render();
});

const count = Number(q.get("count") ?? "0"); // 0: keep sending
const rate = Math.max(0.1, Number(q.get("rate") ?? "1"));
let n = 0;
const timer = setInterval(() => {
  if (count > 0 && n >= count) {
    clearInterval(timer);
    return;
  }
  n += 1;
  const started = performance.now();
  const msg = `hello ${n}`;
  stats.sent += 1;
  client
    .send({ msg })
    .then((ack) => {
      const ms = Math.round(performance.now() - started);
      stats.acked += 1;
      stats.latencies.push(ms);
      if (stats.latencies.length > 1000) stats.latencies.shift();
      acked.push(ack.id);
      log(`✓ ${msg} (id ${ack.id}) acknowledged as #${ack.seq} in ${ms} ms`);
    })
    .catch((e: Error) => {
      stats.failed += 1;
      log(`✗ ${msg}: ${e.message}`);
    })
    .finally(render);
  render();
}, 1000 / rate);
