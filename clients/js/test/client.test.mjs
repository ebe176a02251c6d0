import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, RequestError, SendError, SubscribeError } from "../dist/index.js";
import { fakeSockets, until } from "./fake-socket.mjs";

const fast = { initialMs: 1, maxMs: 2 };

test("connects with acks on and the token as the bearer subprotocol", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h:1/ws", token: "jwt-1", WebSocket: FakeSocket });
  await until(() => sockets.length === 1);
  assert.equal(sockets[0].url.searchParams.get("ack"), "1");
  assert.deepEqual(sockets[0].protocols, ["bearer", "jwt-1"]);
  c.close();

  const q = fakeSockets();
  const d = connect({ url: "ws://h:1/ws", token: "jwt-2", tokenVia: "query", WebSocket: q.FakeSocket });
  await until(() => q.sockets.length === 1);
  assert.equal(q.sockets[0].url.searchParams.get("access_token"), "jwt-2");
  assert.equal(q.sockets[0].protocols, undefined);
  d.close();
});

test("send resolves on the ack naming its id, and rejects on a nack", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket });
  await until(() => sockets.length === 1);
  sockets[0].open();
  const a = c.send({ msg: "one" });
  const b = c.send({ msg: "two" });
  await until(() => sockets[0].sent.length === 2);
  const [e1, e2] = sockets[0].sent;
  assert.equal(e1.msg, "one");
  assert.ok(e1.id && e2.id && e1.id !== e2.id, "every event has its own id");
  assert.equal(e1.clientId, undefined, "the token says who the client is");
  sockets[0].frame({ type: "ack", seq: 1, id: e1.id });
  sockets[0].frame({ type: "nack", seq: 2, id: e2.id, error: "sink failed" });
  assert.deepEqual(await a, { id: e1.id, seq: 1 });
  await assert.rejects(b, (e) => e instanceof SendError && e.kind === "nack");
  assert.equal(c.unacknowledged, 0);
  c.close();
});

test("after a lost connection unacknowledged events are resent, in order, with their ids", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, backoff: fast });
  const states = [];
  c.onState((s) => states.push(s.state));
  await until(() => sockets.length === 1);
  sockets[0].open();
  const sends = ["a", "b", "c"].map((msg) => c.send({ msg }));
  await until(() => sockets[0].sent.length === 3);
  const ids = sockets[0].sent.map((e) => e.id);
  sockets[0].frame({ type: "ack", seq: 1, id: ids[0] });
  sockets[0].drop(1006);
  await until(() => sockets.length === 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent.map((e) => e.id), ids.slice(1), "b and c again, same ids");
  assert.equal(c.resent, 2);
  sockets[1].frame({ type: "ack", seq: 1, id: ids[1] });
  sockets[1].frame({ type: "ack", seq: 2, id: ids[2] });
  const acks = await Promise.all(sends);
  assert.deepEqual(acks.map((a) => a.id), ids);
  assert.deepEqual(states, ["connecting", "open", "closed", "connecting", "open"]);
  assert.equal(c.opens, 2);
  c.close();
});

test("a 1012 drain reconnects promptly; a 1008 refusal does not reconnect", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const slow = { initialMs: 60_000, maxMs: 60_000 };
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, backoff: slow, drainWindowMs: 20 });
  await until(() => sockets.length === 1);
  sockets[0].open();
  sockets[0].drop(1012, "draining");
  assert.equal(c.state.state, "closed");
  assert.ok(c.state.reconnectInMs < 20, "inside the drain window, not the back-off");
  await until(() => sockets.length === 2, 500);
  sockets[1].open();
  const pending = c.send({ msg: "x" });
  sockets[1].drop(1008, "policy");
  await assert.rejects(pending, (e) => e.kind === "closed");
  assert.deepEqual(c.state, { state: "closed", code: 1008, reason: "policy", reconnectInMs: null });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(sockets.length, 2, "no reconnect after 1008");
});

test("the token function is asked before every connect; a refused token is not retried as is", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const tokens = ["expired", "fresh", "fresh"];
  let calls = 0;
  const c = connect({
    url: "ws://h/ws",
    WebSocket: FakeSocket,
    backoff: fast,
    token: async () => tokens[Math.min(calls++, tokens.length - 1)],
  });
  await until(() => sockets.length === 1);
  assert.deepEqual(sockets[0].protocols, ["bearer", "expired"]);
  sockets[0].refuse(401);
  await until(() => sockets.length === 2);
  assert.deepEqual(sockets[1].protocols, ["bearer", "fresh"], "a new token after the refusal");
  sockets[1].open();
  sockets[1].drop(1006);
  await until(() => sockets.length === 3);
  assert.equal(calls, 3, "asked before each of the three connects");
  // The server refuses "fresh" now, and the function keeps returning it: stop.
  sockets[2].refuse(401);
  await until(() => c.state.state === "closed" && c.state.reconnectInMs === null);
  assert.equal(c.state.reason, "token refused");
  assert.equal(sockets.length, 3);
});

