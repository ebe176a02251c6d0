import { DEFAULT_BACKOFF, drainDelay, retryDelay, type Backoff } from "./backoff.js";
import { Outbox } from "./outbox.js";
import type { ClientControl, ClientInfo, ErrorKind, Event, ServerFrame, StreamPosition } from "./protocol.js";

/** Why a `send` failed: the server's `nack`, one of its error kinds, or `closed`. */
export type SendErrorKind = "nack" | ErrorKind | "closed";
/** Why a `subscribe` failed: one of the server's error kinds, or `closed`. */
export type SubscribeErrorKind = ErrorKind | "closed";
/**
 * Why a `publish` or `rpc` failed: one of the server's error kinds, `lost`, `timeout`, `closed`,
 * or (an rpc) the handler's own error code: `no_method` or any string the handler chose.
 */
export type RequestErrorKind = ErrorKind | "lost" | "timeout" | "closed" | "no_method" | (string & {});

/** A token, or a function that fetches one: called before every (re)connect. */
export type TokenSource = string | (() => string | Promise<string>);

/**
 * An event handler whose parameter is compared both ways (as methods' are), so a socket whose
 * events carry more than the client reads (the `ws` package's `CloseEvent`, a browser's) still
 * fits `SocketLike` under `strict`.
 */
type Handler<E> = { bivariance(ev: E): void }["bivariance"];

/** The subset of the WebSocket API the client uses: browsers' and the `ws` package's. */
export interface SocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** Node's `ws` only: the HTTP answer of a refused handshake. */
  on?(event: "unexpected-response", fn: (req: unknown, res: { statusCode?: number }) => void): unknown;
}

export type SocketFactory = new (url: string, protocols?: string | string[]) => SocketLike;

export interface ConnectOptions {
  /** `ws(s)://host/path` of an ingest route; `ack=1` is added. */
  url: string;
  /** Where the JWT comes from. Omitted: no token (a worker run with `--no-auth`). */
  token?: TokenSource;
  /**
   * How the token travels: `protocol` (default; `Sec-WebSocket-Protocol: bearer, <jwt>`, the
   * browsers' way, kept out of URLs and logs) or `query` (`access_token=`).
   */
  tokenVia?: "protocol" | "query";
  /** The WebSocket implementation: `globalThis.WebSocket` by default; in Node, pass `ws`'s. */
  WebSocket?: SocketFactory;
  /** Events sent and not yet acknowledged, at most; `send` waits past it. Default 1000. */
  bufferSize?: number;
  /** Retry timing after a lost or failed connection. */
  backoff?: Backoff;
  /** After a `1012` (the server is draining): reconnect within this many ms. Default 1000. */
  drainWindowMs?: number;
  /** Stable across the client's life; a fresh random one by default. Prefixes event ids. */
  instanceId?: string;
}

export type ConnectionState =
  | { state: "connecting"; attempt: number }
  | { state: "open" }
  | { state: "closed"; code: number; reason: string; reconnectInMs: number | null };

/** What an acknowledged `send` resolves to. */
export interface Ack {
  /** The event's id, as stored with it (consumers deduplicate by it). */
  id: string;
  /** The event's number in the session that acknowledged it. */
  seq: number;
}

/** Why a `send` failed for good. */
export class SendError extends Error {
  constructor(
    message: string,
    /** `nack`, `invalid_event`, `sink_unavailable` or `closed`. */
    readonly kind: SendErrorKind,
  ) {
    super(message);
    this.name = "SendError";
  }
}

/** Why a `subscribe` failed: `topic_forbidden`, `invalid_topic`, `too_many_topics` or `closed`. */
export class SubscribeError extends Error {
  constructor(
    message: string,
    readonly kind: SubscribeErrorKind,
    readonly topic: string,
  ) {
    super(message);
    this.name = "SubscribeError";
  }
}

