"""`reconciler replay` on real logs: as of any moment, into a shadow, every difference named.

Each test runs on a SQLite file and on a PostgreSQL schema (`backend`). The recorded
CASN day (replay/casn-peak-500) is logged by `reconcile_file`, as the offline command
does; the expectations come from a decider fed the file's lines directly, without the
store, the pages or the cut.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.domain.accounting import Money, total_money
from reconciler.domain.decider import Decider
from reconciler.domain.events import ClockTicked
from reconciler.domain.rules import Rules
from reconciler.domain.state import State
from reconciler.ingest.validation import Rejected, parse_record
from reconciler.projections import Projector, ReadModels
from reconciler.reconcile import reconcile_file
from reconciler.replay.compare import DifferenceKind
from reconciler.replay.cutoff import AsOf
from reconciler.replay.deciders import InMemory, IntoShadow
from reconciler.replay.rederive import replay_log
from reconciler.replay.shadow import ShadowError, Target, default_shadow, open_shadow
from reconciler.replay.whatif import compare_endings
from reconciler.store import DeadLetter, NewRecord, open_store
from tests.builders import Log

if TYPE_CHECKING:
    from collections.abc import Iterator

    from reconciler.domain.events import Fact
    from reconciler.store import LogStore

SCENARIO = Path(__file__).parents[2] / "replay" / "casn-peak-500" / "events.jsonl"
RULES = Rules()
ELEVEN = datetime.fromisoformat("2024-09-04T11:00:00+07:00")


@dataclass(frozen=True)
class Backend:
    """Where the test's log lives, and how to reach it again."""

    log: Target

    def open(self, target: Target | None = None) -> LogStore:
        """A new store on the log (or another target), as another process would open it."""
        where = target or self.log
        return open_store(where.url, schema=where.schema)

    def raw(self, statement: str, *parameters: object) -> None:
        """Run one SQL statement on the log's database, behind the store's back."""
        if self.log.is_sqlite:
            path = self.log.url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as connection:
                connection.execute(statement.format(records="records"), parameters)
            return
        records = sql.Identifier(self.log.schema, "records").as_string()
        query = statement.replace("?", "%s").format(records=records)
        with psycopg.connect(self.log.url, autocommit=True) as connection:
            connection.execute(query.encode(), parameters)


ALTER = "UPDATE {records} SET payload = ? WHERE position = ?"
REMOVE = "DELETE FROM {records} WHERE position = ?"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A log holding the recorded CASN day, on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        target = Target(f"sqlite:///{tmp_path / 'log.sqlite'}", "reconciler")
    else:
        dsn: str = request.getfixturevalue("pg_dsn")
        target = Target(dsn, request.getfixturevalue("pg_schema"))
    store = open_store(target.url, schema=target.schema)
    reconcile_file(SCENARIO, RULES, store)
    store.close()
    yield Backend(target)
    if not target.is_sqlite:
        with psycopg.connect(target.url, autocommit=True) as connection:
            shadow = sql.Identifier(default_shadow(target).schema)
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(shadow))


def scenario_facts() -> list[Fact]:
    """The file's facts in order, parsed straight from its lines."""
    facts = []
    for line in SCENARIO.read_bytes().splitlines():
        fact = parse_record(line)
        assert not isinstance(fact, Rejected)
        facts.append(fact)
    return facts


def decide_directly(facts: list[Fact], until: datetime | None = None) -> tuple[Money, list[str]]:
    """Money and decision ids of one decider fed the facts, stopping at a tick past `until`."""
    decider = Decider(RULES, State())
    decided: list[str] = []
    for fact in facts:
        if until is not None and isinstance(fact, ClockTicked) and fact.at > until:
            break
        decided.extend(decision.decision_id for decision in decider.decide(fact))
    return total_money(decider.state), decided


def test_replay_of_an_honest_log_finds_every_decision_and_no_other(backend: Backend) -> None:
    """The whole log replayed: each recorded decision re-derived byte for byte, none more."""
    log = backend.open()
    result = replay_log(log, InMemory(RULES))
    expected_money, expected_ids = decide_directly(scenario_facts())
    assert result.honest
    assert result.decisions_recorded == result.decisions_rederived == len(expected_ids)
    assert result.records_read == log.last_position()
    assert result.money == expected_money
    assert result.money.balanced


