"""`make chaos`: the whole engine run under faults, round after round, then audited.

A round runs a demo day through every part, as the end-to-end remediation test does:
two `serve` processes in one consumer group on PostgreSQL, two `jobs run` processes,
the stamp issuer and payment provider simulators (misbehaving as configured below),
and an operator approving refund-flood incidents. The outside facts arrive with
duplicates and reordering (feed.py). Meanwhile faults.py injects every kind of fault
at seeded random moments. Once the engine is quiet, everything is stopped and
checks.py proves the invariants from what is left.

Everything runs on loopback: an embedded PostgreSQL of the campaign's own (so that it
may be restarted), a Tansu broker behind a fault proxy (proxy.py). The campaign is
bounded: `--rounds` rounds, no new round after `--minutes`. It prints a table per
round and the campaign's totals, writes them to `out/chaos/report.md`, and exits 1 if
any invariant failed in any round.

    python chaos/run.py [--rounds N] [--minutes M] [--seed S] [--orders N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Run as `python chaos/run.py` from anywhere: the rig's helpers live in the tests package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fault_support import (
    RestartablePostgres,
    drop_schema,
    published_commands,
    unique_name,
    with_application_name,
)
from tests.kafka_broker import TansuBroker, free_port
from tests.provider_support import start_simulator, stop_simulator
from tests.remediation_support import (
    E2E_RULES,
    JobsProcessSettings,
    OperatorDesk,
    jobs_process,
    logged_sources,
    outside_facts,
    read_log,
    replay_all,
    rules_environment,
    troubled_day,
    wait_quiet,
)
from tests.service_support import service_process, service_settings, wait_until

from chaos.checks import Leftovers, Verdict, audit
from chaos.crew import Crew
from chaos.faults import KINDS, Disturber, Injected, Target
from chaos.feed import ChaoticFeed, Delivery
from chaos.proxy import FaultProxy
from reconciler.bootstrap import service_topics
from reconciler.kafka_io import create_topics
from reconciler.store import PostgresLogStore

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tests.provider_support import Simulator

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
SERVICES = 2
JOBS = 2
SECONDS_PER_DEMO_HOUR = 1.5  # the ~21 h of a demo day's arrivals in about 32 s
START_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 300.0
# The providers misbehave as in the end-to-end test, a little less often: each answer
# lost or late makes the jobs ask again with the same key.
ISSUER_FAULTS = (
    *("--error-rate", "0.1", "--burst-seconds", "1"),
    *("--slow-rate", "0.03", "--slow-seconds", "1.5"),
    *("--partial-rate", "0.2", "--reject-rate", "0.03", "--quota-rate", "0.05"),
)
PSP_FAULTS = (
    *("--error-rate", "0.1", "--burst-seconds", "1"),
    *("--slow-rate", "0.03", "--slow-seconds", "1.5"),
    *("--not-supported-rate", "0.1", "--drop-after-pay-rate", "0.2", "--blackout", "none"),
)


@dataclass(frozen=True)
class Campaign:
    """How long and how hard."""

    rounds: int
    minutes: float
    seed: int
    orders: int
    faults_per_kind: int
    out: Path


@dataclass
class RoundResult:
    """What one round did and what held."""

    number: int
    seed: int
    seconds: float = 0.0
    settle_s: float = 0.0
    outside: int = 0
    logged: int = 0
    commands: int = 0
    refunds_paid: int = 0
    stamps_issued: int = 0
    delivery: Delivery = field(default_factory=Delivery)
    faults: Counter[str] = field(default_factory=Counter)
    injected: list[Injected] = field(default_factory=list)
    absorbed: Counter[str] = field(default_factory=Counter)  # troubles the processes logged
    fault_failures: list[str] = field(default_factory=list)
    unplanned_exits: dict[str, list[int]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None

    @property
    def held(self) -> bool:
        """Every invariant held, and the round ran to its end."""
        return self.error is None and all(v.held for v in self.verdicts) and bool(self.verdicts)


@dataclass(frozen=True)
class Stage:
    """The services every round shares: PostgreSQL, and Kafka behind the fault proxy."""

    postgres: RestartablePostgres
    proxy: FaultProxy
    bootstrap: str  # the proxy's address: every client goes through it


@contextmanager
def stage() -> Iterator[Stage]:
    """An embedded PostgreSQL and a Tansu broker behind a fault proxy, all on loopback."""
    with ExitStack() as stack:
        # A short path of its own: the server's Unix socket lives beside its data.
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-pg-")))
        postgres = RestartablePostgres(folder)
        stack.callback(postgres.close)
        proxy_port = free_port()
        broker = TansuBroker(advertised_port=proxy_port)
        broker.start()
        stack.callback(broker.stop)
        proxy = FaultProxy(proxy_port, broker.port)
        stack.callback(proxy.close)
        yield Stage(postgres, proxy, f"127.0.0.1:{proxy_port}")


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """These environment variables, for the processes started meanwhile."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- one round ---------------------------------------------------------------------------


