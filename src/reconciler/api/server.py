"""Serving the API with uvicorn: in the foreground (`reconciler api`), or in a thread.

uvicorn is set up to leave logging alone (the access log is ours, in structlog), to speak
HTTP/1.1 with h11 only, and to run no lifespan: the app opens nothing, the caller owns
the store. `BackgroundServer` binds its socket before it starts, so port 0 gives a free
port with no race, and it is known at once; it serves tests and any process that embeds
the API.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Self

import uvicorn

if TYPE_CHECKING:
    from types import TracebackType

    from fastapi import FastAPI

START_TIMEOUT_S = 10.0


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """The settings uvicorn serves the API with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
    )


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then return.

    uvicorn stops gracefully on either signal, then raises it again for the handlers it
    found in place. These take it, so that the caller's clean-up (closing the store)
    runs and the process ends with status 0, as `reconciler serve` does.
    """
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, _frame: received.append(number))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        uvicorn.Server(uvicorn_config(app, host, port)).run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class BackgroundServer:
    """The app served on a loopback port by a thread: `with BackgroundServer(app) as s: s.url`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind the socket now; serve once entered."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self._server = uvicorn.Server(uvicorn_config(app, bound_host, bound_port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> Self:
        """Start serving; return once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._socket.close()
                msg = f"the API did not start on {self.url}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT_S)
        self._socket.close()
