// Built from clients/js (page/main.ts) by `npm run page`: do not edit.

// src/backoff.ts
var DEFAULT_BACKOFF = { initialMs: 250, maxMs: 3e4 };
function retryDelay(attempt, b = DEFAULT_BACKOFF, random = Math.random) {
  const bound = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}
function drainDelay(windowMs, random = Math.random) {
  return Math.floor(random() * windowMs);
}

// src/outbox.ts
var Outbox = class {
  constructor(capacity) {
    this.capacity = capacity;
    this.entries = /* @__PURE__ */ new Map();
    this.reserved = 0;
    this.waiting = [];
    if (!(capacity >= 1)) throw new RangeError("the outbox holds at least one event");
  }
  /** Events held (sent or about to be), acknowledged ones excluded. */
  get size() {
    return this.entries.size + this.reserved;
  }
  /** Waits for room for one more event, then holds it until `add` or `cancel`. */
  async reserve() {
    while (this.size >= this.capacity) {
      await new Promise((wake) => this.waiting.push(wake));
    }
    this.reserved += 1;
  }
  /** Gives back a reservation that will not be used. */
  cancel() {
    this.reserved -= 1;
    this.wakeOne();
  }
  /** Stores a reserved event. */
  add(entry) {
    this.reserved -= 1;
    this.entries.set(entry.id, entry);
  }
  /** Removes and returns event `id` (its acknowledgement or refusal came). */
  take(id) {
    const e = this.entries.get(id);
    if (e) {
      this.entries.delete(id);
      this.wakeOne();
    }
    return e;
  }
  /** Every held event, oldest first: what a new connection sends again. */
  pending() {
    return [...this.entries.values()];
  }
  /** Fails every held event and every waiting producer (the client was closed). */
  failAll(error) {
    for (const e of this.entries.values()) e.reject(error);
    this.entries.clear();
    for (const wake of this.waiting.splice(0)) wake();
  }
  wakeOne() {
    this.waiting.shift()?.();
  }
};