/**
 * A message published to this client (`topic` absent) or to a topic it subscribed to; `from` is
 * the publishing client's id when another client published it (set by the server).
 */
export type PushListener = (msg: string, topic?: string, from?: string) => void;

/**
 * What a topic's stream held while this client was away could not all be recovered (`reason`:
 * `expired`, `epoch_changed`, `too_many`, `unavailable`): refetch the state it stands for.
 */
export interface Unrecovered {
  /** The topic, or `""` for the pushes to this client itself (servers with history for client ids). */
  topic: string;
  reason: string;
}

/** Someone joined or left a topic this client is on (routes that announce presence). */
export interface PresenceEvent {
  type: "join" | "leave";
  topic: string;
  clientId: string;
  /** What the client's backend said about it at connect (its `connect` hook's `info`), if anything. */
  info?: ClientInfo;
}

/**
 * Why a `publish` or an `rpc` has no answer: the server's refusal (`publish_forbidden`,
 * `rate_limited`, `invalid_topic`, `invalid_frame`, `backend_unavailable` when the route's
 * backend hook failed: try again later), the handler's error code (`no_method`,
 * `backend_unavailable`, or its own), `lost` (the connection went after the request did: it may or may not have taken
 * effect), `timeout`, or `closed`.
 */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly kind: RequestErrorKind,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

interface Request {
  frame: string;
  resolve: (value: never) => void;
  reject: (e: RequestError) => void;
  /** Sent on the current connection (a lost one fails it); unsent ones wait for the next. */
  sent: boolean;
}

interface Waiter {
  resolve: () => void;
  reject: (e: SubscribeError) => void;
}

/** Close codes after which the client does not reconnect by itself. */
const FINAL_CODES = new Set([
  1000, // the application closed it
  1008, // policy violation: the server refused this client
]);
const GOING_AWAY = 1012;
const OPEN = 1;

type Listener<T> = (value: T) => void;

/** One logical connection to elastic-ws: reconnects, resends and refreshes by itself. */
export class Client {
  private socket: SocketLike | null = null;
  private readonly outbox: Outbox<Ack>;
  private readonly pushListeners = new Set<PushListener>();
  /** Topics the application subscribed to: sent again on every new connection. */
  private readonly wanted = new Set<string>();
  /**
   * Where this client is in each subscribed topic with history (the last push's offset and
   * epoch), and whether a resubscribe with `since` is on its way (pushes past a gap wait for its
   * replay).
   */
  private readonly positions = new Map<string, { at: StreamPosition; recovering: boolean }>();
  private readonly unrecoveredListeners = new Set<Listener<Unrecovered>>();
  /** Where this client is in the stream of pushes to it (servers with history for client ids). */
  private direct: { at: StreamPosition; recovering: boolean } | null = null;
  /** Subscribe/unsubscribe calls waiting for the server's answer, by topic. */
  private readonly waiting = new Map<string, Waiter[]>();
  private readonly stateListeners = new Set<Listener<ConnectionState>>();
  private readonly presenceListeners = new Set<Listener<PresenceEvent>>();
  /** Publishes (by id) and rpcs (by `rpc:` and number) waiting for their answer. */
  private readonly requests = new Map<string, Request>();
  private attempt = 0;
  private counter = 0;
  private closedByUser = false;
  /** Closed for good (by the application or a final close code): no reconnect. */
  private finished: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastToken: string | null = null;
  private refusedToken: string | null = null;
  private current: ConnectionState = { state: "connecting", attempt: 0 };
  /** Connections opened so far; more than one means the client reconnected. */
  opens = 0;
  /** Events sent again on a new connection (their first copy may be stored too). */
  resent = 0;

  private readonly factory: SocketFactory;
  private readonly instance: string;

