"""A simulated CASN registration-peak day, run through the engine by `reconciler demo`.

`run_day` draws the day's orders and payments from a seed, feeds them to the engine with
the clock ticks, and lets a simulated stamp issuer and payment provider answer the
engine's commands. Nothing here reads the wall clock or global state.
"""

from reconciler.demo.config import WIB, DemoConfig
from reconciler.demo.driver import DemoRun, EngineStep, Progress, run_day, write_jsonl
from reconciler.demo.generator import GeneratedDay, Payment, generate_day
from reconciler.demo.simulators import (
    CommandError,
    PaymentProviderSimulator,
    StampIssuerSimulator,
)

__all__ = [
    "WIB",
    "CommandError",
    "DemoConfig",
    "DemoRun",
    "EngineStep",
    "GeneratedDay",
    "Payment",
    "PaymentProviderSimulator",
    "Progress",
    "StampIssuerSimulator",
    "generate_day",
    "run_day",
    "write_jsonl",
]