@pytest.mark.parametrize("position", [1, 1234, 2500, 4000])
def test_replay_as_of_a_position_keeps_the_records_up_to_it(
    backend: Backend, position: int
) -> None:
    """A position cut rebuilds the facts up to it; their decisions match beyond the cut too."""
    log = backend.open()
    facts_before = sum(1 for record in log.read(limit=position) if record.kind == "fact")
    result = replay_log(log, InMemory(RULES), as_of=AsOf(position=position))
    expected_money, expected_ids = decide_directly(scenario_facts()[: facts_before - 0])
    assert result.last_position == position
    assert result.facts == facts_before
    assert result.honest
    assert result.money == expected_money
    assert result.decisions_rederived == len(expected_ids)


def test_replay_as_of_a_clock_time_stops_where_the_engine_clock_passed_it(
    backend: Backend,
) -> None:
    """A clock cut gives the state the engine had when its clock read that moment."""
    result = replay_log(backend.open(), InMemory(RULES), as_of=AsOf(clock=ELEVEN))
    expected_money, expected_ids = decide_directly(scenario_facts(), until=ELEVEN)
    assert result.clock == ELEVEN
    assert result.honest
    assert result.money == expected_money
    assert result.decisions_recorded == len(expected_ids)


def test_replay_into_a_shadow_rebuilds_log_and_read_models_there(backend: Backend) -> None:
    """The shadow holds the facts and re-derived decisions; its read models show the money."""
    shadow_target = default_shadow(backend.log)
    shadow = open_shadow(shadow_target, backend.log, replace=True)
    result = replay_log(backend.open(), IntoShadow(RULES, shadow), as_of=AsOf(clock=ELEVEN))
    Projector(shadow, RULES).rebuild()
    summary = ReadModels(shadow).summary()
    facts = [record for record in shadow.read() if record.kind == "fact"]
    assert result.honest
    assert len(facts) == result.facts
    assert shadow.last_position() == result.facts + result.decisions_rederived
    assert summary.clock == ELEVEN
    assert summary.totals.model_dump() == asdict(result.money)
    assert shadow.verify().ok


def test_replay_never_writes_to_the_log(backend: Backend) -> None:
    """The log's records, head hash and input positions are the same after a replay."""
    log = backend.open()
    before = (log.last_position(), log.verify().head_hash, log.positions())
    shadow = open_shadow(default_shadow(backend.log), backend.log, replace=True)
    replay_log(log, IntoShadow(RULES, shadow))
    after = (log.last_position(), log.verify().head_hash, log.positions())
    assert after == before


def test_replay_goes_on_while_a_writer_holds_the_log(backend: Backend) -> None:
    """A replay reads past an open appending transaction: it takes no lock the engine takes."""
    writer, reader = (
        backend.open(),
        open_store(backend.log.url, schema=backend.log.schema, create=False),
    )
    holding, release = threading.Event(), threading.Event()

    def append_and_wait() -> None:
        with writer.transaction() as tx:
            tx.append([NewRecord("fact", "late-fact", "ClockTicked", b"{}", "elsewhere")])
            holding.set()
            release.wait(30)
            raise AbandonedError

    def writer_thread() -> None:
        with contextlib.suppress(AbandonedError):
            append_and_wait()

    thread = threading.Thread(target=writer_thread)
    thread.start()
    assert holding.wait(10)
    try:
        result = replay_log(reader, InMemory(RULES))
    finally:
        release.set()
        thread.join()
    assert result.honest
    assert result.records_read == backend.open().last_position()


class AbandonedError(Exception):
    """Rolls the writer's transaction back."""