@dataclass
class Round:
    """One round's moving parts."""

    stage: Stage
    folder: Path
    schema: str
    topic: str
    crew: Crew = field(default_factory=Crew)
    application_names: list[str] = field(default_factory=list)
    outside: set[str] = field(default_factory=set)  # the event_ids of the day's outside facts
    commands_topic: str = ""  # the services' commands topic, once they are set up


def run_round(stage_: Stage, number: int, campaign: Campaign) -> RoundResult:
    """Run one demo day under faults until the engine is quiet; audit what it left."""
    seed = campaign.seed + number
    result = RoundResult(number, seed)
    folder = campaign.out / f"round-{number}"
    folder.mkdir(parents=True, exist_ok=True)
    here = Round(stage_, folder, unique_name("chaos_"), unique_name("chaos-"))
    started = time.monotonic()
    simulators: list[Simulator] = []
    try:
        env = {"PYTHONUNBUFFERED": "1", **rules_environment(E2E_RULES)}
        with environment(env):
            simulators += [
                start_simulator(
                    "issuer", "--seed", str(seed), *ISSUER_FAULTS, log=folder / "issuer.log"
                ),
                start_simulator(
                    "psp", "--seed", str(seed + 1), *PSP_FAULTS, log=folder / "psp.log"
                ),
            ]
            _start_crew(here, simulators[0].url, simulators[1].url)
            _wait_serving(here)
            _disturb_and_settle(here, campaign, seed, result, simulators)
        issuer, psp = (simulator.stats() for simulator in simulators)
        here.crew.stop()
        result.unplanned_exits = here.crew.unplanned_exits()
        result.absorbed = _troubles(here.crew.logs())
        left = _leftovers(here, result, psp, issuer)
        exits = result.unplanned_exits
        result.verdicts = [
            *audit(left),
            Verdict(
                "no process exited by itself",
                not exits,
                ", ".join(f"{name} exited with {codes}" for name, codes in exits.items())
                or f"{SERVICES} services and {JOBS} jobs ran until stopped",
            ),
        ]
    except Exception as error:  # noqa: BLE001 - a round that breaks is reported, not hidden
        result.error = f"{type(error).__name__}: {error}"
    finally:
        here.crew.stop()
        for simulator in simulators:
            stop_simulator(simulator)
        try:
            drop_schema(stage_.postgres.dsn, here.schema)
        except Exception as error:  # noqa: BLE001 - clean-up only
            print(f"  (schema {here.schema} not dropped: {error})")
        result.seconds = time.monotonic() - started
    return result


def _troubles(logs: Sequence[Path]) -> Counter[str]:
    """How often the processes logged each kind of trouble they met and rode out."""
    seen: Counter[str] = Counter()
    for log in logs:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                logged = json.loads(line)
            except ValueError:
                continue
            if isinstance(logged, dict) and logged.get("level") in {"warning", "error"}:
                seen[str(logged.get("event"))] += 1
    return seen


def _start_crew(here: Round, issuer_url: str, psp_url: str) -> None:
    """Two services in one group, two jobs in another: the topics made first."""
    settings = []
    for number in range(SERVICES):
        name = unique_name(f"chaos-serve-{number}-")
        here.application_names.append(name)
        settings.append(
            service_settings(
                with_application_name(here.stage.postgres.dsn, name),
                here.schema,
                here.stage.bootstrap,
                here.topic,
                input_partitions=PARTITIONS,
                ticker=True,
                tick_interval_s=1.0,
                retry_max_s=1.0,
            )
        )
    first = settings[0]
    here.commands_topic = first.commands_topic
    create_topics(here.stage.bootstrap, service_topics(first))
    for number, each in enumerate(settings):
        log = here.folder / f"serve-{number}.log"
        here.crew.add(f"serve-{number}", partial(service_process, each, log), log)
    jobs = JobsProcessSettings(
        here.stage.bootstrap,
        first.commands_topic,
        here.topic,
        issuer_url,
        psp_url,
        here.topic + ".jobs",
    )
    for number in range(JOBS):
        log = here.folder / f"jobs-{number}.log"
        here.crew.add(f"jobs-{number}", partial(jobs_process, jobs, log), log)


