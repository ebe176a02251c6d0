// The TypeScript client in Node.js (on the `ws` package) as one subscriber of
// e2e/tests/history.rs: it subscribes to a topic with history through the load balancer and
// keeps every push while the cluster drains, kills and rebalances its workers; the client
// library recovers what it missed on each reconnect. When the message `done:N` arrives it checks
// that it heard 1..N once each, in order, prints `RESULT <json>` and exits (non-zero if not).
//
//   node e2e/history.mjs --url ws://HOST:PORT/ws --token JWT --topic room.1
import WebSocket from "ws";
import { connect } from "../dist/index.js";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
};
const url = arg("url");
const token = arg("token");
const topic = arg("topic");

const heard = [];
const unrecovered = [];
let opens = 0;
const client = connect({ url, token, tokenVia: "query", WebSocket, backoff: { initialMs: 100, maxMs: 1000 } });
client.onState((s) => {
  if (s.state === "open") opens += 1;
});
client.onUnrecovered((u) => unrecovered.push(u.reason));
const done = new Promise((resolve) => {
  client.onPush((msg, t) => {
    if (t !== topic) return;
    if (msg.startsWith("done:")) resolve(Number(msg.slice(5)));
    else heard.push(Number(msg));
  });
});
await client.subscribe(topic);
console.log("SUBSCRIBED");
const last = await done;
const seen = new Set();
let duplicate = 0;
let outOfOrder = 0;
heard.forEach((n, i) => {
  if (seen.has(n)) duplicate += 1;
  seen.add(n);
  if (i > 0 && n <= heard[i - 1]) outOfOrder += 1;
});
let missing = 0;
for (let n = 1; n <= last; n += 1) if (!seen.has(n)) missing += 1;
const result = { last, heard: heard.length, missing, duplicate, outOfOrder, unrecovered, opens };
console.log(`RESULT ${JSON.stringify(result)}`);
client.close();
process.exit(missing === 0 && duplicate === 0 && outOfOrder === 0 ? 0 : 1);