def test_replay_names_a_decision_altered_in_the_database(backend: Backend) -> None:
    """A decision whose stored JSON was changed is listed as changed, with the field named."""
    log = backend.open()
    victim = next(r for r in log.read(kind="decision") if r.type == "RefundCommanded")
    forged = json.loads(victim.payload) | {"amount": 1}
    backend.raw(ALTER, json.dumps(forged).encode(), victim.position)
    result = replay_log(backend.open(), InMemory(RULES))
    (difference,) = result.differences
    assert difference.kind is DifferenceKind.CHANGED
    assert difference.decision_id == victim.record_id
    assert difference.recorded_position == victim.position
    assert difference.rederived == victim.payload


def test_replay_names_a_decision_removed_from_the_database(backend: Backend) -> None:
    """A deleted decision record is one the facts lead to but the log lacks: unrecorded."""
    log = backend.open()
    victim = next(r for r in log.read(kind="decision") if r.type == "IssuanceCommanded")
    backend.raw(REMOVE, victim.position)
    (difference,) = replay_log(backend.open(), InMemory(RULES)).differences
    assert difference.kind is DifferenceKind.UNRECORDED
    assert difference.decision_id == victim.record_id


def test_replay_names_a_forged_decision_that_keeps_the_chain_intact(backend: Backend) -> None:
    """A decision appended through the store (chain intact) that no fact leads to: missing."""
    log = backend.open()
    template = next(r for r in log.read(kind="decision") if r.type == "RefundCommanded")
    forged = json.loads(template.payload) | {"decision_id": "forged-refund", "amount": 999_000}
    with log.transaction() as tx:
        tx.append(
            [
                NewRecord(
                    "decision",
                    "forged-refund",
                    "RefundCommanded",
                    json.dumps(forged).encode(),
                    template.source,
                )
            ]
        )
    assert log.verify().ok
    (difference,) = replay_log(backend.open(), InMemory(RULES)).differences
    assert difference.kind is DifferenceKind.MISSING
    assert difference.decision_id == "forged-refund"
    assert difference.rederived is None


def test_replay_names_a_fact_logged_without_its_decisions(backend: Backend) -> None:
    """A fact slipped into the log with no decisions recorded for it: they are unrecorded."""
    log = backend.open()
    first = next(r for r in log.read(kind="fact") if r.type == "OrderPlaced")
    extra = Log(ELEVEN.replace(day=6)).debit("PAY-SLIPPED", json.loads(first.payload)["order_id"])
    with log.transaction() as tx:
        payload = extra.model_dump_json().encode()
        tx.append([NewRecord("fact", extra.event_id, extra.type, payload, first.source)])
    decider = Decider(RULES, State())
    for fact in scenario_facts():
        decider.decide(fact)
    expected = {decision.decision_id for decision in decider.decide(extra)}
    differences = replay_log(backend.open(), InMemory(RULES)).differences
    assert expected
    assert {d.decision_id for d in differences} == expected
    assert {d.kind for d in differences} == {DifferenceKind.UNRECORDED}


def test_shadow_refuses_the_log_itself_and_a_filled_shadow(backend: Backend) -> None:
    """The shadow may not be the log; a filled one is refused unless replaced."""
    with pytest.raises(ShadowError, match="is the log itself"):
        open_shadow(backend.log, backend.log, replace=True)
    target = default_shadow(backend.log)
    shadow = open_shadow(target, backend.log, replace=True)
    replay_log(backend.open(), IntoShadow(RULES, shadow), as_of=AsOf(position=100))
    shadow.close()
    with pytest.raises(ShadowError, match="already holds"):
        open_shadow(target, backend.log, replace=False)
    assert open_shadow(target, backend.log, replace=True).last_position() == 0
    assert backend.open().last_position() > 100


def test_what_if_a_longer_issuance_sla_lists_the_orders_that_end_otherwise(
    backend: Backend,
) -> None:
    """Other rules beside the recorded ones: endings compared, both runs conserve money."""
    longer = RULES.model_copy(update={"issue_sla": RULES.issue_sla * 12})
    result = replay_log(backend.open(), InMemory(RULES), alongside=InMemory(longer))
    what_if = compare_endings(result.states, result.alongside_states)
    assert result.honest  # the recorded rules still explain the log
    assert what_if.changes
    assert what_if.recorded_money == result.money
    assert what_if.what_if_money.balanced
    assert what_if.recorded_money.debited == what_if.what_if_money.debited
    moved = what_if.moved
    assert moved.kept + moved.refunded + moved.refund_pending + moved.at_risk == 0
    assert result.alongside_types["IssuanceCommanded"] < result.decision_types["IssuanceCommanded"]
    same = replay_log(backend.open(), InMemory(RULES), alongside=InMemory(RULES))
    assert compare_endings(same.states, same.alongside_states).changes == []


