"""The provider simulators as the demo runs them: two processes on loopback, on simulated time.

`running_providers` starts `reconciler simulate issuer` and `reconciler simulate psp`
as child processes on free loopback ports, with `--clock request` (they take the time
from each request) and the demo config's faults, waits until both answer, and stops
them when the block ends, whether it ends normally, by an error or by Ctrl-C. Their
output goes to a temporary file, shown only when one fails to start.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import httpx

from reconciler.providers.config import DailyWindow, IssuerConfig, PspConfig

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import time as time_of_day
    from datetime import timedelta

    from reconciler.demo.config import DemoConfig

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 3
_POLL_S = 0.05


class ProviderStartError(RuntimeError):
    """A simulator process exited or never answered; the message holds its output."""


@dataclass(frozen=True)
class ProviderStats:
    """What the simulators say they did (`GET /v1/stats`), at the end of the day."""

    issuer_requests: int
    stamps_issued: int
    psp_requests: int
    payouts: int
    paid_out_total: int
    paid_out_by_refund: dict[str, int]
    payouts_by_refund: dict[str, int]
    """How many times the PSP paid each refund id: above 1 would be a double payment."""

    @classmethod
    def from_bodies(cls, issuer: dict[str, Any], psp: dict[str, Any]) -> ProviderStats:
        """From the two `/v1/stats` bodies."""
        return cls(
            issuer_requests=int(issuer["requests"]),
            stamps_issued=int(issuer["stamps_issued"]),
            psp_requests=int(psp["requests"]),
            payouts=int(psp["payouts"]),
            paid_out_total=int(psp["paid_out_total"]),
            paid_out_by_refund={str(k): int(v) for k, v in psp["paid_out_by_refund"].items()},
            payouts_by_refund={str(k): int(v) for k, v in psp["payouts_by_refund"].items()},
        )


@dataclass(frozen=True)
class Providers:
    """The running simulators' base URLs, and their stats on demand."""

    issuer_url: str
    psp_url: str

    def stats(self) -> ProviderStats:
        """Both simulators' `/v1/stats`."""
        bodies = []
        with httpx.Client(timeout=STOP_TIMEOUT_S, trust_env=False) as http:
            for url in (self.issuer_url, self.psp_url):
                response = http.get(f"{url}/v1/stats")
                response.raise_for_status()
                bodies.append(response.json())
        return ProviderStats.from_bodies(*bodies)


def _window(start: time_of_day, duration: timedelta) -> DailyWindow | None:
    minutes = int(duration.total_seconds()) // 60
    return DailyWindow(start=start, minutes=minutes) if minutes else None


def issuer_config(config: DemoConfig) -> IssuerConfig:
    """The demo day's stamp issuer: its outage, and its random refusals and failures."""
    return IssuerConfig(
        seed=config.seed,
        outage=_window(config.outage_start, config.outage_duration),
        error_rate=config.issuer_error_rate,
        quota_rate=config.issuer_quota_rate,
        reject_rate=config.issuer_reject_rate,
        partial_rate=config.issuer_partial_rate,
    )


def psp_config(config: DemoConfig) -> PspConfig:
    """The demo day's payment provider: blackout, failure bursts, refusals, lost answers."""
    return PspConfig(
        seed=config.seed,
        not_supported_rate=config.refund_not_supported_rate,
        blackout=_window(config.refund_blackout_start, config.refund_blackout_duration),
        error_rate=config.psp_error_rate,
        burst_seconds=config.psp_burst.total_seconds(),
        drop_after_pay_rate=config.psp_drop_after_pay_rate,
    )


def issuer_args(settings: IssuerConfig) -> list[str]:
    """`reconciler simulate issuer` options for these settings (slow answers: none)."""
    args = [
        f"--seed={settings.seed}",
        f"--error-rate={settings.error_rate}",
        f"--burst-seconds={settings.burst_seconds}",
        f"--quota-rate={settings.quota_rate}",
        f"--reject-rate={settings.reject_rate}",
        f"--partial-rate={settings.partial_rate}",
    ]
    if settings.outage is not None:
        args += [
            f"--outage-start={settings.outage.start:%H:%M}",
            f"--outage-minutes={settings.outage.minutes}",
        ]
    return args


def psp_args(settings: PspConfig) -> list[str]:
    """`reconciler simulate psp` options for these settings (slow answers, cap: none)."""
    return [
        f"--seed={settings.seed}",
        f"--not-supported-rate={settings.not_supported_rate}",
        f"--blackout={settings.blackout or 'none'}",
        f"--error-rate={settings.error_rate}",
        f"--burst-seconds={settings.burst_seconds}",
        f"--drop-after-pay-rate={settings.drop_after_pay_rate}",
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class _Simulator:
    """One simulator process, started on a free port (another one if that is taken)."""

    def __init__(self, kind: str, args: list[str], output: IO[bytes]) -> None:
        self._kind = kind
        self._args = args
        self._output = output
        self._process: subprocess.Popen[bytes] | None = None
        self._attempts = 0
        self.url = ""

    def launch(self) -> None:
        """Start the process on a fresh free port; `wait_until_answering` follows."""
        self._attempts += 1
        port = _free_port()
        self.url = f"http://{LOOPBACK}:{port}"
        command = [
            sys.executable,
            "-m",
            "reconciler.providers",
            self._kind,
            f"--host={LOOPBACK}",
            f"--port={port}",
            "--clock=request",
            *self._args,
        ]
        with _signals_deferred():
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, stdin=subprocess.DEVNULL, stdout=self._output, stderr=self._output
            )

    def wait_until_answering(self, deadline: float) -> None:
        """Return once `/v1/stats` answers; relaunch on another port if the process died."""
        with httpx.Client(timeout=1.0, trust_env=False) as probe:
            while time.monotonic() < deadline:
                assert self._process is not None  # noqa: S101 - launched first
                if self._process.poll() is not None:
                    if self._attempts >= _PORT_ATTEMPTS:
                        break
                    self.launch()  # most likely its port was taken meanwhile
                    continue
                try:
                    if probe.get(f"{self.url}/v1/stats").status_code == httpx.codes.OK:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(_POLL_S)
        self._output.seek(0)
        output = self._output.read().decode("utf-8", "replace")[-4000:]
        msg = f"the {self._kind} simulator did not start:\n{output}"
        raise ProviderStartError(msg)

    def stop(self) -> None:
        """Ask the process to end (SIGTERM); kill it if it will not."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    A Ctrl-C raised inside `Popen` after its fork would lose the child's handle, and
    with it the only way to stop that process; held back, it arrives once the handle
    is kept. Only the main thread can set handlers; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in held:
            signal.raise_signal(signum)


@contextmanager
def running_providers(config: DemoConfig) -> Iterator[Providers]:
    """The demo's stamp issuer and PSP simulators, for the duration of the block."""
    with ExitStack() as stack:
        simulators = []
        for kind, args in (
            ("issuer", issuer_args(issuer_config(config))),
            ("psp", psp_args(psp_config(config))),
        ):
            output = stack.enter_context(tempfile.TemporaryFile())
            simulator = _Simulator(kind, args, output)
            stack.callback(simulator.stop)
            simulator.launch()
            simulators.append(simulator)
        deadline = time.monotonic() + START_TIMEOUT_S
        for simulator in simulators:
            simulator.wait_until_answering(deadline)
        issuer, psp = simulators
        yield Providers(issuer.url, psp.url)
