"""A cuttable TCP proxy on loopback, for real outages of a real backing service.

The server under test is pointed at the proxy instead of PostgreSQL or Redis; `cut()`
closes the listener and every open connection (to the server the backend is gone: open
connections break, new ones are refused), `restore()` listens again on the same port (the
backend is back, with whatever state it kept: the machine's real server never restarts,
so tests can share it). `hang()` is the nastier outage: connections stay open and new ones
are accepted, but nothing is answered any more (a hung server, a partition without a
reset) until `unhang()`. `delay` makes the backend far away (every chunk waits)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.support.processes import free_port


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; `cut()` drops the listener and every open
    connection (the backend is gone), `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay  # seconds added to every chunk, each way: a slow network
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._hung = False

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def hang(self) -> None:
        """Keep accepting and holding connections, answer nothing."""
        self._hung = True

    def unhang(self) -> None:
        """Answer again (connections made while hung stay silent: clients drop them)."""
        self._hung = False

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*doomed, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            if self._hung:  # accepted, and left without an answer
                with self._lock:
                    self._sockets.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                # Accepted just before a cut: the backend is gone for this one too.
                alive = self._listener is listener
                if alive:
                    self._sockets += [client, upstream]
            if not alive:
                for sock in (client, upstream):
                    sock.close()
                return
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                if not self._hung:  # hung: swallowed, never delivered
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
