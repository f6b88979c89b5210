"""`reconciler demo`: the simulated day through the real engine, jobs and provider simulators.

The engine runs on the embedded store; its commands go through the real remediation
jobs to the stamp issuer and payment provider simulators, started as processes for the
run and stopped after it (also on an error or Ctrl-C). Writes what an auditor needs to
check the run again: the event log as JSONL (for `reconciler reconcile`), the SQLite log
with its hash chain, and the report. The outcome also holds what the simulators say they
issued and paid out, to set beside the engine's figures.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.demo.driver import DemoRun, run_day, write_jsonl
from reconciler.demo.jobs import DemoJobs
from reconciler.demo.providers import running_providers
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.report import build_report
from reconciler.store import SQLiteLogStore

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from reconciler.demo.config import DemoConfig
    from reconciler.demo.driver import Progress
    from reconciler.demo.jobs import JobStats
    from reconciler.demo.providers import ProviderStats
    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.events import Fact
    from reconciler.domain.rules import Rules

EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.sqlite"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class DemoOutcome:
    """The simulated day, the engine's report on it, and what the jobs and providers did."""

    run: DemoRun
    report: dict[str, Any]
    jobs: JobStats
    providers: ProviderStats
    events_path: Path
    log_path: Path
    report_path: Path


def run_demo(
    config: DemoConfig, rules: Rules, out: Path, progress: Progress | None = None
) -> DemoOutcome:
    """Run the day through an engine on a fresh SQLite log in `out`, and write the files.

    The engine's commands go through the jobs to provider simulators started for the run.
    """
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE
    # The log of an earlier day, and the replay shadow derived from it (log.replay.sqlite).
    for stale in [*out.glob(LOG_FILE + "*"), *out.glob("log.replay.sqlite*")]:
        stale.unlink()
    store = SQLiteLogStore(log_path)
    store.create_tables()
    engine = Engine(rules, store)
    decisions: list[AnyDecision] = []
    line = 0

    def engine_step(facts: Sequence[Fact]) -> list[dict[str, Any]]:
        nonlocal line
        records = []
        for fact in facts:
            line += 1  # the fact's line in the JSONL written below
            records.append(InputRecord.from_fact(EVENTS_FILE, line, fact))
        taken = engine.process(records).decisions
        decisions.extend(taken)
        return [command for decision in taken if (command := decision.command()) is not None]

    with ExitStack() as stack:
        stack.callback(store.close)
        providers = stack.enter_context(running_providers(config))
        jobs = DemoJobs(config, providers.issuer_url, providers.psp_url)
        stack.callback(jobs.close)
        run = run_day(config, engine_step, jobs, progress)
        provider_stats = providers.stats()
    events_path = out / EVENTS_FILE
    write_jsonl(run.facts, events_path)
    report = build_report(engine.state(EVENTS_FILE), decisions, [])
    report_path = out / REPORT_FILE
    report_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return DemoOutcome(
        run, report, jobs.stats(), provider_stats, events_path, log_path, report_path
    )
