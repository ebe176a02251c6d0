import { test } from "node:test";
import assert from "node:assert/strict";
import { retryDelay, drainDelay, DEFAULT_BACKOFF } from "../dist/index.js";

test("the bound doubles from the initial wait up to the maximum", () => {
  const b = { initialMs: 100, maxMs: 5000 };
  const top = (n) => retryDelay(n, b, () => 0.999999);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(top), [99, 199, 399, 799, 1599, 3199, 4999]);
  assert.equal(top(1000), 4999, "capped, and no overflow on long outages");
});

test("full jitter: anywhere between zero and the bound", () => {
  assert.equal(retryDelay(5, DEFAULT_BACKOFF, () => 0), 0);
  for (let i = 0; i < 1000; i++) {
    const d = retryDelay(3, DEFAULT_BACKOFF);
    assert.ok(d >= 0 && d < DEFAULT_BACKOFF.initialMs * 8, `${d}`);
  }
});

test("after a drain the wait is short and spread over its window", () => {
  const waits = Array.from({ length: 1000 }, () => drainDelay(1000));
  assert.ok(waits.every((w) => w >= 0 && w < 1000));
  assert.ok(Math.max(...waits) - Math.min(...waits) > 500, "spread, not in step");
});
