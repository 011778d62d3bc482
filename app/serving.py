"""The HTTP server's side of slow clients: deadlines that uvicorn does not have.

uvicorn times out an idle kept-alive connection (`timeout_keep_alive`) and nothing else: a
client that opens a connection and sends its headers a byte at a time, or declares
`Content-Length: 100` and sends 2 bytes, holds a connection (and, once its headers are in,
a running request) for as long as it likes. `SlowClientProtocol` is uvicorn's httptools
protocol with two deadlines:

- **headers**: from the connection opening (or the first byte of the next request on a
  kept-alive one) until the headers are complete: `HTTP_HEADER_TIMEOUT_SECONDS`;
- **body**: from the headers until the body is complete: `HTTP_BODY_TIMEOUT_SECONDS`.

When one passes, a request that has no answer yet is answered 408 (a GraphQL error
document, `BAD_USER_INPUT`) and the connection is closed; the request's task, if one runs,
reads a disconnect. The close lingers: the 408 goes out with a FIN (`write_eof`), whatever
the client still sends is read and dropped, and the socket closes when the client closes
its side or after `LINGER_SECONDS`. Closed at once, a socket with a byte of the client's
unread (a slow client drips one just as its deadline passes) answers with a reset, and a
reset makes the client's kernel drop the 408 it had not read yet: 401 of 1,000 slow
clients saw a bare reset in one CI run.

The deadline is kept lazily: a phase's deadline is a number on the connection (`_due`),
and one timer per connection (`_timer`) checks it when it fires, re-arming itself for what
is left. A request on a kept-alive connection then sets two numbers instead of starting
and cancelling two loop timers (a timer is started again only when none is pending, or the
pending one would fire after the new deadline).

This runs before any application code, for every route. GuardMiddleware (app/http.py)
keeps its own body deadline for deployments that serve the app another way. Measured in
`tests/security_stage/test_slow_clients.py` (README "Security figures")."""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_MESSAGE = "The request did not arrive in time."
LINGER_SECONDS = 2.0  # how long a timed-out connection waits for its client to close


def _timeout_response() -> bytes:
    body = json.dumps(
        {"errors": [{"message": _MESSAGE, "extensions": {"code": "BAD_USER_INPUT"}}]}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class SlowClientProtocol(HttpToolsProtocol):
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    _due: float | None = None  # when the current phase's deadline passes (loop time)
    _timer: asyncio.TimerHandle | None = None  # the pending check, if any
    _lingering = False

    # uvicorn's protocol narrows asyncio.Protocol's BaseTransport to Transport (it calls
    # transport methods only Transport has); this override keeps uvicorn's signature.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # answered 408 already: read and dropped, never parsed
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._due is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        self._due = None
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.body_timeout)  # a WebSocket leaves this protocol instead

    def on_message_complete(self) -> None:
        self._due = None
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        due = self._due = self.loop.time() + seconds
        if self._timer is not None:
            if self._timer.when() <= due:
                return  # it fires first, and re-arms itself for the rest
            self._timer.cancel()
        self._timer = self.loop.call_at(due, self._check)

    def _check(self) -> None:
        """The timer fired: the phase's deadline has passed, or the phase has moved on
        (another deadline, re-armed for; none, the connection is idle or upgraded)."""
        self._timer = None
        due = self._due
        if due is None or self._lingering:
            return
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._check)
            return
        self._expired()

    def _expired(self) -> None:
        self._due = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering_earlier = bool(self.pipeline)  # a pipelined request waits behind another
        if (
            cycle is None
            or cycle.response_complete
            or not (cycle.response_started or answering_earlier)
        ):
            self.transport.write(_timeout_response())
        if cycle is not None and not cycle.response_complete:
            # The request's task reads a disconnect now, and whatever it still sends is
            # dropped (uvicorn's own handling of a client gone), never written after this.
            cycle.disconnected = True
            cycle.message_event.set()
        self._linger()

    def _linger(self) -> None:
        """Half-close (the 408 is followed by a FIN), drop what still arrives, and close
        when the client closes (uvicorn's `eof_received` lets the transport close) or after
        LINGER_SECONDS, whichever comes first."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()
        self.transport.resume_reading()  # flow control may have paused it
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def slow_client_protocol(header_timeout: float, body_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with these deadlines (seconds)."""
    attributes: dict[str, Any] = {"header_timeout": header_timeout, "body_timeout": body_timeout}
    return type("SlowClientProtocol", (SlowClientProtocol,), attributes)


def raise_open_file_limit(wanted: int = 65_536) -> int:
    """Raise this process's soft limit on open files towards `wanted` (as far as the hard
    limit allows): every connection is a file descriptor, and the usual soft limit of 1,024
    is reached by a few hundred slow clients plus the normal ones. Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
