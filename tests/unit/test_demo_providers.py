from __future__ import annotations

import signal
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from reconciler.demo import DemoConfig
from reconciler.demo.providers import (
    _signals_deferred,
    issuer_args,
    issuer_config,
    psp_args,
    psp_config,
)
from reconciler.providers import cli
from reconciler.providers.clock import RequestClock

if TYPE_CHECKING:
    from pydantic import BaseModel

    from reconciler.providers.clock import Clock


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `reconciler simulate` would serve (its config and clock), without serving it."""
    seen: dict[str, Any] = {}

    def app(config: BaseModel, clock: Clock, state: object) -> str:
        seen.update(config=config, clock=clock, state=state)
        return "app"

    monkeypatch.setattr(cli, "create_issuer_app", app)
    monkeypatch.setattr(cli, "create_psp_app", app)
    monkeypatch.setattr(cli, "_serve", lambda *_args: None)
    return seen


@pytest.mark.parametrize(
    "config",
    [
        DemoConfig(),
        DemoConfig(
            seed=3,
            outage_duration=timedelta(0),
            refund_blackout_duration=timedelta(0),
            psp_burst=timedelta(0),
            issuer_partial_rate=0.5,
        ),
    ],
    ids=["default", "no-windows"],
)
def test_simulators_start_with_the_faults_the_demo_config_describes(
    started: dict[str, Any], config: DemoConfig
) -> None:
    """The command lines the demo builds give each simulator exactly the demo's settings."""
    runner = CliRunner()
    for kind, args, expected in (
        ("issuer", issuer_args(issuer_config(config)), issuer_config(config)),
        ("psp", psp_args(psp_config(config)), psp_config(config)),
    ):
        result = runner.invoke(cli.simulate_app, [kind, "--port=1", "--clock=request", *args])
        assert result.exit_code == 0, result.output
        assert started["config"] == expected
        assert isinstance(started["clock"], RequestClock)


def test_default_day_has_an_issuer_outage_and_a_refund_blackout() -> None:
    """The default demo config turns the simulators' time windows on, in WIB."""
    config = DemoConfig()
    outage = issuer_config(config).outage
    assert outage is not None
    assert str(outage) == "09:50-11:50"
    assert str(psp_config(config).blackout) == "23:00-00:30"


def test_ctrl_c_while_a_simulator_spawns_arrives_once_its_handle_is_kept() -> None:
    """SIGINT inside the spawn block is held to its end, then raised; the old handler is back."""
    before = signal.getsignal(signal.SIGINT)
    steps: list[str] = []

    def spawn() -> None:
        with _signals_deferred():
            signal.raise_signal(signal.SIGINT)
            steps.append("handle kept")

    with pytest.raises(KeyboardInterrupt):
        spawn()
    assert steps == ["handle kept"]
    assert signal.getsignal(signal.SIGINT) is before