  constructor(private readonly opts: ConnectOptions) {
    const factory = opts.WebSocket ?? (globalThis as { WebSocket?: SocketFactory }).WebSocket;
    if (!factory) {
      throw new Error("no WebSocket implementation: pass the `ws` package's WebSocket in Node");
    }
    this.factory = factory;
    this.outbox = new Outbox<Ack>(opts.bufferSize ?? 1000);
    this.instance = opts.instanceId ?? randomId();
    // Next tick, so listeners added right after `connect()` see `connecting` too.
    queueMicrotask(() => void this.dial());
  }

  /** The connection's state now. */
  get state(): ConnectionState {
    return this.current;
  }

  /** Events waiting for their acknowledgement. */
  get unacknowledged(): number {
    return this.outbox.size;
  }

  /**
   * Sends an event; resolves once the server has stored it durably (its `ack`), rejects on a
   * `nack` or a refusal. Waits first while the buffer is full. The event keeps its id across
   * reconnects: after one, every unacknowledged event is sent again, so a consumer may see one
   * twice and drops the copy by id.
   */
  async send(event: { msg: string; timestamp?: number; id?: string }): Promise<Ack> {
    if (this.finished) throw new SendError(this.finished, "closed");
    await this.outbox.reserve();
    if (this.finished) {
      this.outbox.cancel();
      throw new SendError(this.finished, "closed");
    }
    const id = event.id ?? `${this.instance}-${++this.counter}`;
    const frame: Event = { id, msg: event.msg, timestamp: event.timestamp ?? Date.now() };
    return new Promise<Ack>((resolve, reject) => {
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
  subscribe(topic: string): Promise<void> {
    if (this.finished) return Promise.reject(new SubscribeError(this.finished, "closed", topic));
    this.wanted.add(topic);
    const answered = this.wait(topic);
    this.control(this.subscribeFrame(topic));
    return answered;
  }

  /** Calls `fn` when what a topic's stream held while this client was away could not all be recovered. */
  onUnrecovered(fn: Listener<Unrecovered>): () => void {
    this.unrecoveredListeners.add(fn);
    return () => this.unrecoveredListeners.delete(fn);
  }

  /** `subscribe`, from where this client is in the topic's stream if it has a place there. */
  private subscribeFrame(topic: string): ClientControl {
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
  private inOrder(topic: string | undefined, offset: number, epoch: string): boolean {
    const p = topic === undefined ? this.direct : this.positions.get(topic);
    if (!p) {
      if (topic === undefined) this.direct = { at: { offset, epoch }, recovering: false };
      else if (this.wanted.has(topic)) this.positions.set(topic, { at: { offset, epoch }, recovering: false });
      return true;
    }
    if (p.at.epoch === epoch && offset <= p.at.offset) return false;
    if (p.at.epoch === epoch && offset > p.at.offset + 1) {
      if (!p.recovering && this.socket?.readyState === OPEN) {
        p.recovering = true;
        const frame: ClientControl =
          topic === undefined ? { type: "resume", since: { ...p.at } } : this.subscribeFrame(topic);
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
  unsubscribe(topic: string): Promise<void> {
    this.wanted.delete(topic);
    this.positions.delete(topic);
    if (!this.socket || this.socket.readyState !== OPEN) return Promise.resolve();
    const answered = this.wait(topic);
    this.control({ type: "unsubscribe", topic });
    return answered;
  }

  /** The topics subscribed to (as asked; the server confirms each). */
  get topics(): string[] {
    return [...this.wanted];
  }

  /** Calls `fn` with every pushed message and its topic; returns the function that stops it. */
  onPush(fn: PushListener): () => void {
    this.pushListeners.add(fn);
    return () => this.pushListeners.delete(fn);
  }

  /**
   * Publishes `msg` to `topic` (if the token's `publish` claim grants it); resolves with how
   * many sessions it reached. Sent at most once: a connection lost before the answer rejects it
   * with `lost`; while disconnected it waits for the next connection.
   */
  publish(topic: string, msg: string): Promise<number> {
    const id = `${this.instance}-p${++this.counter}`;
    return this.request<number>(id, { type: "publish", topic, msg, id });
  }

  /**
   * Asks the route's handler `method` with `data`; resolves with its answer, rejects with its
   * error code (`no_method`, …) or `timeout` after `timeoutMs` (10 s by default).
   */
  rpc(method: string, data?: unknown, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    const id = ++this.counter;
    const answer = this.request<unknown>(`rpc:${id}`, {
      type: "rpc",
      id,
      method,
      // Any JSON value (the schema says so; the generated type reads it as an object).
      data: (data ?? null) as never,
    });
    const ms = opts.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.requests.delete(`rpc:${id}`);
        reject(new RequestError(`no answer to ${method} within ${ms} ms`, "timeout"));
      }, ms);
    });
    return Promise.race([answer, late]).finally(() => clearTimeout(timer));
  }

  /** Calls `fn` with every join and leave on this client's topics; returns the function that stops it. */
  onPresence(fn: Listener<PresenceEvent>): () => void {
    this.presenceListeners.add(fn);
    return () => this.presenceListeners.delete(fn);
  }

  private request<T>(key: string, frame: ClientControl): Promise<T> {
    if (this.finished) return Promise.reject(new RequestError(this.finished, "closed"));
    return new Promise<T>((resolve, reject) => {
      const r: Request = { frame: JSON.stringify(frame), resolve: resolve as (v: never) => void, reject, sent: false };
      this.requests.set(key, r);
      if (this.socket && this.socket.readyState === OPEN) {
        this.socket.send(r.frame);
        r.sent = true;
      }
    });
  }

  private settle(key: string, value?: unknown, error?: RequestError): void {
    const r = this.requests.get(key);
    if (!r) return;
    this.requests.delete(key);
    if (error) r.reject(error);
    else r.resolve(value as never);
  }

  /** Calls `fn` on every state change; returns the function that stops it. */
  onState(fn: Listener<ConnectionState>): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  /** Closes for good: no reconnect; unacknowledged events fail with `closed`. */
  close(): void {
    this.closedByUser = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close(1000, "client closed");
    this.finish(1000, "client closed", "the client was closed");
  }

  private wait(topic: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const list = this.waiting.get(topic) ?? [];
      list.push({ resolve, reject });
      this.waiting.set(topic, list);
    });
  }

  private control(frame: ClientControl): void {
    if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(frame));
  }