def _wait_serving(here: Round) -> None:
    """Wait until every partition has its first tick logged."""
    store = PostgresLogStore(here.stage.postgres.dsn, schema=here.schema)
    wanted = {f"{here.topic}:{number}" for number in range(PARTITIONS)}
    try:
        wait_until(
            lambda: wanted <= logged_sources(store),
            START_TIMEOUT_S,
            f"a tick in every partition (see {here.folder})",
        )
    finally:
        store.close()


def _disturb_and_settle(
    here: Round,
    campaign: Campaign,
    seed: int,
    result: RoundResult,
    simulators: Sequence[Simulator],
) -> None:
    """Feed the day and inject the faults at once; then wait for the engine to be quiet."""
    rng = random.Random(seed)
    day = troubled_day(campaign.orders, seed)
    facts = outside_facts(day, SECONDS_PER_DEMO_HOUR)
    here.outside = {fact.event_id for fact in facts}
    result.outside = len(here.outside)
    feed = ChaoticFeed(here.stage.bootstrap, here.topic, facts, random.Random(seed + 2))
    disturber = Disturber(
        Target(
            here.crew,
            here.stage.proxy,
            here.stage.postgres,
            here.application_names,
            here.stage.bootstrap,
            here.topic,
            PARTITIONS,
        ),
        rng,
        rounds=campaign.faults_per_kind,
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=feed.run, args=(stop,), name="feed"),
        threading.Thread(target=disturber.run, args=(stop,), name="faults"),
    ]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            here.crew.revive()
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    result.delivery = feed.delivery
    result.faults = disturber.counts()
    result.injected = list(disturber.injected)
    with (here.folder / "faults.log").open("w", encoding="utf-8") as faults_log:
        for fault in disturber.injected:
            faults_log.write(f"{fault.at_s:7.2f} s  {fault.kind:<17} {fault.detail}\n")
    result.fault_failures = disturber.failures
    settle_started = time.monotonic()
    _wait_quiet(here, simulators[0])
    result.settle_s = time.monotonic() - settle_started


def _wait_quiet(here: Round, issuer: Simulator) -> None:
    """Wait until the engine is quiet, approving each refund-flood incident seen open."""
    store = PostgresLogStore(here.stage.postgres.dsn, schema=here.schema)
    desk = OperatorDesk(
        here.stage.postgres.dsn,
        here.schema,
        here.stage.bootstrap,
        E2E_RULES,
        here.folder / "operator.log",
    )
    try:
        wait_quiet(
            store,
            here.outside,
            lambda: issuer.stats()["issues_by_key"],
            desk,
            timeout=SETTLE_TIMEOUT_S,
            each_poll=here.crew.revive,
            logs=here.folder,
        )
    finally:
        store.close()


def _leftovers(
    here: Round, result: RoundResult, psp: dict[str, Any], issuer: dict[str, Any]
) -> Leftovers:
    """Read back what the round left, every process stopped."""
    store = PostgresLogStore(here.stage.postgres.dsn, schema=here.schema)
    try:
        log = read_log(store)
        verified = store.verify()
        dead_letters = len(store.dead_letters())
    finally:
        store.close()
    replays = replay_all(log, E2E_RULES)
    published = published_commands(here.stage.bootstrap, here.commands_topic, PARTITIONS)
    result.logged = sum(len(records) for records in log.values())
    result.commands = sum(len(r.commands) for r in replays.values())
    result.refunds_paid = len(psp["paid_out_by_refund"])
    result.stamps_issued = issuer["stamps_issued"]
    return Leftovers(
        log=log,
        replays=replays,
        outside=here.outside,
        published=published,
        psp=psp,
        issuer=issuer,
        chain_ok=verified.ok,
        chain_detail=verified.detail,
        dead_letters=dead_letters,
    )


# -- the report --------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


ROUND_HEADER = (
    "round",
    "outside facts",
    "sent twice",
    "same-order pairs reordered",
    "waves re-sent",
    "faults",
    "settle s",
    "records logged",
    "commands",
    "refunds paid",
    "stamps issued",
    "invariants held",
)


