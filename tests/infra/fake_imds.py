#!/usr/bin/env python3
"""A local stand-in for the EC2 instance metadata service (IMDSv2 only), for the provisioning
test: the real one exists only on EC2. Tokenless reads get 401, as with `http_tokens = required`.

Usage: fake_imds.py USER_DATA_FILE PORT_FILE [LIFECYCLE_STATE]
(writes the chosen port to PORT_FILE; LIFECYCLE_STATE is the Auto Scaling target lifecycle state,
InService by default)
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "test-token"
USER_DATA = open(sys.argv[1], "rb").read()
META = {
    "/latest/meta-data/local-ipv4": b"10.40.8.15",
    "/latest/meta-data/instance-id": b"i-0123456789abcdef0",
    "/latest/meta-data/placement/region": b"eu-central-1",
    "/latest/meta-data/autoscaling/target-lifecycle-state": (sys.argv[3] if len(sys.argv) > 3 else "InService").encode(),
    "/latest/user-data": USER_DATA,
}


class Handler(BaseHTTPRequestHandler):
    def reply(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.reply(200, TOKEN.encode())
        else:
            self.reply(400)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self.reply(401)
        elif self.path in META:
            self.reply(200, META[self.path])
        else:
            self.reply(404)

    def log_message(self, *args) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
