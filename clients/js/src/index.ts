/**
 * The elastic-ws client: one logical connection that reconnects (exponential back-off with full
 * jitter; promptly after a server drains with 1012), resends unacknowledged events with their ids
 * after a reconnect, asks its token function again before every connect, and applies
 * back-pressure through a bounded buffer. Topic subscriptions survive reconnects: the client
 * subscribes again on every new connection. It publishes to topics (`publish`), asks the
 * route's handler (`rpc`), hears who joins and leaves (`onPresence`), and answers the server's
 * `refresh_required` with a fresh token from its token function. No runtime dependencies: the browser's WebSocket, or in
 * Node the `ws` package's, passed as `WebSocket`.
 */
export { connect, Client, RequestError, SendError, SubscribeError } from "./client.js";
export type {
  Ack,
  PresenceEvent,
  Unrecovered,
  RequestErrorKind,
  SendErrorKind,
  SubscribeErrorKind,
  ConnectOptions,
  ConnectionState,
  PushListener,
  SocketFactory,
  SocketLike,
  TokenSource,
} from "./client.js";
export { retryDelay, drainDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { Backoff } from "./backoff.js";
export { Outbox } from "./outbox.js";
export type { ClientControl, ClientInfo, Event, ServerFrame, StampedEvent, StreamPosition, ErrorKind } from "./protocol.js";
