#!/usr/bin/env python3
"""An elastic-ws backend for the worker's hooks (docs/hooks.md): the file a team copies.

One POST endpoint answers every hook; it checks the worker's signature first. Python's standard
library only (3.8 or newer): nothing to install, nothing to pin.

    python3 backend.py --port 8000 --secret-file hook-secret

What it decides, as a small chat application would:
  connect    refuses clients whose token says "banned": true (403, with a reason); grants every
             client its own room "room.<sub>" and the lobby, for joining and publishing, beyond
             what its token grants
  subscribe  refuses "room.staff" to anyone without the "staff" claim
  publish    refuses messages containing "spam"; rewrites "darn" as "d**n"
  rpc        "time" (the backend's clock), "echo" (the data back), anything else: an error
  message    answers every message with "backend got: <message>"
  refresh    accepts
  disconnect records the call
Every call is kept (GET /calls lists them, newest last), and the tests switch the whole
backend into a failure (POST /mode with "ok", "hang" or "garbage").
"""

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A signed call older (or newer) than this is refused: a replayed request goes stale.
MAX_SKEW_SECS = 300


def verify(secret, headers, body):
    """Whether the worker signed this body: X-Ews-Signature is v1=<hex HMAC-SHA256 of
    "<X-Ews-Timestamp>.<body>">, and the timestamp is recent."""
    ts = headers.get("X-Ews-Timestamp", "")
    sig = headers.get("X-Ews-Signature", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > MAX_SKEW_SECS:
        return False
    want = "v1=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig)


def decide(call):
    """The answer to one hook call (docs/hooks.md lists every field)."""
    hook = call.get("hook")
    claims = call.get("claims") or {}
    client = call.get("clientId") or "anonymous"
    if hook == "connect":
        if claims.get("banned"):
            return {"accept": False, "status": 403, "reason": "banned by the backend"}
        rooms = ["room." + client, "room.lobby"]
        # info: what presence shows beside the client's id (join/leave frames, /api/v1/presence)
        return {"topics": rooms, "publish": rooms, "info": {"name": client.capitalize()}}
    if hook == "subscribe":
        if call.get("topic") == "room.staff" and not claims.get("staff"):
            return {"accept": False, "reason": "staff only"}
        return {}
    if hook == "publish":
        msg = call.get("msg", "")
        if "spam" in msg:
            return {"accept": False, "reason": "looks like spam"}
        if "darn" in msg:
            return {"msg": msg.replace("darn", "d**n")}
        return {}
    if hook == "rpc":
        method = call.get("method")
        if method == "time":
            return {"data": {"now": int(time.time())}}
        if method == "echo":
            return {"data": call.get("data")}
        return {"error": {"code": "no_method", "message": "no method %r here" % method}}
    if hook == "message":
        return {"send": ["backend got: " + call.get("msg", "")]}
    return {}  # refresh, disconnect


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the worker pools its connections
    # One write per answer, sent at once: headers and body written separately on a kept-alive
    # connection would wait out the caller's delayed ACK (40 ms a call) behind Nagle's algorithm.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def _reply(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/calls":
            with self.server.lock:
                body = json.dumps(self.server.calls).encode()
            return self._reply(200, body)
        self._reply(404, b"{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/mode":
            self.server.mode = body.decode().strip() or "ok"
            return self._reply(200, b"{}")
        if self.server.secret is not None and not verify(self.server.secret, self.headers, body):
            return self._reply(401, b'{"error":"bad signature"}')
        try:
            call = json.loads(body)
        except ValueError:
            return self._reply(400, b'{"error":"not JSON"}')
        with self.server.lock:
            self.server.calls.append(call)
            del self.server.calls[:-10000]  # the newest only: an example must not grow forever
        mode = self.server.mode
        if mode == "hang":
            time.sleep(3600)
        if mode == "garbage":
            return self._reply(200, b"<html>not a hook answer</html>", "text/html")
        self._reply(200, json.dumps(decide(call)).encode())

    def log_message(self, fmt, *args):
        pass  # one line per call would drown a load test


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--secret-file", help="the hook secret the workers sign with")
    args = p.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Backend)
    server.daemon_threads = True
    server.secret = None
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            server.secret = f.read().rstrip()
    server.mode = "ok"
    server.calls = []
    server.lock = threading.Lock()
    print("backend listening on http://%s:%d/" % (args.host, args.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
