"""A loopback HTTP server for the export tests: it answers every POST and notes what it got."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Serves POSTs on a free loopback port until closed. Each request's path, content type, body
    and client port are appended to the lists of those names. It answers `statuses` in turn, then
    `status`; with `drop`, it closes each connection after answering, saying nothing (as an idle
    timeout does)."""

    def __init__(self, protocol: str = "HTTP/1.1") -> None:
        self.paths: list[str] = []
        self.content_types: list[str | None] = []
        self.bodies: list[bytes] = []
        self.ports: list[int] = []
        self.statuses: list[int] = []
        self.status = 200
        self.drop = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = protocol

            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"] or 0)))
                receiver.paths.append(self.path)
                receiver.content_types.append(self.headers["Content-Type"])
                receiver.ports.append(self.client_address[1])
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if receiver.drop:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
