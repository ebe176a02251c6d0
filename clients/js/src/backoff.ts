/**
 * When to try again. Exponential back-off with full jitter (a uniformly random wait between zero
 * and the exponential bound): thousands of clients that lost the same server at the same moment
 * come back spread out instead of in waves.
 */
export interface Backoff {
  /** Bound of the first retry, in ms. */
  initialMs: number;
  /** Largest bound, in ms. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 250, maxMs: 30_000 };

/** The wait before retry number `attempt` (0 for the first), in ms. */
export function retryDelay(attempt: number, b: Backoff = DEFAULT_BACKOFF, random = Math.random): number {
  const bound = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}

/**
 * The wait after a server said it is going away (close code 1012: draining for a scale-in or a
 * deployment, or rebalancing): soon, since another node is ready, but spread over `windowMs` so
 * the clients of one node do not all land at once.
 */
export function drainDelay(windowMs: number, random = Math.random): number {
  return Math.floor(random() * windowMs);
}
