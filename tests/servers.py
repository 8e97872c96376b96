"""Raw TCP servers on loopback for replies no lab responder gives (exact bytes, stalls)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

Handler = Callable[[socket.socket], None]


class ThreadServers:
    """Servers on 127.0.0.1, one thread each, running ``handler(conn)`` per connection.

    The connection is closed after the handler; an OSError in it (the client
    gave up) ends that connection only.
    """

    def __init__(self) -> None:
        self._listeners: list[socket.socket] = []

    def start(self, handler: Handler) -> int:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        self._listeners.append(srv)

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:  # closed
                    return
                with conn, contextlib.suppress(OSError):
                    handler(conn)

        threading.Thread(target=serve, daemon=True).start()
        return int(srv.getsockname()[1])

    def close(self) -> None:
        for srv in self._listeners:
            srv.close()
