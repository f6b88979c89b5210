from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest

from reconciler.demo.loopback import LoopbackTransport

if TYPE_CHECKING:
    from collections.abc import Iterator


class Echo(BaseHTTPRequestHandler):
    """Answers a POST with its body and the header it was sent; keeps the connection open.

    With `drop_idle` set on the server, it closes each connection after answering
    without saying so, as a server does with a keep-alive connection left idle too long.
    """

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Echo the body, and the X-Simulated-Time header, as JSON-ish text."""
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = body + b"|" + self.headers.get("X-Simulated-Time", "").encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Echo", "yes")
        self.end_headers()
        self.wfile.write(answer)
        if getattr(self.server, "drop_idle", False):
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Keep the test output quiet."""


class Server(ThreadingHTTPServer):
    """The echo server, counting the connections it accepted."""

    drop_idle = False
    connections = 0

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """Count the connection, then serve it."""
        self.connections += 1
        super().process_request(request, client_address)


@pytest.fixture
def server() -> Iterator[Server]:
    """An echo server on a free loopback port, for the duration of one test."""
    httpd = Server(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def url(server: Server) -> str:
    """The server's base URL."""
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/echo"


def test_requests_and_answers_pass_through_whole_on_one_connection(server: Server) -> None:
    """Status, headers and body come back as sent, and keep-alive reuses the connection."""
    with httpx.Client(transport=LoopbackTransport(5.0)) as http:
        answers = [
            http.post(url(server), content=f"n{n}", headers={"X-Simulated-Time": "T"})
            for n in range(3)
        ]
    assert [(a.status_code, a.text, a.headers["X-Echo"]) for a in answers] == [
        (201, f"n{n}|T", "yes") for n in range(3)
    ]
    assert server.connections == 1


def test_a_connection_the_server_dropped_is_opened_again(server: Server) -> None:
    """A request on a connection the server closed while idle is sent again on a new one."""
    server.drop_idle = True
    with httpx.Client(transport=LoopbackTransport(5.0)) as http:
        answers = [http.post(url(server), content=f"n{n}") for n in range(3)]
    assert [answer.text for answer in answers] == ["n0|", "n1|", "n2|"]
    assert server.connections == 3


def test_nobody_listening_is_a_connect_error() -> None:
    """A refused connection becomes httpx's ConnectError, which the jobs treat as transient."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        httpx.Client(transport=LoopbackTransport(5.0)) as http,
        pytest.raises(httpx.ConnectError),
    ):
        http.post(f"http://127.0.0.1:{port}/", content="x")
