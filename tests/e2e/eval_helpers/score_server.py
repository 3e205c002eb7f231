#!/usr/bin/env python3
"""A loopback scoring service for tests/e2e/eval_cli.sh (stdlib only).

POST /ok       {"items": [{"prompt", "image_png_base64"}]} -> {"scores": [len(prompt) / 100 ...]}
               (checks that every image is base64 of a PNG)
POST /fail     status 500
POST /garbage  status 200 with HTML
Writes the port it listens on to the file named by argv[1], then serves
until killed."""
import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, kind="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/fail":
            return self.reply(500, "broken", "text/plain")
        if self.path == "/garbage":
            return self.reply(200, "<html>hello</html>", "text/html")
        try:
            items = json.loads(body)["items"]
            scores = []
            for it in items:
                png = base64.b64decode(it["image_png_base64"], validate=True)
                assert png[:8] == b"\x89PNG\r\n\x1a\n"
                scores.append(len(it["prompt"]) / 100)
        except Exception as e:  # noqa: BLE001
            return self.reply(422, json.dumps({"error": str(e)}))
        self.reply(200, json.dumps({"scores": scores}))


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