// src/client.ts
var SendError = class extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
    this.name = "SendError";
  }
};
var SubscribeError = class extends Error {
  constructor(message, kind, topic) {
    super(message);
    this.kind = kind;
    this.topic = topic;
    this.name = "SubscribeError";
  }
};
var RequestError = class extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
    this.name = "RequestError";
  }
};
var FINAL_CODES = /* @__PURE__ */ new Set([
  1e3,
  // the application closed it
  1008
  // policy violation: the server refused this client
]);
var GOING_AWAY = 1012;
var OPEN = 1;
var Client = class {
  constructor(opts) {
    this.opts = opts;
    this.socket = null;
    this.pushListeners = /* @__PURE__ */ new Set();
    /** Topics the application subscribed to: sent again on every new connection. */
    this.wanted = /* @__PURE__ */ new Set();
    /**
     * Where this client is in each subscribed topic with history (the last push's offset and
     * epoch), and whether a resubscribe with `since` is on its way (pushes past a gap wait for its
     * replay).
     */
    this.positions = /* @__PURE__ */ new Map();
    this.unrecoveredListeners = /* @__PURE__ */ new Set();
    /** Where this client is in the stream of pushes to it (servers with history for client ids). */
    this.direct = null;
    /** Subscribe/unsubscribe calls waiting for the server's answer, by topic. */
    this.waiting = /* @__PURE__ */ new Map();
    this.stateListeners = /* @__PURE__ */ new Set();
    this.presenceListeners = /* @__PURE__ */ new Set();
    /** Publishes (by id) and rpcs (by `rpc:` and number) waiting for their answer. */
    this.requests = /* @__PURE__ */ new Map();
    this.attempt = 0;
    this.counter = 0;
    this.closedByUser = false;
    /** Closed for good (by the application or a final close code): no reconnect. */
    this.finished = null;
    this.timer = null;
    this.lastToken = null;
    this.refusedToken = null;
    this.current = { state: "connecting", attempt: 0 };
    /** Connections opened so far; more than one means the client reconnected. */
    this.opens = 0;
    /** Events sent again on a new connection (their first copy may be stored too). */
    this.resent = 0;
    const factory = opts.WebSocket ?? globalThis.WebSocket;
    if (!factory) {
      throw new Error("no WebSocket implementation: pass the `ws` package's WebSocket in Node");
    }
    this.factory = factory;
    this.outbox = new Outbox(opts.bufferSize ?? 1e3);
    this.instance = opts.instanceId ?? randomId();
    queueMicrotask(() => void this.dial());
  }
  /** The connection's state now. */
  get state() {
    return this.current;
  }
  /** Events waiting for their acknowledgement. */
  get unacknowledged() {
    return this.outbox.size;
  }
  /**
   * Sends an event; resolves once the server has stored it durably (its `ack`), rejects on a
   * `nack` or a refusal. Waits first while the buffer is full. The event keeps its id across
   * reconnects: after one, every unacknowledged event is sent again, so a consumer may see one
   * twice and drops the copy by id.
   */
  async send(event) {
    if (this.finished) throw new SendError(this.finished, "closed");
    await this.outbox.reserve();
    if (this.finished) {
      this.outbox.cancel();
      throw new SendError(this.finished, "closed");
    }
    const id = event.id ?? `${this.instance}-${++this.counter}`;
    const frame = { id, msg: event.msg, timestamp: event.timestamp ?? Date.now() };
    return new Promise((resolve, reject) => {
      const entry = { id, frame: JSON.stringify(frame), resolve, reject };
      this.outbox.add(entry);
      if (this.socket && this.socket.readyState === OPEN) this.socket.send(entry.frame);
    });
  }
  /**
   * Joins `topic` (if the token grants it): resolves once the server confirms, rejects with a
   * `SubscribeError` if it refuses. The subscription outlives reconnects: the client subscribes
   * again on every new connection, so pushes on the topic resume by themselves. On a topic
   * with history (`--history-topics`) it resubscribes from the last push it got: what was
   * published meanwhile comes first, in order, once; when it cannot (`onUnrecovered`) the
   * application refetches its state.
   */
  subscribe(topic) {
    if (this.finished) return Promise.reject(new SubscribeError(this.finished, "closed", topic));
    this.wanted.add(topic);
    const answered = this.wait(topic);
    this.control(this.subscribeFrame(topic));
    return answered;
  }
  /** Calls `fn` when what a topic's stream held while this client was away could not all be recovered. */
  onUnrecovered(fn) {
    this.unrecoveredListeners.add(fn);
    return () => this.unrecoveredListeners.delete(fn);
  }
  /** `subscribe`, from where this client is in the topic's stream if it has a place there. */
  subscribeFrame(topic) {
    const p = this.positions.get(topic);
    if (!p) return { type: "subscribe", topic };
    p.recovering = true;
    return { type: "subscribe", topic, since: { ...p.at } };
  }
  /**
   * Whether a push at `offset`/`epoch` on `topic` is the next one: a copy is dropped; one past a
   * gap is dropped too and the topic subscribed again from where this client is (the server
   * replays what it missed, in order); another epoch starts over, and listeners hear it.
   */
  inOrder(topic, offset, epoch) {
    const p = topic === void 0 ? this.direct : this.positions.get(topic);
    if (!p) {
      if (topic === void 0) this.direct = { at: { offset, epoch }, recovering: false };
      else if (this.wanted.has(topic)) this.positions.set(topic, { at: { offset, epoch }, recovering: false });
      return true;
    }
    if (p.at.epoch === epoch && offset <= p.at.offset) return false;
    if (p.at.epoch === epoch && offset > p.at.offset + 1) {
      if (!p.recovering && this.socket?.readyState === OPEN) {
        p.recovering = true;
        const frame = topic === void 0 ? { type: "resume", since: { ...p.at } } : this.subscribeFrame(topic);
        this.socket.send(JSON.stringify(frame));
      }
      return false;
    }
    if (p.at.epoch !== epoch && !p.recovering) {
      for (const fn of this.unrecoveredListeners) fn({ topic: topic ?? "", reason: "epoch_changed" });
    }
    p.at = { offset, epoch };
    return true;
  }
  /** Leaves `topic`; resolves once the server confirms (at once while disconnected). */
  unsubscribe(topic) {
    this.wanted.delete(topic);
    this.positions.delete(topic);
    if (!this.socket || this.socket.readyState !== OPEN) return Promise.resolve();
    const answered = this.wait(topic);
    this.control({ type: "unsubscribe", topic });
    return answered;
  }
  /** The topics subscribed to (as asked; the server confirms each). */
  get topics() {
    return [...this.wanted];
  }
  /** Calls `fn` with every pushed message and its topic; returns the function that stops it. */
  onPush(fn) {
    this.pushListeners.add(fn);
    return () => this.pushListeners.delete(fn);
  }
  /**
   * Publishes `msg` to `topic` (if the token's `publish` claim grants it); resolves with how
   * many sessions it reached. Sent at most once: a connection lost before the answer rejects it
   * with `lost`; while disconnected it waits for the next connection.
   */
  publish(topic, msg) {
    const id = `${this.instance}-p${++this.counter}`;
    return this.request(id, { type: "publish", topic, msg, id });
  }
  /**
   * Asks the route's handler `method` with `data`; resolves with its answer, rejects with its
   * error code (`no_method`, …) or `timeout` after `timeoutMs` (10 s by default).
   */
  rpc(method, data, opts = {}) {
    const id = ++this.counter;
    const answer = this.request(`rpc:${id}`, {
      type: "rpc",
      id,
      method,
      // Any JSON value (the schema says so; the generated type reads it as an object).
      data: data ?? null
    });
    const ms = opts.timeoutMs ?? 1e4;
    let timer2;
    const late = new Promise((_, reject) => {
      timer2 = setTimeout(() => {
        this.requests.delete(`rpc:${id}`);
        reject(new RequestError(`no answer to ${method} within ${ms} ms`, "timeout"));
      }, ms);
    });
    return Promise.race([answer, late]).finally(() => clearTimeout(timer2));
  }
  /** Calls `fn` with every join and leave on this client's topics; returns the function that stops it. */
  onPresence(fn) {
    this.presenceListeners.add(fn);
    return () => this.presenceListeners.delete(fn);
  }
  request(key, frame) {
    if (this.finished) return Promise.reject(new RequestError(this.finished, "closed"));
    return new Promise((resolve, reject) => {
      const r = { frame: JSON.stringify(frame), resolve, reject, sent: false };
      this.requests.set(key, r);
      if (this.socket && this.socket.readyState === OPEN) {
        this.socket.send(r.frame);
        r.sent = true;
      }
    });
  }
  settle(key, value, error) {
    const r = this.requests.get(key);
    if (!r) return;
    this.requests.delete(key);
    if (error) r.reject(error);
    else r.resolve(value);
  }
  /** Calls `fn` on every state change; returns the function that stops it. */
  onState(fn) {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }
  /** Closes for good: no reconnect; unacknowledged events fail with `closed`. */
  close() {
    this.closedByUser = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close(1e3, "client closed");
    this.finish(1e3, "client closed", "the client was closed");
  }
  wait(topic) {
    return new Promise((resolve, reject) => {
      const list = this.waiting.get(topic) ?? [];
      list.push({ resolve, reject });
      this.waiting.set(topic, list);
    });
  }
  control(frame) {
    if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(frame));
  }
  answer(topic, error) {
    const list = this.waiting.get(topic);
    if (!list) return;
    this.waiting.delete(topic);
    for (const w of list) {
      if (error) w.reject(error);
      else w.resolve();
    }
  }
  /** Ends for good: every held and waiting event fails. */
  finish(code, reason, why) {
    this.finished = why;
    this.outbox.failAll(new SendError(why, "closed"));
    for (const topic of [...this.waiting.keys()]) {
      this.answer(topic, new SubscribeError(why, "closed", topic));
    }
    for (const key of [...this.requests.keys()]) this.settle(key, void 0, new RequestError(why, "closed"));
    this.setState({ state: "closed", code, reason, reconnectInMs: null });
  }
  setState(s) {
    this.current = s;
    for (const fn of this.stateListeners) fn(s);
  }
  async token() {
    const t = this.opts.token;
    if (t === void 0) return null;
    return typeof t === "string" ? t : await t();
  }
  async dial() {
    this.timer = null;
    if (this.closedByUser) return;
    this.setState({ state: "connecting", attempt: this.attempt });
    let token;
    try {
      token = await this.token();
    } catch (e) {
      this.retry(4e3, `token: ${String(e)}`, false);
      return;
    }
    if (this.closedByUser) return;
    if (token !== null && token === this.refusedToken) {
      this.finish(4001, "token refused", "the token was refused");
      return;
    }
    this.lastToken = token;
    const url = new URL(this.opts.url);
    url.searchParams.set("ack", "1");
    const viaQuery = this.opts.tokenVia === "query";
    if (token !== null && viaQuery) url.searchParams.set("access_token", token);
    const protocols = token !== null && !viaQuery ? ["bearer", token] : void 0;
    let socket;
    try {
      socket = new this.factory(url.toString(), protocols);
    } catch (e) {
      this.retry(1006, String(e), false);
      return;
    }
    this.socket = socket;
    let opened = false;
    let status;
    socket.on?.("unexpected-response", (_req, res) => {
      status = res.statusCode;
      socket.close();
    });
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.refusedToken = null;
      this.opens += 1;
      this.setState({ state: "open" });
      if (this.direct) {
        this.direct.recovering = true;
        socket.send(JSON.stringify({ type: "resume", since: { ...this.direct.at } }));
      }
      for (const topic of this.wanted) socket.send(JSON.stringify(this.subscribeFrame(topic)));
      const again = this.outbox.pending();
      if (this.opens > 1) this.resent += again.length;
      for (const e of again) socket.send(e.frame);
      for (const r of this.requests.values()) {
        socket.send(r.frame);
        r.sent = true;
      }
    };
    socket.onmessage = (ev) => this.onFrame(ev.data);
    socket.onerror = () => {
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      for (const [key, r] of [...this.requests]) {
        if (r.sent) this.settle(key, void 0, new RequestError("connection lost before the answer", "lost"));
      }
      if (this.closedByUser) return;
      if (!opened && status === 401) {
        this.refusedToken = this.lastToken;
        this.retry(4001, "token refused", false);
        return;
      }
      this.retry(ev.code, ev.reason, ev.code === GOING_AWAY);
    };
  }
  /** The server says the token is about to expire: ask the token function for a new one. */
  async refresh() {
    let token;
    try {
      token = await this.token();
    } catch {
      return;
    }
    if (token === null || !this.socket || this.socket.readyState !== OPEN) return;
    this.lastToken = token;
    this.socket.send(JSON.stringify({ type: "refresh", token }));
  }
  retry(code, reason, draining) {
    if (FINAL_CODES.has(code)) {
      this.finish(code, reason, `closed by the server: ${code} ${reason}`);
      return;
    }
    const wait = draining ? drainDelay(this.opts.drainWindowMs ?? 1e3) : retryDelay(this.attempt, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.attempt = draining ? 0 : this.attempt + 1;
    this.setState({ state: "closed", code, reason, reconnectInMs: wait });
    this.timer = setTimeout(() => void this.dial(), wait);
  }
  onFrame(data) {
    if (typeof data !== "string") data = String(data);
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "ack": {
        if (frame.id) this.outbox.take(frame.id)?.resolve({ id: frame.id, seq: frame.seq });
        break;
      }
      case "nack": {
        if (frame.id) this.outbox.take(frame.id)?.reject(new SendError(frame.error, "nack"));
        break;
      }
      case "error": {
        if (frame.id && this.requests.has(frame.id)) {
          this.settle(frame.id, void 0, new RequestError(frame.detail, frame.error));
          break;
        }
        if (frame.id) this.outbox.take(frame.id)?.reject(new SendError(frame.detail, frame.error));
        if (frame.topic) {
          this.wanted.delete(frame.topic);
          this.answer(frame.topic, new SubscribeError(frame.detail, frame.error, frame.topic));
        }
        break;
      }
      case "push": {
        if (frame.offset != null && frame.epoch != null) {
          if (!this.inOrder(frame.topic ?? void 0, frame.offset, frame.epoch)) break;
        }
        for (const fn of this.pushListeners) fn(frame.msg, frame.topic ?? void 0, frame.from ?? void 0);
        break;
      }
      case "published": {
        if (frame.id) this.settle(frame.id, frame.delivered);
        break;
      }
      case "reply": {
        const key = `rpc:${frame.id}`;
        if (frame.error) this.settle(key, void 0, new RequestError(frame.error.message, frame.error.code));
        else this.settle(key, frame.data ?? null);
        break;
      }
      case "join":
      case "leave": {
        const ev = { type: frame.type, topic: frame.topic, clientId: frame.clientId };
        if (frame.info) ev.info = frame.info;
        for (const fn of this.presenceListeners) fn(ev);
        break;
      }
      case "refresh_required": {
        void this.refresh();
        break;
      }
      case "subscribed": {
        if (frame.offset != null && frame.epoch != null && this.wanted.has(frame.topic)) {
          const p = this.positions.get(frame.topic);
          const behind = !p || p.at.epoch !== frame.epoch || p.at.offset < frame.offset || frame.recovered === false;
          if (behind) this.positions.set(frame.topic, { at: { offset: frame.offset, epoch: frame.epoch }, recovering: false });
          else p.recovering = false;
        }
        if (frame.recovered === false) {
          for (const fn of this.unrecoveredListeners) fn({ topic: frame.topic, reason: frame.reason ?? "" });
        }
        this.answer(frame.topic);
        break;
      }
      case "unsubscribed": {
        this.answer(frame.topic);
        break;
      }
      case "position": {
        if (!this.direct?.recovering) this.direct = { at: { offset: frame.offset, epoch: frame.epoch }, recovering: false };
        break;
      }
      case "resumed": {
        const d = this.direct;
        const behind = !d || d.at.epoch !== frame.epoch || d.at.offset < frame.offset || !frame.recovered;
        if (behind || !d) this.direct = { at: { offset: frame.offset, epoch: frame.epoch }, recovering: false };
        else d.recovering = false;
        if (!frame.recovered) {
          for (const fn of this.unrecoveredListeners) fn({ topic: "", reason: frame.reason ?? "" });
        }
        break;
      }
    }
  }
};
function connect(opts) {
  return new Client(opts);
}
function randomId() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