def test_replay_command_prints_the_comparison_and_sets_its_exit_status(
    backend: Backend, tmp_path: Path
) -> None:
    """`reconciler replay`: exit 0 and no differences, then 1 naming an altered decision."""
    runner = CliRunner()
    base = ["replay", "--store", backend.log.url, "--schema", backend.log.schema]
    honest = runner.invoke(app, [*base, "--replace", "--format", "json"])
    assert honest.exit_code == 0, honest.output
    document = json.loads(honest.output)
    assert document["honest"] is True
    assert document["differences"] == []
    assert document["balanced"] is True
    assert document["shadow"] == default_shadow(backend.log).describe()
    views = ReadModels(backend.open(default_shadow(backend.log))).summary()
    assert views.totals.at_risk == document["money"]["at_risk"]

    victim = next(r for r in backend.open().read(kind="decision") if r.type == "RefundCommanded")
    backend.raw(REMOVE, victim.position)
    altered = runner.invoke(app, [*base, "--in-memory"])
    assert altered.exit_code == 1
    assert "1 decisions differ" in altered.output
    assert victim.record_id in altered.output

    rules = tmp_path / "longer.toml"
    rules.write_text("ISSUE_SLA = 3600\n")
    what_if = runner.invoke(app, [*base, "--in-memory", "--config", str(rules), "--format", "json"])
    assert what_if.exit_code == 1  # the recorded rules no longer explain the altered log
    document = json.loads(what_if.output)
    assert document["what_if"]["rules_changed"] == {"issue_sla": ["PT5M", "PT1H"]}
    assert document["what_if"]["orders"]


def test_replay_command_refuses_what_it_cannot_use(backend: Backend) -> None:
    """Exit 2 with a message for a filled shadow, a bad moment, an unknown store URL."""
    runner = CliRunner()
    base = ["replay", "--store", backend.log.url, "--schema", backend.log.schema]
    assert runner.invoke(app, [*base, "--replace", "--position", "10"]).exit_code == 0
    filled = runner.invoke(app, base)
    assert filled.exit_code == 2
    assert "--replace" in filled.output
    bad_moment = runner.invoke(app, [*base, "--in-memory", "--as-of", "yesterday"])
    assert bad_moment.exit_code == 2
    assert "--as-of" in bad_moment.output
    unknown = runner.invoke(app, ["replay", "--store", "mysql://x"])
    assert unknown.exit_code == 2
    assert "unsupported store URL" in unknown.output


def test_replay_reports_its_progress_by_log_position(backend: Backend) -> None:
    """The progress callback sees rising positions, up to the log's last one."""
    log = backend.open()
    seen: list[int] = []
    replay_log(log, InMemory(RULES), progress=seen.append)
    assert seen == sorted(seen)
    assert len(seen) >= 1
    assert seen[-1] == log.last_position()


def test_replay_command_copies_dead_letters_into_the_shadow(backend: Backend) -> None:
    """Refused input is kept in the shadow too, so its read models count it."""
    log = backend.open()
    with log.transaction() as tx:
        tx.add_dead_letters([DeadLetter("events.jsonl", "line 7", "not JSON: x", b"{oops")])
    base = ["replay", "--store", backend.log.url, "--schema", backend.log.schema]
    result = CliRunner().invoke(app, [*base, "--replace", "--format", "json"])
    assert result.exit_code == 0, result.output
    shadow = backend.open(default_shadow(backend.log))
    (kept,) = shadow.dead_letters()
    assert (kept.locator, kept.reason, kept.raw) == ("line 7", "not JSON: x", b"{oops")
    assert ReadModels(shadow).summary().dead_letters == 1
