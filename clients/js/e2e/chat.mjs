// Drives the chat example (examples/chat) for e2e/tests/chat.rs: two Chromium pages (through
// playwright-core) and one Node.js client (the `ws` package) talk through the chat handler on
// three workers behind a round-robin nginx. Ann is on the local route, Bob and Carol on the
// route that places the handler with key-hash. They join rooms, speak, leave, and Bob closes;
// each step waits for what every member must hear. Both routes announce presence (`+presence`):
// members hear the worker's join/leave frames. Bob asks the handler who is in the lobby (an rpc),
// Ann publishes straight to the room (a client publish: the others see her id as `from`).
// Prints `RESULT <json>` (what each heard), exits non-zero with the step that failed.
//
// Dan uses the TypeScript client library in a Chromium page (the worker's test page exposes it):
// he subscribes to the lobby's topic, hears the room and its joins, publishes, and asks who.
//
//   node e2e/chat.mjs --lb HOST:PORT --local /chat --remote /remote --ann JWT --bob JWT --carol JWT \
//     --bob-name NAME --carol-name NAME --carol-id SUB --dan JWT
// Every token carries a `name` claim, which the room hears: Ann's read where her socket is, Bob's
// and Carol's where their handler is (for at least one of them carried over the node link).
import { execFileSync } from "node:child_process";
import WebSocket from "ws";
import { chromium } from "playwright-core";

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
};
const lb = arg("lb");
const bobName = arg("bob-name");
const carolName = arg("carol-name");
const carolId = arg("carol-id");
const url = (path, token) => `ws://${lb}${path}?access_token=${encodeURIComponent(token)}`;
const executablePath =
  process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();

// What a client heard: a push carries the room's event in `msg` (or, published by a client, its
// text and its `from`); a direct answer is the event; the worker's own frames are themselves.
const norm = (text) => {
  const f = JSON.parse(text);
  if (f.type !== "push") return f;
  if (f.from) return { direct: f.msg, from: f.from, topic: f.topic };
  return { ...JSON.parse(f.msg), topic: f.topic };
};

/// A chat member in a Chromium page (its own browser context: its own connection).
const inBrowser = async (browser, name, wsUrl) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => console.log(`${name} console: ${m.text()}`));
  page.on("pageerror", (e) => console.log(`${name} page error: ${e.message}`));
  await page.goto(`http://${lb}/info`);
  await page.evaluate(
    (u) =>
      new Promise((resolve, reject) => {
        window.heard = [];
        const ws = new WebSocket(u);
        window.chat = ws;
        ws.onmessage = (e) => window.heard.push(e.data);
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error("websocket error"));
      }),
    wsUrl,
  );
  return {
    name,
    say: (obj) => page.evaluate((t) => window.chat.send(t), JSON.stringify(obj)),
    heard: async () => (await page.evaluate(() => window.heard)).map(norm),
    close: () => page.evaluate(() => window.chat.close(1000, "bye")),
  };
};

/// A chat member in Node.js.
const inNode = (name, wsUrl) =>
  new Promise((resolve, reject) => {
    const heard = [];
    const ws = new WebSocket(wsUrl);
    ws.on("message", (data) => heard.push(data.toString()));
    ws.on("error", reject);
    ws.on("open", () =>
      resolve({
        name,
        say: async (obj) => ws.send(JSON.stringify(obj)),
        heard: async () => heard.map(norm),
        close: async () => ws.close(1000, "bye"),
      }),
    );
  });

