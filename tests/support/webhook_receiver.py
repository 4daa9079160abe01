"""A webhook receiver for tests, run as its own process so a test can kill it (SIGKILL) mid-run:

    python -m tests.support.webhook_receiver PORT OUT.jsonl [--status CODE]

Each POST is answered with `--status` (200 by default) after its body and headers are appended
to OUT.jsonl as one JSON line (so a receiver killed later has already recorded what it acked).
Prints "listening <port>" once bound.
"""
from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main(argv: list[str]) -> None:
    port, out = int(argv[0]), argv[1]
    status = int(argv[argv.index("--status") + 1]) if "--status" in argv else 200

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record = {"path": self.path, "headers": dict(self.headers.items()), "body": body.decode("utf-8")}
            with open(out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.allow_reuse_address = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
