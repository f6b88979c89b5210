"""Provider simulators as real processes on free loopback ports, for integration tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3


class SimulatorStartError(RuntimeError):
    """The simulator process exited or never answered."""


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class Simulator:
    """A running simulator: its process, its URL, and a client bound to it."""

    process: subprocess.Popen[bytes]
    url: str
    client: httpx.Client
    log: Path

    def stats(self) -> dict[str, Any]:
        """`GET /v1/stats` as JSON."""
        response = self.client.get("/v1/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def post(
        self,
        path: str,
        body: dict[str, Any] | str,
        key: str | None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST `body` (JSON, or raw text) with `Idempotency-Key: key` unless key is None.

        `headers` are sent too (e.g. `X-Simulated-Time` to a simulator on request time).
        """
        headers = dict(headers or {})
        if key is not None:
            headers["Idempotency-Key"] = key
        if isinstance(body, str):
            headers["Content-Type"] = "application/json"
            return self.client.post(path, content=body, headers=headers)
        return self.client.post(path, json=body, headers=headers)


def _launch(kind: str, port: int, args: tuple[str, ...], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "reconciler.providers", kind, "--port", str(port), *args]
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=sink)  # noqa: S603 - our module


def _wait_until_answering(process: subprocess.Popen[bytes], url: str) -> bool:
    """True once `GET /v1/stats` answers; False if the process exited first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=1.0) as probe:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if probe.get("/v1/stats").status_code == httpx.codes.OK:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    stop_process(process)
    msg = f"simulator at {url} did not answer within {START_TIMEOUT_S} s"
    raise SimulatorStartError(msg)


def start_simulator(kind: str, *args: str, log: Path) -> Simulator:
    """Start `reconciler simulate KIND --port P ARGS...` and wait until it answers.

    A port taken between choosing and binding is retried on another free port.
    """
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        process = _launch(kind, port, args, log)
        if _wait_until_answering(process, url):
            return Simulator(process, url, httpx.Client(base_url=url, timeout=30.0), log)
        process.wait()
    msg = f"simulator {kind} {' '.join(args)} failed to start:\n{log.read_text('utf-8')}"
    raise SimulatorStartError(msg)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Ask the process to stop (SIGTERM); kill it if it will not."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_simulator(simulator: Simulator) -> None:
    """Close the client and stop the process."""
    simulator.client.close()
    stop_process(simulator.process)


@contextmanager
def running_simulator(kind: str, *args: str, log: Path) -> Iterator[Simulator]:
    """A simulator for the duration of the block."""
    simulator = start_simulator(kind, *args, log=log)
    try:
        yield simulator
    finally:
        stop_simulator(simulator)
