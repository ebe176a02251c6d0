import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "../dist/index.js";

const entry = (id) => ({ id, frame: id, resolve() {}, reject() {} });

test("holds at most its capacity; a producer past it waits for an acknowledgement", async () => {
  const box = new Outbox(2);
  for (const id of ["a", "b"]) {
    await box.reserve();
    box.add(entry(id));
  }
  let third = false;
  const waiting = box.reserve().then(() => (third = true));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(third, false, "the third event waits");
  assert.equal(box.size, 2);
  box.take("a");
  await waiting;
  assert.equal(third, true);
  box.add(entry("c"));
  assert.deepEqual(box.pending().map((e) => e.id), ["b", "c"], "oldest first, for resending");
});

test("closing fails what is held and releases waiting producers", async () => {
  const box = new Outbox(1);
  const failed = [];
  await box.reserve();
  box.add({ id: "a", frame: "a", resolve() {}, reject: (e) => failed.push(e.message) });
  const waiting = box.reserve();
  box.failAll(new Error("closed"));
  await waiting;
  assert.deepEqual(failed, ["closed"]);
  assert.throws(() => new Outbox(0), RangeError);
});
