"""A real HTTP(S) receiver on loopback for webhook tests: records every POST, answers with the
status (and reason phrase, headers and body) the test sets, after `on_post`, when set, has run
(a slow receiver, or another sender racing this one)."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    status: int = 200
    answer: bytes = b"ok"
    reason: str | None = None  # the status line's phrase; None: the standard one
    answer_headers: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # a server context: the receiver speaks https
    received: list[Received] = field(default_factory=list)
    on_post: Callable[[], None] | None = None
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return self.url_for(self.server.server_address[0])

    def url_for(self, host: str) -> str:
        """This receiver's URL under another name for its address (`localhost`, say)."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}/hooks/secret-path-token"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                if receiver.on_post is not None:
                    receiver.on_post()
                self.send_response(receiver.status, receiver.reason)
                for name, value in receiver.answer_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
