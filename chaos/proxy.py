"""A loopback TCP proxy that can cut every connection and refuse new ones for a while.

Kafka clients reach the broker only through it (the broker advertises the proxy's port),
so an outage looks to them as a broker restart does: open connections drop at once,
and connecting fails until the broker is back. The broker keeps its data, as a real
Kafka keeps its log across a restart (Tansu here stores in memory, so restarting its
process would wipe the topics instead).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time

HOST = "127.0.0.1"
CHUNK = 65_536


class FaultProxy:
    """Forwards `listen_port` to `target_port` on loopback, one thread for all sockets."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        """Listen at once; forward each accepted connection to the target."""
        self.listen_port = listen_port
        self.target_port = target_port
        self.outages = 0
        self.cut_connections = 0
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._listener: socket.socket | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = False
        self._open_listener()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    def outage(self, seconds: float) -> int:
        """Cut every connection, refuse new ones for `seconds`, then accept again; cuts."""
        with self._lock:
            self._close_listener()
            cut = self._cut_all()
            self.cut_connections += cut
            self.outages += 1  # counted once the door is shut
        self._wake()
        time.sleep(seconds)
        with self._lock:
            self._open_listener()
        self._wake()
        return cut

    def close(self) -> None:
        """Stop forwarding and close every socket."""
        with self._lock:
            self._stopping = True
            self._close_listener()
            self._cut_all()
        self._wake()
        self._thread.join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=1.0):
                sock = key.fileobj
                if not isinstance(sock, socket.socket):  # pragma: no cover - sockets only
                    continue
                with self._lock:
                    if sock is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(CHUNK)
                    elif sock is self._listener:
                        self._accept(sock)
                    elif sock in self._pairs:
                        self._forward(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection((HOST, self.target_port), timeout=2.0)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ)
        self._pairs[client] = upstream
        self._pairs[upstream] = client

    def _forward(self, source: socket.socket) -> None:
        target = self._pairs[source]
        try:
            data = source.recv(CHUNK)
            if data:
                target.sendall(data)
                return
        except OSError:
            pass
        self._drop(source)

    # -- sockets -----------------------------------------------------------------------

    def _open_listener(self) -> None:
        if self._stopping or self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.listen_port))
        listener.listen(64)
        self._selector.register(listener, selectors.EVENT_READ)
        self._listener = listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _cut_all(self) -> int:
        clients = len(self._pairs) // 2
        for sock in list(self._pairs):
            self._drop(sock)
        return clients

    def _drop(self, sock: socket.socket) -> None:
        other = self._pairs.pop(sock, None)
        for each in (sock, other):
            if each is None:
                continue
            self._pairs.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