test("a full buffer holds new events back until acknowledgements make room", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, bufferSize: 2 });
  await until(() => sockets.length === 1);
  sockets[0].open();
  const sends = ["a", "b", "c"].map((msg) => c.send({ msg }));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(sockets[0].sent.length, 2, "the third waits");
  assert.equal(c.unacknowledged, 2, "the third is not taken yet");
  sockets[0].frame({ type: "ack", seq: 1, id: sockets[0].sent[0].id });
  await until(() => sockets[0].sent.length === 3);
  sockets[0].frame({ type: "ack", seq: 2, id: sockets[0].sent[1].id });
  sockets[0].frame({ type: "ack", seq: 3, id: sockets[0].sent[2].id });
  assert.equal((await Promise.all(sends)).length, 3);
  c.close();
});

test("pushes reach every listener until it unsubscribes", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket });
  await until(() => sockets.length === 1);
  sockets[0].open();
  const got = [];
  const stop = c.onPush((m) => got.push(m));
  sockets[0].frame({ type: "push", msg: "hello" });
  stop();
  sockets[0].frame({ type: "push", msg: "unheard" });
  assert.deepEqual(got, ["hello"]);
  c.close();
});

test("subscriptions are confirmed, refused by topic, and sent again after a reconnect", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, backoff: fast });
  const pushes = [];
  c.onPush((msg, topic) => pushes.push([msg, topic]));
  await until(() => sockets.length === 1);
  // Asked before the connection opens: sent on open.
  const news = c.subscribe("news.sport");
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, [{ type: "subscribe", topic: "news.sport" }]);
  sockets[0].frame({ type: "subscribed", topic: "news.sport" });
  await news;
  const secret = c.subscribe("secret");
  sockets[0].frame({ type: "error", error: "topic_forbidden", detail: "no", topic: "secret" });
  await assert.rejects(secret, (e) => e instanceof SubscribeError && e.kind === "topic_forbidden" && e.topic === "secret");
  assert.deepEqual(c.topics, ["news.sport"], "a refused topic is not asked again");
  sockets[0].frame({ type: "push", msg: "goal", topic: "news.sport" });
  sockets[0].frame({ type: "push", msg: "just you" });
  assert.deepEqual(pushes, [["goal", "news.sport"], ["just you", undefined]]);

  // A new connection (a drain, a lost network) subscribes again before anything else.
  const event = c.send({ msg: "e" });
  sockets[0].drop(1012, "server draining");
  await until(() => sockets.length === 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent[0], { type: "subscribe", topic: "news.sport" });
  assert.equal(sockets[1].sent[1].msg, "e");
  sockets[1].frame({ type: "ack", seq: 1, id: sockets[1].sent[1].id });
  await event;

  const left = c.unsubscribe("news.sport");
  assert.deepEqual(sockets[1].sent[2], { type: "unsubscribe", topic: "news.sport" });
  sockets[1].frame({ type: "unsubscribed", topic: "news.sport" });
  await left;
  assert.deepEqual(c.topics, []);
  const late = c.subscribe("later");
  c.close();
  await assert.rejects(late, (e) => e instanceof SubscribeError && e.kind === "closed");
});

test("on a topic with history it resubscribes from its last push, drops copies and fills gaps", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, backoff: fast });
  const got = [];
  const lost = [];
  c.onPush((msg) => got.push(msg));
  c.onUnrecovered((u) => lost.push(u));
  await until(() => sockets.length === 1);
  sockets[0].open();
  const joined = c.subscribe("room.1");
  sockets[0].frame({ type: "subscribed", topic: "room.1", offset: 4, epoch: "e1" });
  await joined;
  const push = (s, msg, offset, epoch = "e1") => s.frame({ type: "push", topic: "room.1", msg, offset, epoch });
  push(sockets[0], "five", 5);
  push(sockets[0], "five again", 5);
  // 6 never came: 7 waits, and the topic is asked again from 5.
  push(sockets[0], "seven", 7);
  assert.deepEqual(sockets[0].sent.at(-1), { type: "subscribe", topic: "room.1", since: { offset: 5, epoch: "e1" } });
  push(sockets[0], "six", 6);
  push(sockets[0], "seven", 7);
  sockets[0].frame({ type: "subscribed", topic: "room.1", offset: 7, epoch: "e1", recovered: true });
  assert.deepEqual(got, ["five", "six", "seven"]);

  // After a drain the new connection resubscribes from 7.
  sockets[0].drop(1012, "server draining");
  await until(() => sockets.length === 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent[0], { type: "subscribe", topic: "room.1", since: { offset: 7, epoch: "e1" } });
  sockets[1].frame({ type: "subscribed", topic: "room.1", offset: 9, epoch: "e2", recovered: false, reason: "epoch_changed" });
  assert.deepEqual(lost, [{ topic: "room.1", reason: "epoch_changed" }]);
  push(sockets[1], "ten", 10, "e2");
  assert.deepEqual(got, ["five", "six", "seven", "ten"]);
  c.close();
});

