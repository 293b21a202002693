"""A TCP proxy a test controls, to put faults between a client and a server (PostgreSQL).

`cut_at(pattern, occurrence)` arms it: when the client sends `pattern` (say, the text of an
`INSERT` in a query message) for the `occurrence`-th time, that message is dropped and every
connection through the proxy is cut; from then on new connections are accepted and closed at
once, until `restore()`. `was_cut` is set when the cut happens, so a test waits on it instead of
sleeping. Plain threads: one accepting, two per connection pumping bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.was_cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._refusing = False
        self._pattern: bytes | None = None
        self._left = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at(self, pattern: bytes, occurrence: int = 1) -> None:
        with self._lock:
            self._pattern, self._left = pattern, occurrence

    def restore(self) -> None:
        """Accept connections again (the ones cut stay cut)."""
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._listener.close()
        self._drop_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                refusing = self._refusing or self._closed
            if refusing:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_client and self._triggers(data):
                    self._cut()
                    return
                target.sendall(data)
        self._close_pair(source, target)

    def _triggers(self, data: bytes) -> bool:
        with self._lock:
            if self._pattern is None or self._pattern not in data:
                return False
            self._left -= 1
            if self._left:
                return False
            self._pattern = None
            self._refusing = True
            return True

    def _cut(self) -> None:
        self._drop_all()
        self.was_cut.set()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _close_pair(self, *pair: socket.socket) -> None:
        with self._lock:
            self._sockets -= set(pair)
        for sock in pair:
            sock.close()
