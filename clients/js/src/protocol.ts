/* Generated from docs/protocol.schema.json by `npm run gen`: do not edit. */

/**
 * Client → worker on an `ingest` route: join or leave a topic. The worker answers
 * `subscribed` / `unsubscribed`, or an `error` naming the topic. Subscriptions belong to the
 * session: after a reconnect the client subscribes again.
 */
export type ClientControl =
  | {
      topic: string;
      type: "subscribe";
    }
  | {
      topic: string;
      type: "unsubscribe";
    };
/**
 * What a `ServerFrame::Error` is about.
 */
export type ErrorKind = "invalid_event" | "sink_unavailable" | "invalid_topic" | "topic_forbidden" | "too_many_topics";
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
      msg: string;
      topic?: string | null;
      type: "push";
    }
  | {
      topic: string;
      type: "subscribed";
    }
  | {
      topic: string;
      type: "unsubscribed";
    };

export interface Protocol {
  ClientControl?: ClientControl;
  ErrorKind?: ErrorKind;
  Event?: Event;
  ServerFrame?: ServerFrame;
  StampedEvent?: StampedEvent;
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