test("with history for client ids it resumes the pushes to it from where it was", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, backoff: fast });
  const got = [];
  c.onPush((msg, topic) => got.push([msg, topic]));
  await until(() => sockets.length === 1);
  sockets[0].open();
  sockets[0].frame({ type: "position", offset: 2, epoch: "e1" });
  sockets[0].frame({ type: "push", msg: "three", offset: 3, epoch: "e1" });
  sockets[0].drop(1012, "server draining");
  await until(() => sockets.length === 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent[0], { type: "resume", since: { offset: 3, epoch: "e1" } });
  // The next session's own position comes first; the resume knows better.
  sockets[1].frame({ type: "position", offset: 5, epoch: "e1" });
  sockets[1].frame({ type: "push", msg: "four", offset: 4, epoch: "e1" });
  sockets[1].frame({ type: "push", msg: "five", offset: 5, epoch: "e1" });
  sockets[1].frame({ type: "resumed", offset: 5, epoch: "e1", recovered: true });
  sockets[1].frame({ type: "push", msg: "five", offset: 5, epoch: "e1" });
  assert.deepEqual(got.map(([m]) => m), ["three", "four", "five"]);
  c.close();
});

test("publish resolves with what it reached, or rejects with the server's refusal", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, backoff: fast });
  await until(() => sockets.length === 1);
  // Asked before the connection opens: sent once it does.
  const early = c.publish("room.1", "hi");
  sockets[0].open();
  await until(() => sockets[0].sent.length === 1);
  const p = sockets[0].sent[0];
  assert.deepEqual([p.type, p.topic, p.msg], ["publish", "room.1", "hi"]);
  sockets[0].frame({ type: "published", id: p.id, delivered: 3 });
  assert.equal(await early, 3);
  const refused = c.publish("lobby", "hi");
  await until(() => sockets[0].sent.length === 2);
  const id = sockets[0].sent[1].id;
  sockets[0].frame({ type: "error", error: "publish_forbidden", detail: "no", id, topic: "lobby" });
  await assert.rejects(refused, (e) => e instanceof RequestError && e.kind === "publish_forbidden");
  assert.deepEqual(c.topics, [], "a refused publish is no subscription");
  // Sent, then the connection is lost before the answer: it may or may not have gone out.
  const lost = c.publish("room.1", "x");
  await until(() => sockets[0].sent.length === 3);
  sockets[0].drop(1006);
  await assert.rejects(lost, (e) => e instanceof RequestError && e.kind === "lost");
  c.close();
});

test("rpc resolves with the handler's data, rejects with its code or a timeout", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket });
  await until(() => sockets.length === 1);
  sockets[0].open();
  const who = c.rpc("who", { room: 1 });
  await until(() => sockets[0].sent.length === 1);
  const r = sockets[0].sent[0];
  assert.deepEqual([r.type, r.method, r.data], ["rpc", "who", { room: 1 }]);
  sockets[0].frame({ type: "reply", id: r.id, data: ["alice", "bob"] });
  assert.deepEqual(await who, ["alice", "bob"]);
  const nope = c.rpc("nope");
  await until(() => sockets[0].sent.length === 2);
  sockets[0].frame({ type: "reply", id: sockets[0].sent[1].id, error: { code: "no_method", message: "no" } });
  await assert.rejects(nope, (e) => e instanceof RequestError && e.kind === "no_method");
  await assert.rejects(c.rpc("slow", null, { timeoutMs: 5 }), (e) => e.kind === "timeout");
  c.close();
});

test("joins, leaves and who published reach their listeners; refresh_required asks for a token", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  let n = 0;
  const c = connect({ url: "ws://h/ws", WebSocket: FakeSocket, token: () => `jwt-${++n}` });
  await until(() => sockets.length === 1);
  sockets[0].open();
  const seen = [];
  c.onPresence((e) => seen.push(e));
  const pushes = [];
  c.onPush((msg, topic, from) => pushes.push([msg, topic, from]));
  sockets[0].frame({ type: "join", topic: "room.1", clientId: "bob" });
  sockets[0].frame({ type: "leave", topic: "room.1", clientId: "bob" });
  sockets[0].frame({ type: "push", msg: "hi", topic: "room.1", from: "bob" });
  assert.deepEqual(seen, [
    { type: "join", topic: "room.1", clientId: "bob" },
    { type: "leave", topic: "room.1", clientId: "bob" },
  ]);
  assert.deepEqual(pushes, [["hi", "room.1", "bob"]]);
  sockets[0].frame({ type: "refresh_required", exp: 1 });
  await until(() => sockets[0].sent.length === 1);
  assert.deepEqual(sockets[0].sent[0], { type: "refresh", token: "jwt-2" });
  c.close();
});