// page/main.ts
var q = new URLSearchParams(location.search);
var $ = (id) => document.getElementById(id);
var tokenFetches = 0;
function tokenSource() {
  const tokenUrl = q.get("token_url");
  if (tokenUrl) {
    return async () => {
      tokenFetches += 1;
      $("tokens").textContent = String(tokenFetches);
      const resp = await fetch(tokenUrl, { cache: "no-store" });
      if (!resp.ok) throw new Error(`token_url answered ${resp.status}`);
      const token2 = (await resp.text()).trim();
      showSubject(token2);
      return token2;
    };
  }
  const token = q.get("access_token");
  if (token) showSubject(token);
  return token ?? void 0;
}
function showSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const sub = JSON.parse(atob(payload)).sub;
    $("subject").textContent = typeof sub === "string" ? sub : "(none)";
  } catch {
    $("subject").textContent = "(not a JWT)";
  }
}
var wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
var client = connect({ url: wsUrl, token: tokenSource() });
var stats = { sent: 0, acked: 0, failed: 0, pushes: 0, latencies: [] };
var acked = [];
window.ewsPage = { client, stats, acked, connect };
function log(line) {
  const el = $("log");
  const row = document.createElement("div");
  row.textContent = `${(/* @__PURE__ */ new Date()).toISOString().slice(11, 23)} ${line}`;
  el.prepend(row);
  while (el.childElementCount > 200) el.lastElementChild?.remove();
}
function render() {
  $("sent").textContent = String(stats.sent);
  $("acked").textContent = String(stats.acked);
  $("pending").textContent = String(client.unacknowledged);
  $("failed").textContent = String(stats.failed);
  $("reconnects").textContent = String(Math.max(0, client.opens - 1));
  $("resent").textContent = String(client.resent);
  $("pushes").textContent = String(stats.pushes);
  const l = [...stats.latencies].sort((a, b) => a - b);
  const at = (p) => l.length ? `${l[Math.min(l.length - 1, Math.floor(p * l.length))]} ms` : "\u2013";
  $("latency").textContent = `p50 ${at(0.5)} \xB7 p99 ${at(0.99)}`;
}
function meaning(code) {
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
client.onState((s) => {
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
  log(`\u2190 push: ${msg}`);
  render();
});
var count = Number(q.get("count") ?? "0");
var rate = Math.max(0.1, Number(q.get("rate") ?? "1"));
var n = 0;
var timer = setInterval(() => {
  if (count > 0 && n >= count) {
    clearInterval(timer);
    return;
  }
  n += 1;
  const started = performance.now();
  const msg = `hello ${n}`;
  stats.sent += 1;
  client.send({ msg }).then((ack) => {
    const ms = Math.round(performance.now() - started);
    stats.acked += 1;
    stats.latencies.push(ms);
    if (stats.latencies.length > 1e3) stats.latencies.shift();
    acked.push(ack.id);
    log(`\u2713 ${msg} (id ${ack.id}) acknowledged as #${ack.seq} in ${ms} ms`);
  }).catch((e) => {
    stats.failed += 1;
    log(`\u2717 ${msg}: ${e.message}`);
  }).finally(render);
  render();
}, 1e3 / rate);
