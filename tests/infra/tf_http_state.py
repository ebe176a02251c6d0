#!/usr/bin/env python3
"""A Terraform http backend on loopback, standing in for GitLab's managed Terraform state when
scripts/ci-local-plan.sh runs the pipeline's plan jobs: GET the state (404 = none yet), POST a
new one, LOCK and UNLOCK (GitLab's lock methods, POST and DELETE on .../lock). One state per
path, kept in memory. Basic auth is accepted as GitLab's job token would be (the jobs send
gitlab-ci-token:<token>); any other request is refused.

Usage: tf_http_state.py PORT_FILE     (writes the port it listens on to PORT_FILE)
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATES: dict[str, bytes] = {}
LOCKS: dict[str, bytes] = {}


class Handler(BaseHTTPRequestHandler):
    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = STATES.get(self.path)
        self._answer(200, state) if state is not None else self._answer(404)

    def do_POST(self) -> None:
        body = self._body()
        if self.path.endswith("/lock"):
            if self.path in LOCKS:
                self._answer(423, LOCKS[self.path])
            else:
                LOCKS[self.path] = body
                self._answer(200)
            return
        STATES[self.path.split("?", 1)[0]] = body
        self._answer(200)

    def do_DELETE(self) -> None:
        self._body()
        LOCKS.pop(self.path, None)
        self._answer(200)

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write("tf-state: " + fmt % args + "\n")


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
