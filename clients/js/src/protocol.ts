/* Generated from docs/protocol.schema.json by `npm run gen`: do not edit. */

/**
 * Client → worker: the session's own requests, told from events by their top-level `type`.
 * Topic frames are answered `subscribed` / `unsubscribed` or an `error` naming the topic;
 * subscriptions belong to the session (after a reconnect the client subscribes again).
 */
export type ClientControl =
  | {
      since?: StreamPosition | null;
      topic: string;
      type: "subscribe";
    }
  | {
      topic: string;
      type: "unsubscribe";
    }
  | {
      /**
       * The client's id for this publish (at most [`MAX_ID_LEN`] bytes), named in the answer.
       */
      id?: string | null;
      msg: string;
      topic: string;
      type: "publish";
    }
  | {
      data?: {
        [k: string]: unknown | undefined;
      };
      id: number;
      method: string;
      type: "rpc";
    }
  | {
      token: string;
      type: "refresh";
    }
  | {
      since: StreamPosition;
      type: "resume";
    };
/**
 * What a `ServerFrame::Error` is about.
 */
export type ErrorKind =
  | "invalid_event"
  | "sink_unavailable"
  | "invalid_topic"
  | "topic_forbidden"
  | "too_many_topics"
  | "publish_forbidden"
  | "rate_limited"
  | "token_refused"
  | "invalid_frame"
  | "backend_unavailable";
/**
 * Which hook fired.
 */
export type HookKind = "connect" | "refresh" | "subscribe" | "publish" | "rpc" | "message" | "disconnect";
/**
 * A lifecycle record as a sink stores it (`type` says which).
 */
export type Lifecycle = SessionLife | SessionLife1 | NodeLost;
/**
 * Worker → client.
 */
export type ServerFrame =
  | {
      /**
       * The event's `id`, when it had one.
       */
      id?: string | null;
      seq: number;
      type: "ack";
    }
  | {
      error: string;
      /**
       * The event's `id`, when it had one.
       */
      id?: string | null;
      seq: number;
      type: "nack";
    }
  | {
      detail: string;
      error: ErrorKind;
      /**
       * The event's `id`, when the frame was an event with one.
       */
      id?: string | null;
      /**
       * The topic, when the frame was a `subscribe` or `unsubscribe`.
       */
      topic?: string | null;
      type: "error";
    }
  | {
      epoch?: string | null;
      /**
       * The publishing client's id (its token's `sub`), set by the worker that took the
       * publish: a receiver can trust it. Absent for the backend's publishes.
       */
      from?: string | null;
      msg: string;
      /**
       * On a topic with history: the message's place in the topic's stream (1, 2, 3, ...
       * with no gap), and the stream's epoch. Keep the last pair to recover with `since`.
       */
      offset?: number | null;
      topic?: string | null;
      type: "push";
    }
  | {
      epoch?: string | null;
      offset?: number | null;
      reason?: string | null;
      recovered?: boolean | null;
      topic: string;
      type: "subscribed";
    }
  | {
      topic: string;
      type: "unsubscribed";
    }
  | {
      delivered: number;
      id?: string | null;
      type: "published";
    }
  | {
      data?: unknown;
      error?: RpcError | null;
      id: number;
      type: "reply";
    }
  | {
      exp: number;
      type: "refresh_required";
    }
  | {
      exp: number;
      type: "refreshed";
    }
  | {
      epoch: string;
      offset: number;
      type: "position";
    }
  | {
      epoch: string;
      offset: number;
      reason?: string | null;
      recovered: boolean;
      type: "resumed";
    }
  | {
      clientId: string;
      info?: ClientInfo | null;
      topic: string;
      type: "join";
    }
  | {
      clientId: string;
      info?: ClientInfo | null;
      topic: string;
      type: "leave";
    };
/**
 * One record of a sink: a client's event, or (with `--lifecycle-events`) a lifecycle record.
 * An event has no `type` field; a lifecycle record always has one.
 */