  private answer(topic: string, error?: SubscribeError): void {
    const list = this.waiting.get(topic);
    if (!list) return;
    this.waiting.delete(topic);
    for (const w of list) {
      if (error) w.reject(error);
      else w.resolve();
    }
  }

  /** Ends for good: every held and waiting event fails. */
  private finish(code: number, reason: string, why: string): void {
    this.finished = why;
    this.outbox.failAll(new SendError(why, "closed"));
    for (const topic of [...this.waiting.keys()]) {
      this.answer(topic, new SubscribeError(why, "closed", topic));
    }
    for (const key of [...this.requests.keys()]) this.settle(key, undefined, new RequestError(why, "closed"));
    this.setState({ state: "closed", code, reason, reconnectInMs: null });
  }

  private setState(s: ConnectionState): void {
    this.current = s;
    for (const fn of this.stateListeners) fn(s);
  }

  private async token(): Promise<string | null> {
    const t = this.opts.token;
    if (t === undefined) return null;
    return typeof t === "string" ? t : await t();
  }

  private async dial(): Promise<void> {
    this.timer = null;
    if (this.closedByUser) return;
    this.setState({ state: "connecting", attempt: this.attempt });
    let token: string | null;
    try {
      token = await this.token();
    } catch (e) {
      this.retry(4000, `token: ${String(e)}`, false);
      return;
    }
    if (this.closedByUser) return;
    if (token !== null && token === this.refusedToken) {
      // The server refused exactly this token and no new one came: retrying cannot help.
      this.finish(4001, "token refused", "the token was refused");
      return;
    }
    this.lastToken = token;
    const url = new URL(this.opts.url);
    url.searchParams.set("ack", "1");
    const viaQuery = this.opts.tokenVia === "query";
    if (token !== null && viaQuery) url.searchParams.set("access_token", token);
    const protocols = token !== null && !viaQuery ? ["bearer", token] : undefined;
    let socket: SocketLike;
    try {
      socket = new this.factory(url.toString(), protocols);
    } catch (e) {
      this.retry(1006, String(e), false);
      return;
    }
    this.socket = socket;
    let opened = false;
    let status: number | undefined;
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
      // Where it was in the pushes to it, then subscriptions, so pushes flow while the resent
      // events are answered.
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
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      for (const [key, r] of [...this.requests]) {
        if (r.sent) this.settle(key, undefined, new RequestError("connection lost before the answer", "lost"));
      }
      if (this.closedByUser) return;
      if (!opened && status === 401) {
        // Refused (seen in Node; a browser cannot tell this from a network failure). The token
        // source is asked again; the same token again means no reconnect.
        this.refusedToken = this.lastToken;
        this.retry(4001, "token refused", false);
        return;
      }
      this.retry(ev.code, ev.reason, ev.code === GOING_AWAY);
    };
  }

  /** The server says the token is about to expire: ask the token function for a new one. */
  private async refresh(): Promise<void> {
    let token: string | null;
    try {
      token = await this.token();
    } catch {
      return; // the session ends at `exp` (4001) and the next connect asks again
    }
    if (token === null || !this.socket || this.socket.readyState !== OPEN) return;
    this.lastToken = token;
    this.socket.send(JSON.stringify({ type: "refresh", token }));
  }

  private retry(code: number, reason: string, draining: boolean): void {
    if (FINAL_CODES.has(code)) {
      this.finish(code, reason, `closed by the server: ${code} ${reason}`);
      return;
    }
    const wait = draining
      ? drainDelay(this.opts.drainWindowMs ?? 1000)
      : retryDelay(this.attempt, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.attempt = draining ? 0 : this.attempt + 1;
    this.setState({ state: "closed", code, reason, reconnectInMs: wait });
    this.timer = setTimeout(() => void this.dial(), wait);
  }

  private onFrame(data: unknown): void {
    if (typeof data !== "string") data = String(data);
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data as string) as ServerFrame;
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
          this.settle(frame.id, undefined, new RequestError(frame.detail, frame.error));
          break;
        }
        if (frame.id) this.outbox.take(frame.id)?.reject(new SendError(frame.detail, frame.error));
        if (frame.topic) {
          // Refused: not wanted any more, so not asked again on the next connection.
          this.wanted.delete(frame.topic);
          this.answer(frame.topic, new SubscribeError(frame.detail, frame.error, frame.topic));
        }
        break;
      }
      case "push": {
        if (frame.offset != null && frame.epoch != null) {
          if (!this.inOrder(frame.topic ?? undefined, frame.offset, frame.epoch)) break;
        }
        for (const fn of this.pushListeners) fn(frame.msg, frame.topic ?? undefined, frame.from ?? undefined);
        break;
      }
      case "published": {
        if (frame.id) this.settle(frame.id, frame.delivered);
        break;
      }
      case "reply": {
        const key = `rpc:${frame.id}`;
        if (frame.error) this.settle(key, undefined, new RequestError(frame.error.message, frame.error.code));
        else this.settle(key, frame.data ?? null);
        break;
      }
      case "join":
      case "leave": {
        const ev: PresenceEvent = { type: frame.type, topic: frame.topic, clientId: frame.clientId };
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
          // Where the stream is: every push up to it came first.
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
        // A `resume` on its way knows better.
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
}

/** Opens a client (it connects in the background; see `onState`). */
export function connect(opts: ConnectOptions): Client {
  return new Client(opts);
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}
