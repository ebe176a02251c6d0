// A WebSocket stand-in the tests drive by hand: every socket the client opens is recorded, and
// the test decides when it opens, what the server says and how it closes.
export function fakeSockets() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = new URL(url);
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.listeners = {};
      this.onopen = this.onclose = this.onmessage = this.onerror = null;
      sockets.push(this);
    }
    on(event, fn) {
      this.listeners[event] = fn;
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }
    close(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      queueMicrotask(() => this.onclose?.({ code, reason }));
    }
    // --- what the test does as the server ---
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    frame(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    drop(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    refuse(status) {
      this.listeners["unexpected-response"]?.({}, { statusCode: status });
    }
  }
  return { FakeSocket, sockets };
}

/** Resolves once `cond()` holds (polled), or rejects after `ms`. */
export async function until(cond, ms = 2000) {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms: ${cond}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