export type SinkRecord = Lifecycle | StampedEvent;

export interface Protocol {
  ClientControl?: ClientControl;
  ClientInfo?: ClientInfo;
  ErrorKind?: ErrorKind;
  Event?: Event;
  HookKind?: HookKind;
  HookRequest?: HookRequest;
  HookResponse?: HookResponse;
  Lifecycle?: Lifecycle;
  NodeLost?: NodeLost1;
  RpcError?: RpcError;
  ServerFrame?: ServerFrame;
  SessionLife?: SessionLife2;
  SinkRecord?: SinkRecord;
  StampedEvent?: StampedEvent;
  StreamPosition?: StreamPosition;
}
/**
 * A client's place in a topic's stream: the `offset` and `epoch` of the last push it got.
 */
export interface StreamPosition {
  epoch: string;
  offset: number;
}
/**
 * What the client's backend said about it at connect: any JSON object of at most 4096 bytes.
 */
export interface ClientInfo {
  [k: string]: unknown | undefined;
}
/**
 * Client → worker on an `ingest` route: one event.
 */
export interface Event {
  /**
   * Who the client says it is. With authentication the worker ignores it and stores the
   * token's `sub`: a client cannot speak for someone else. May be left out.
   */
  clientId?: string;
  /**
   * A client-made id, unique per event (at most [`MAX_ID_LEN`] bytes) and the same when the
   * event is sent again after a reconnect: the worker stores it with the event and names it
   * in the `ack`, `nack` or `error` about the event, so a consumer can drop a resent copy.
   */
  id?: string | null;
  /**
   * The payload, carried as is.
   */
  msg: string;
  /**
   * Client-side time, milliseconds since the Unix epoch.
   */
  timestamp: number;
}
/**
 * Worker → backend: one hook call, signed (see the worker's documentation: the
 * `X-Ews-Signature` header is an HMAC-SHA256 of the timestamp and this body).
 */
export interface HookRequest {
  /**
   * The verified token's claims (on `refresh`: the new token's).
   */
  claims?: {
    [k: string]: unknown | undefined;
  } | null;
  /**
   * The token's `sub` (absent on a route without authentication).
   */
  clientId?: string | null;
  /**
   * `rpc`: the call's data.
   */
  data?: {
    [k: string]: unknown | undefined;
  };
  hook: HookKind;
  /**
   * `rpc`: the method.
   */
  method?: string | null;
  /**
   * `publish`: the message; `message`: the client's text message.
   */
  msg?: string | null;
  /**
   * The worker holding the client's socket.
   */
  node: string;
  /**
   * `disconnect`: why the session ended (`client_left`, `draining`, `token_expired`, …).
   */
  reason?: string | null;
  /**
   * The route's path (`/chat`).
   */
  route: string;
  /**
   * The session's id on that worker (with `node`, unique while the worker runs).
   */
  session: number;
  /**
   * `subscribe`, `publish`: the topic.
   */
  topic?: string | null;
}
/**
 * Backend → worker: the answer to a hook call (HTTP 200 with this JSON; any other status is a
 * failed call). Every field is optional: `{}` accepts.
 */
