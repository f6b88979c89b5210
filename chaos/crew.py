"""The processes a round runs (services, jobs), each restartable by name.

A process SIGKILLed by the campaign is started again at once, as a supervisor
(systemd, Kubernetes) would. A process that exits by itself is also started again, but
counted: the campaign reports it, since nothing it does should make one exit.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.provider_support import stop_process

if TYPE_CHECKING:
    from pathlib import Path

Start = Callable[[], subprocess.Popen[bytes]]


@dataclass
class Member:
    """One named process: how to start it, its log, and the running one."""

    start: Start
    log: Path
    process: subprocess.Popen[bytes] | None = None
    unplanned_exits: list[int] = field(default_factory=list)


class Crew:
    """Named processes, started, killed and restarted under one lock."""

    def __init__(self) -> None:
        """No process yet."""
        self._members: dict[str, Member] = {}
        self._lock = threading.Lock()

    def add(self, name: str, start: Start, log: Path) -> None:
        """Start a process under `name`."""
        with self._lock:
            member = self._members[name] = Member(start, log)
            member.process = start()

    def names(self, prefix: str) -> list[str]:
        """The names starting with `prefix`, sorted."""
        return sorted(name for name in self._members if name.startswith(prefix))

    def kill(self, name: str) -> None:
        """SIGKILL the process (no clean-up of any kind) and start it again at once."""
        with self._lock:
            member = self._members[name]
            if member.process is None:  # stopped: the round is over
                return
            if member.process.poll() is not None:
                member.unplanned_exits.append(member.process.returncode)
            else:
                member.process.send_signal(signal.SIGKILL)
                member.process.wait(timeout=30)
            member.process = member.start()

    def revive(self) -> list[str]:
        """Start again every process that exited by itself; their names."""
        revived: list[str] = []
        with self._lock:
            for name, member in self._members.items():
                if member.process is not None and member.process.poll() is not None:
                    member.unplanned_exits.append(member.process.returncode)
                    member.process = member.start()
                    revived.append(name)
        return revived

    def stop(self) -> None:
        """Stop every process as an operator would (SIGTERM, then SIGKILL if it lingers).

        A process found already exited is noted as an unplanned exit. Stopped processes
        are not started again.
        """
        with self._lock:
            for member in self._members.values():
                if member.process is None:
                    continue
                if member.process.poll() is not None:
                    member.unplanned_exits.append(member.process.returncode)
                else:
                    stop_process(member.process)
                member.process = None

    def logs(self) -> list[Path]:
        """Every process's log file."""
        return [member.log for member in self._members.values()]

    def unplanned_exits(self) -> dict[str, list[int]]:
        """The exit statuses of processes that exited by themselves, by name."""
        return {n: list(m.unplanned_exits) for n, m in self._members.items() if m.unplanned_exits}
