"""The fault proxy of the chaos campaign, on real loopback sockets."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest
from chaos.proxy import FaultProxy

from tests.kafka_broker import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def echo_port() -> Iterator[int]:
    """Give the port of a loopback server that sends back whatever it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    port: int = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    server.close()


def _echo(connection: socket.socket) -> None:
    with connection:
        while data := connection.recv(4096):
            connection.sendall(data)


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    """Give a fault proxy in front of the echo server."""
    proxied = FaultProxy(free_port(), echo_port)
    yield proxied
    proxied.close()


def _round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
        client.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += client.recv(4096)
        return received


def test_the_proxy_forwards_bytes_both_ways(proxy: FaultProxy) -> None:
    """What a client sends through the proxy reaches the target and its answer comes back."""
    payload = bytes(range(256)) * 600  # larger than one read
    assert _round_trip(proxy.listen_port, payload) == payload


def test_an_outage_cuts_open_connections_and_refuses_new_ones_until_it_ends(
    proxy: FaultProxy,
) -> None:
    """During an outage an open connection is closed and connecting fails; then it works."""
    client = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=2)
    client.sendall(b"ping")
    assert client.recv(4) == b"ping"
    refused: list[bool] = []

    def try_during_outage() -> None:
        while proxy.outages == 0:
            time.sleep(0.001)
        try:
            socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=0.5).close()
            refused.append(False)
        except OSError:
            refused.append(True)

    prober = threading.Thread(target=try_during_outage)
    prober.start()
    assert proxy.outage(0.5) == 1
    prober.join()
    with client:
        assert client.recv(4) == b""  # closed by the proxy
    assert refused == [True]
    assert proxy.cut_connections == 1
    assert _round_trip(proxy.listen_port, b"back") == b"back"