export interface HookResponse {
  /**
   * `false` refuses (`connect`, `refresh`, `subscribe`, `publish`); absent or `true`
   * accepts.
   */
  accept?: boolean | null;
  /**
   * `rpc`: the reply's data.
   */
  data?: {
    [k: string]: unknown | undefined;
  };
  /**
   * `rpc`: the reply's error instead.
   */
  error?: RpcError | null;
  /**
   * An accepted `connect` or `refresh`: the session ends at this time (Unix seconds) unless
   * refreshed, instead of at its token's `exp` (never later than it).
   */
  expiresAt?: number | null;
  /**
   * An accepted `connect`: what presence shows beside the client's id (a JSON object of at
   * most 4096 bytes): in the join and leave events its topics' other members get, and in
   * `/api/v1/presence` answers.
   */
  info?: ClientInfo | null;
  /**
   * An accepted `publish`: the message to publish instead of the client's.
   */
  msg?: string | null;
  /**
   * An accepted `connect`: topic patterns the session may also publish to.
   */
  publish?: string[];
  /**
   * A refusal's reason, passed on to the client.
   */
  reason?: string | null;
  /**
   * `message` (and `rpc`): text messages to send the client, in order.
   */
  send?: string[];
  /**
   * A refused `connect`: the HTTP status the client gets (400 to 499; default 403).
   */
  status?: number | null;
  /**
   * An accepted `connect`: topic patterns the session may also join, beyond its token's.
   */
  topics?: string[];
}
/**
 * Why an `rpc` got no data: a `code` a program can branch on (`no_method`, `bad_request`,
 * `unavailable`, `internal`, or the handler's own) and a `message` for people.
 */
export interface RpcError {
  code: string;
  message: string;
}
/**
 * A session's start or end.
 */
export interface SessionLife {
  type: "connected";
}
/**
 * A session's start or end.
 */
export interface SessionLife1 {
  type: "disconnected";
}
/**
 * Ends every session of `node` in `generation` (written at least once; a repeat is
 * harmless).
 */
export interface NodeLost {
  type: "node_lost";
}
/**
 * A worker generation that has left the cluster: its sessions are over.
 */
export interface NodeLost1 {
  /**
   * When it was written, ms since the epoch.
   */
  at: number;
  /**
   * Node id of the active leader that wrote it.
   */
  by: string;
  generation: number;
  node: string;
  /**
   * `dead`: it stopped answering and membership confirmed it gone, sessions and all;
   * `restarted`: a newer generation of the node joined; `left`: it drained and left (its
   * sessions wrote their own ends; this one only says no more will come).
   */
  reason: string;
}
/**
 * A session's start or end.
 */
export interface SessionLife2 {
  /**
   * When the worker wrote the record, ms since the epoch.
   */
  at: number;
  /**
   * The authenticated client id (the token's `sub`); empty under `--no-auth`.
   */
  clientId: string;
  /**
   * The WebSocket close code, when a close frame was exchanged (`disconnected` only): the
   * worker's, or the client's when it closed first.
   */
  code?: number | null;
  /**
   * The worker process's start time, ms since the epoch: every restart is a new generation,
   * and a `node_lost` ends the sessions of one generation.
   */
  generation: number;
  /**
   * Node id of the worker holding the session.
   */
  node: string;
  /**
   * Per node and generation, 1, 2, 3, ... over its lifecycle records: a consumer that sees
   * a gap knows it missed one.
   */
  nodeSeq: number;
  /**
   * Why the session ended (`disconnected` only): the label a `disconnect` hook hears
   * (`client_left`, `draining`, `moved`, `peer_silent`, `token_expired`, ...).
   */
  reason?: string | null;
  /**
   * The route's path.
   */
  route: string;
  /**
   * Session id on that node (unique within a generation).
   */
  session: number;
}
/**
 * An event as every sink stores it: what the client sent, stamped by the worker that took it.
 */
export interface StampedEvent {
  /**
   * The authenticated client id (the token's `sub`), never what the client claimed.
   */
  clientId: string;
  /**
   * The client's id for the event, if it gave one: copies of one event resent after a
   * reconnect share it.
   */
  id?: string | null;
  msg: string;
  /**
   * Node id of the worker that received the event.
   */
  node: string;
  /**
   * Receive time at the worker, ms since the epoch.
   */
  receivedAt: number;
  /**
   * Per-session sequence number, starting at 1: with `node` and `session` a unique key, so a
   * verifier can find duplicates and gaps.
   */
  seq: number;
  /**
   * Session id on that node.
   */
  session: number;
  /**
   * Client-side timestamp, ms since the epoch, as sent.
   */
  timestamp: number;
}
