"""A simulated CASN registration-peak day, run through the engine by `reconciler demo`.

`run_day` draws the day's orders and payments from a seed, feeds them to the engine with
the clock ticks, and passes the engine's commands to the remediation jobs (`DemoJobs`),
which call the stamp issuer and payment provider simulators (`running_providers`) over
HTTP. Everything runs in simulated time: the simulators read it from each request, so
the same seed gives the same day, whatever the wall clock says.
"""

from reconciler.demo.config import WIB, DemoConfig
from reconciler.demo.driver import DemoRun, EngineStep, Jobs, Progress, run_day, write_jsonl
from reconciler.demo.generator import GeneratedDay, Payment, generate_day
from reconciler.demo.jobs import DemoJobs
from reconciler.demo.providers import running_providers

__all__ = [
    "WIB",
    "DemoConfig",
    "DemoJobs",
    "DemoRun",
    "EngineStep",
    "GeneratedDay",
    "Jobs",
    "Payment",
    "Progress",
    "generate_day",
    "run_day",
    "running_providers",
    "write_jsonl",
]