const waitFor = async (who, what, pred, ms = 20_000) => {
  const start = Date.now();
  for (;;) {
    const heard = await who.heard();
    const found = heard.find(pred);
    if (found) return found;
    if (Date.now() - start > ms) {
      throw new Error(`${who.name} did not hear ${what} within ${ms} ms; heard ${JSON.stringify(heard)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
};
const said = (room, from, text) => (e) =>
  e.event === "said" && e.room === room && e.from === from && e.text === text;
const members = (room) => (e) => e.event === "members" && e.room === room;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
let code = 0;
try {
  const ann = await inBrowser(browser, "ann", url(arg("local"), arg("ann")));
  await ann.say({ do: "join", room: "lobby" });
  await waitFor(ann, "the lobby's members", members("lobby"));

  const bob = await inBrowser(browser, "bob", url(arg("remote"), arg("bob")));
  await bob.say({ do: "join", room: "lobby" });
  const bobSees = await waitFor(bob, "the lobby's members", members("lobby"));
  // Ann's token names her: the room hears her name, presence lists her id.
  await waitFor(ann, "bob joining", (e) => e.event === "joined" && e.from === bobName);

  const carol = await inNode("carol", url(arg("remote"), arg("carol")));
  await carol.say({ do: "join", room: "lobby" });
  await carol.say({ do: "join", room: "ops" });
  await waitFor(carol, "the lobby's members", members("lobby"));
  await waitFor(carol, "the ops room's members", members("ops"));
  for (const m of [ann, bob]) {
    await waitFor(m, "carol joining", (e) => e.event === "joined" && e.from === carolName);
    // The worker's own join frame, by client id: the route announces presence.
    await waitFor(m, "carol's join frame", (e) => e.type === "join" && e.topic === "chat.lobby" && e.clientId === carolId);
  }

  // Bob asks the handler who is in the lobby.
  await bob.say({ type: "rpc", id: 1, method: "who", data: { room: "lobby" } });
  const who = await waitFor(bob, "the answer to who", (e) => e.type === "reply" && e.id === 1);
  await bob.say({ type: "rpc", id: 2, method: "dance" });
  await waitFor(bob, "no such method", (e) => e.type === "reply" && e.id === 2 && e.error?.code === "no_method");

  // Ann publishes straight to the room: no handler in the way, her id as `from`.
  await ann.say({ type: "publish", topic: "chat.lobby", msg: "direct from ann", id: "a1" });
  await waitFor(ann, "her publish answered", (e) => e.type === "published" && e.id === "a1" && e.delivered === 3);
  for (const m of [bob, carol]) {
    await waitFor(m, "ann's direct message", (e) => e.direct === "direct from ann" && e.from === "ann");
  }

  await ann.say({ do: "say", room: "lobby", text: "hello from ann" });
  for (const m of [bob, carol]) await waitFor(m, "ann's hello", said("lobby", "Ann", "hello from ann"));
  await bob.say({ do: "say", room: "lobby", text: "hi from bob" });
  for (const m of [ann, carol]) {
    await waitFor(m, "bob's hi", said("lobby", bobName, "hi from bob"));
  }

  await carol.say({ do: "leave", room: "lobby" });
  for (const m of [ann, bob]) {
    await waitFor(m, "carol leaving", (e) => e.event === "left" && e.room === "lobby" && e.from === carolName);
    await waitFor(m, "carol's leave frame", (e) => e.type === "leave" && e.topic === "chat.lobby" && e.clientId === carolId);
  }
  await carol.say({ do: "say", room: "lobby", text: "still here?" });
  await waitFor(carol, "a refusal", (e) => e.event === "error" && /join room lobby/.test(e.detail));
  await carol.say({ do: "say", room: "ops", text: "ops only" });
  await waitFor(carol, "its own ops message", said("ops", carolName, "ops only"));

  // Dan: the TypeScript client in Chromium, on the remote route.
  const danPage = await (await browser.newContext()).newPage();
  danPage.on("console", (m) => console.log(`dan console: ${m.text()}`));
  await danPage.goto(`http://${lb}/?access_token=${encodeURIComponent(arg("dan"))}`);
  await danPage.waitForFunction(() => window.ewsPage !== undefined);
  const danDid = await danPage.evaluate(
    async ({ u, token }) => {
      const c = window.ewsPage.connect({ url: u, token });
      const heard = { pushes: [], presence: [] };
      window.dan = { c, heard };
      c.onPush((msg, topic, from) => heard.pushes.push({ msg, topic, from }));
      c.onPresence((e) => heard.presence.push(e));
      await c.subscribe("chat.lobby");
      const who = await c.rpc("who", { room: "lobby" });
      let refused = null;
      await c.rpc("dance").catch((e) => (refused = e.kind));
      const reached = await c.publish("chat.lobby", "dan was here");
      let forbidden = null;
      await c.publish("news.today", "no").catch((e) => (forbidden = e.kind));
      return { who, refused, reached, forbidden };
    },
    { u: `ws://${lb}${arg("remote")}`, token: arg("dan") },
  );
  for (const m of [ann, bob]) {
    await waitFor(m, "dan joining the lobby", (e) => e.type === "join" && e.topic === "chat.lobby" && e.clientId === "dan");
  }
  await waitFor(ann, "dan's message", (e) => e.direct === "dan was here" && e.from === "dan");
  await ann.say({ do: "say", room: "lobby", text: "hi dan" });
  const danHeard = async () => danPage.evaluate(() => window.dan.heard);
  for (let start = Date.now(); ; ) {
    const h = await danHeard();
    // The handler's events are JSON; what clients published straight (with `from`) is text.
    if (h.pushes.some((p) => !p.from && p.topic === "chat.lobby" && JSON.parse(p.msg).text === "hi dan")) break;
    if (Date.now() - start > 20_000) throw new Error(`dan did not hear ann: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  await bob.close();
  await waitFor(ann, "bob leaving as his session closes", (e) => e.event === "left" && e.from === bobName);
  for (let start = Date.now(); ; ) {
    const h = await danHeard();
    if (h.presence.some((e) => e.type === "leave" && e.clientId === "bob")) break;
    if (Date.now() - start > 20_000) throw new Error(`dan did not hear bob leave: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const result = {
    ann: await ann.heard(),
    bob: await bob.heard(),
    carol: await carol.heard(),
    bobSawMembers: bobSees.members,
    bobAskedWho: who.data,
    dan: danDid,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  await carol.close();
} catch (e) {
  console.log(`FAILED ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
