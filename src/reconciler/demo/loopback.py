"""A lean httpx transport for the demo's calls to the simulators on loopback.

The demo's jobs make some 40,000 HTTP calls in a run. httpx's own transport (httpcore
over h11) spends about twice the CPU per call of the standard library's `http.client`,
so the job processes use this one: `http.client` under httpx's `Client`, which the
jobs' clients take as they are. One keep-alive connection per host.

Every call gets this transport's one timeout. A connection the server closed while it
lay idle is opened again and the request sent once more; any other failure becomes the
httpx error the jobs' clients expect (a timeout, or a connection error).
"""

from __future__ import annotations

import http.client

import httpx


class LoopbackTransport(httpx.BaseTransport):
    """HTTP/1.1 over `http.client`, one keep-alive connection per (host, port)."""

    def __init__(self, timeout_s: float) -> None:
        """Give every call `timeout_s` real seconds to connect, and as long for each read."""
        self._timeout_s = timeout_s
        self._connections: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request, and read the whole response."""
        url = request.url
        address = (url.host, url.port or 80)
        body = request.read()
        headers = dict(request.headers)
        target = url.raw_path.decode("ascii")
        while True:
            reused = address in self._connections
            connection = self._connections.get(address) or http.client.HTTPConnection(
                *address, timeout=self._timeout_s
            )
            self._connections[address] = connection
            try:
                connection.request(request.method, target, body=body, headers=headers)
                response = connection.getresponse()
                content = response.read()
            except (BrokenPipeError, ConnectionResetError) as error:
                # RemoteDisconnected is a ConnectionResetError: on a reused connection the
                # server most likely closed it while idle, before it read the request.
                self._drop(address)
                if reused:
                    continue
                raise httpx.RemoteProtocolError(str(error), request=request) from error
            except TimeoutError as error:
                self._drop(address)
                raise httpx.ReadTimeout(str(error), request=request) from error
            except (OSError, http.client.HTTPException) as error:
                self._drop(address)
                raise httpx.ConnectError(str(error), request=request) from error
            return httpx.Response(response.status, headers=response.getheaders(), content=content)

    def _drop(self, address: tuple[str, int]) -> None:
        connection = self._connections.pop(address, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Close every connection."""
        for address in list(self._connections):
            self._drop(address)