def _round_row(r: RoundResult) -> list[object]:
    verdicts = f"{sum(v.held for v in r.verdicts)}/{len(r.verdicts)}" if r.verdicts else "-"
    return [
        r.number,
        f"{r.outside:,}",
        f"{r.delivery.duplicates:,}",
        f"{r.delivery.out_of_order:,}",
        r.delivery.resent_waves,
        sum(r.faults.values()),
        f"{r.settle_s:.0f}",
        f"{r.logged:,}",
        f"{r.commands:,}",
        f"{r.refunds_paid:,}",
        f"{r.stamps_issued:,}",
        verdicts,
    ]


def _fault_row(kind: str, results: Sequence[RoundResult], failed: int) -> list[object]:
    faults = [fault for r in results for fault in r.injected if fault.kind == kind]
    cut = sum(fault.cut for fault in faults)
    down = sum(fault.down_s for fault in faults)
    return [kind, len(faults), cut or "-", f"{down:.1f}" if down else "-", failed]


def _problems(results: Sequence[RoundResult]) -> list[str]:
    return [
        *(f"round {r.number}: {r.error}" for r in results if r.error),
        *(f"round {r.number}: {f}" for r in results for f in r.fault_failures),
        *(
            f"round {r.number}: {name} exited by itself with {codes}"
            for r in results
            for name, codes in r.unplanned_exits.items()
        ),
        *(
            f"round {r.number}: {v.name} FAILED: {v.detail}"
            for r in results
            for v in r.verdicts
            if not v.held
        ),
    ]


def report(campaign: Campaign, results: Sequence[RoundResult], elapsed_s: float) -> str:
    """The campaign's tables, as Markdown (readable as printed, too)."""
    held = sum(1 for r in results if r.held)
    failures = Counter(f.split(" ", 1)[0] for r in results for f in r.fault_failures)
    absorbed = sum((r.absorbed for r in results), Counter[str]())
    names = list(dict.fromkeys(v.name for r in results for v in r.verdicts))
    invariants = []
    for name in names:
        verdicts = [v for r in results for v in r.verdicts if v.name == name]
        invariants.append(
            (name, f"{sum(v.held for v in verdicts)}/{len(results)}", verdicts[-1].detail)
        )
    lines = [
        f"# Fault campaign: {held} of {len(results)} rounds held every invariant",
        "",
        (
            f"Seed {campaign.seed}, {campaign.orders} orders a round,"
            f" {campaign.faults_per_kind} faults of each kind a round, {elapsed_s / 60:.1f} min."
        ),
        "",
        "## Rounds",
        "",
        *_table(ROUND_HEADER, [_round_row(r) for r in results]),
        "",
        "## Faults injected",
        "",
        *_table(
            ("fault", "injected", "sessions or connections cut", "unreachable s", "failed"),
            [_fault_row(kind, results, failures[kind]) for kind in KINDS],
        ),
        "",
        "Warnings and errors the processes logged, and rode out:",
        "",
        *_table(("logged", "times"), sorted(absorbed.items())),
        "",
        "## Invariants",
        "",
        *_table(("invariant", "rounds held", "last round's evidence"), invariants),
        "",
        "## Problems",
        "",
        *([f"- {problem}" for problem in _problems(results)] or ["None."]),
    ]
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str]) -> Campaign:
    """The campaign the command line asks for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="rounds to run (default 5)")
    parser.add_argument("--minutes", type=float, default=20.0, help="no new round after this")
    parser.add_argument("--seed", type=int, default=20_240_904, help="seed of round 1")
    parser.add_argument("--orders", type=int, default=600, help="orders in a round's day")
    parser.add_argument("--faults-per-kind", type=int, default=3, help="of each kind, a round")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "chaos", help="report folder")
    args = parser.parse_args(argv)
    return Campaign(
        args.rounds, args.minutes, args.seed, args.orders, args.faults_per_kind, args.out
    )


def campaign_run(campaign: Campaign) -> list[RoundResult]:
    """Every round that fits the time, each printed as it ends."""
    campaign.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[RoundResult] = []
    with stage() as stage_:
        for number in range(1, campaign.rounds + 1):
            if time.monotonic() - started > campaign.minutes * 60:
                print(f"time is up: {len(results)} rounds run")
                break
            print(
                f"round {number}: running (logs in {campaign.out / f'round-{number}'})", flush=True
            )
            result = run_round(stage_, number, campaign)
            state = "held" if result.held else "FAILED"
            print(f"round {number}: {state} in {result.seconds:.0f} s", flush=True)
            results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the campaign; 0 if every round held every invariant."""
    campaign = parse(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    results = campaign_run(campaign)
    text = report(campaign, results, time.monotonic() - started)
    (campaign.out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if results and all(r.held for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
