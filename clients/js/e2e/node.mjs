// The client in Node.js on the `ws` package, against a real worker, for e2e/tests/browser.rs:
//  1. a token function whose first token has expired: the worker answers 401, the client sees
//     it (Node can) and asks the function again, connects, and every event is acknowledged;
//  2. a static expired token: refused once, the same token again ends the client.
// Prints `RESULT <json>`.
//
//   node e2e/node.mjs --url ws://HOST:PORT/ws --expired JWT --valid JWT --count N
import WebSocket from "ws";
import { connect } from "../dist/index.js";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
};
const url = arg("url");
const expired = arg("expired");
const valid = arg("valid");
const count = Number(arg("count"));

const until = (client, cond, ms) =>
  new Promise((resolve, reject) => {
    if (cond(client.state)) return resolve(client.state);
    const timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${JSON.stringify(client.state)}`)), ms);
    const stop = client.onState((s) => {
      if (cond(s)) {
        clearTimeout(timer);
        stop();
        resolve(s);
      }
    });
  });

// 1. Refreshed.
let asked = 0;
const states = [];
const client = connect({
  url,
  WebSocket,
  backoff: { initialMs: 50, maxMs: 200 },
  token: async () => (asked++ === 0 ? expired : valid),
});
client.onState((s) => states.push(s));
await until(client, (s) => s.state === "open", 10_000);
const acks = await Promise.all(
  Array.from({ length: count }, (_, i) => client.send({ msg: `node ${i}` })),
);
client.close();

// 2. Refused for good.
const stuck = connect({ url, WebSocket, token: expired, backoff: { initialMs: 50, maxMs: 200 } });
const end = await until(stuck, (s) => s.state === "closed" && s.reconnectInMs === null, 10_000);
let late = null;
await stuck.send({ msg: "too late" }).catch((e) => (late = e.kind));

console.log(
  `RESULT ${JSON.stringify({
    asked,
    refusedFirst: states.some((s) => s.state === "closed" && s.code === 4001),
    acked: acks.length,
    ids: acks.map((a) => a.id),
    stuckEnd: end,
    late,
  })}`,
);
process.exit(0);
