"""The API over a real SQLite log, through loopback HTTP: open cases and operator actions.

The log holds two shards. `refunds.jsonl` has three duplicate debits whose refunds the
bank refused for good (cases `P2/`, `P4/` and `P6/REFUND_FAILED`, Rp 12,500 each);
`flood.jsonl` has four wrong-amount debits at one tick under a flood limit of two, so
two refunds are held under the incident `Q3/AMOUNT_MISMATCH/REFUND_FLOOD`.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from reconciler.api import ApiSettings, BackgroundServer, TokenSpec, create_api
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.kafka_io import TopicPartition
from reconciler.kafka_io._kafka import KafkaConsumer
from reconciler.store import SQLiteLogStore, open_store
from tests.builders import Log

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from reconciler.domain.events import Fact

RULES = Rules(refund_flood_limit=2)
VIEWER_TOKEN = "viewer-token-0123456789"  # noqa: S105 - test tokens
OPERATOR_TOKEN = "operator-token-0123456789"  # noqa: S105
TOKENS = [
    TokenSpec.model_validate({"name": "vera", "role": "viewer", "token": VIEWER_TOKEN}),
    TokenSpec.model_validate({"name": "siti", "role": "operator", "token": OPERATOR_TOKEN}),
]
AS_VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
CASES = ["P2/REFUND_FAILED", "P4/REFUND_FAILED", "P6/REFUND_FAILED"]
INCIDENT = "Q3/AMOUNT_MISMATCH/REFUND_FLOOD"


def failed_refunds() -> list[Fact]:
    """Three orders debited twice; each duplicate's refund fails for good, 700 s apart."""
    log = Log()
    log.tick()
    for n in (1, 2, 3):
        payment, duplicate = f"P{2 * n - 1}", f"P{2 * n}"
        log.order(f"A{n}")
        log.debit(payment, f"A{n}")
        log.debit(duplicate, f"A{n}")
        log.refund_failed(f"{duplicate}/DUPLICATE_DEBIT", retryable=False)
        log.stamps(f"A{n}", f"S{n}")
        log.tick(700)
    return log.facts


def refund_flood() -> list[Fact]:
    """Four wrong-amount debits at one tick: under a limit of two, two refunds are held."""
    log = Log()
    log.tick()
    for n in range(1, 5):
        log.order(f"F{n}")
        log.debit(f"Q{n}", f"F{n}", amount=5_000)
    log.tick(60)
    return log.facts


def write_log(url: str, shards: dict[str, list[Fact]], rules: Rules = RULES) -> None:
    """Reconcile each shard's facts into the log at `url`, as `reconcile --store` would."""
    store = open_store(url)
    try:
        engine = Engine(rules, store)
        for source, facts in shards.items():
            renamed = [f.model_copy(update={"event_id": f"{source}/{f.event_id}"}) for f in facts]
            engine.process([InputRecord.from_fact(source, n, f) for n, f in enumerate(renamed)])
    finally:
        store.close()


def seeded_log(directory: Path) -> str:
    """The SQLite URL of a log with the three failed refunds and the refund flood."""
    url = f"sqlite:///{directory / 'log.sqlite'}"
    write_log(url, {"refunds.jsonl": failed_refunds(), "flood.jsonl": refund_flood()})
    return url


def decisions_in(url: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Every decision in the SQLite log (of one type, if given), decoded."""
    store = SQLiteLogStore(url.removeprefix("sqlite:///"))
    try:
        decoded = [json.loads(r.payload) for r in store.read(kind="decision")]
    finally:
        store.close()
    return [d for d in decoded if kind is None or d["type"] == kind]


def serving(url: str, kafka_bootstrap: str | None = None) -> Iterator[httpx.Client]:
    """A client of the API served over the log at `url` on a loopback port."""
    store = open_store(url)
    app = create_api(ApiSettings(tokens=TOKENS), store, RULES, kafka_bootstrap=kafka_bootstrap)
    try:
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
            yield client
    finally:
        store.close()


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    """The seeded log, in a fresh SQLite file."""
    return seeded_log(tmp_path)


@pytest.fixture
def api(log_url: str) -> Iterator[httpx.Client]:
    """A client of the API over the seeded log."""
    yield from serving(log_url)


def resolve(api: httpx.Client, escalation_id: str, **body: str) -> httpx.Response:
    """POST a resolution as the operator."""
    path = f"/api/v1/escalations/{escalation_id}/resolve"
    return api.post(path, json={"note": "checked", **body}, headers=AS_OPERATOR)


def test_open_cases_lists_every_shard_oldest_first(api: httpx.Client) -> None:
    """A viewer sees each open escalation with its money, clock time and shard."""
    response = api.get("/api/v1/cases/open", headers=AS_VIEWER)
    assert response.status_code == 200
    page = response.json()
    assert [case["escalation_id"] for case in page["items"]] == [*CASES, INCIDENT]
    assert page["items"][0] == {
        "escalation_id": "P2/REFUND_FAILED",
        "reason": "REFUND_FAILED",
        "order_id": "A1",
        "amount": 12_500,
        "opened_at": "2024-09-04T09:00:00+07:00",
        "source": "refunds.jsonl",
    }
    assert page["next_cursor"] is None


def test_open_cases_come_a_page_at_a_time(api: httpx.Client) -> None:
    """`limit` cuts pages; each page's `next_cursor` gives the next, null on the last."""
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 3}
    pages = 0
    while True:
        page = api.get("/api/v1/cases/open", params=params, headers=AS_VIEWER).json()
        pages += 1
        seen.extend(case["escalation_id"] for case in page["items"])
        if page["next_cursor"] is None:
            break
        params = {"limit": 3, "cursor": page["next_cursor"]}
    assert (pages, seen) == (2, [*CASES, INCIDENT])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"reason": "REFUND_FLOOD"}, [INCIDENT]),
        ({"reason": "REFUND_FAILED", "limit": 2}, CASES[:2]),
        ({"source": "refunds.jsonl"}, CASES),
        ({"reason": "DOUBLE_REMEDY"}, []),
    ],
)
def test_open_cases_filter_by_reason_and_shard(
    api: httpx.Client, params: dict[str, str | int], expected: list[str]
) -> None:
    """`reason` and `source` keep only the cases that match."""
    page = api.get("/api/v1/cases/open", params=params, headers=AS_VIEWER).json()
    assert [case["escalation_id"] for case in page["items"]] == expected


@pytest.mark.parametrize(
    "escalation_id", ["P2/REFUND_FAILED", "P2%2FREFUND_FAILED"], ids=["slashes", "encoded"]
)
def test_resolve_appends_the_fact_and_the_engine_closes_the_case(
    api: httpx.Client, log_url: str, escalation_id: str
) -> None:
    """An id with its `/` as they are or as %2F names the case; the token names the operator."""
    response = resolve(api, escalation_id, outcome="REFUNDED_OUTSIDE", reference="BCA-17")
    assert response.status_code == 200, response.text
    taken = response.json()
    assert taken["fact"]["type"] == "EscalationResolved"
    assert (taken["fact"]["escalation_id"], taken["fact"]["operator"]) == (
        "P2/REFUND_FAILED",
        "siti",
    )
    assert (taken["source"], taken["delivered_to_kafka"]) == ("refunds.jsonl", False)
    assert [d["type"] for d in taken["decisions"]] == ["CaseResolved"]
    resolved = decisions_in(log_url, "CaseResolved")
    assert [(d["escalation_id"], d["outcome"], d["operator"]) for d in resolved] == [
        ("P2/REFUND_FAILED", "REFUNDED_OUTSIDE", "siti")
    ]
    still_open = api.get("/api/v1/cases/open", headers=AS_VIEWER).json()["items"]
    assert [case["escalation_id"] for case in still_open] == [*CASES[1:], INCIDENT]


def test_retry_refund_commands_the_refund_again(api: httpx.Client, log_url: str) -> None:
    """RETRY_REFUND closes the case and commands the refused refund once more."""
    response = resolve(api, "P4/REFUND_FAILED", outcome="RETRY_REFUND")
    assert response.status_code == 200, response.text
    types = [d["type"] for d in response.json()["decisions"]]
    assert "RefundCommanded" in types
    assert "CaseResolved" in types
    retried = [d for d in decisions_in(log_url, "RefundCommanded") if d["payment_id"] == "P4"]
    assert [d["attempt"] for d in retried] == [1, 2]


def test_an_outcome_the_engine_refuses_is_409_and_writes_nothing(
    api: httpx.Client, log_url: str
) -> None:
    """Closing a failed refund as NO_MONEY_AT_STAKE is refused with the engine's reason."""
    before = decisions_in(log_url)
    response = resolve(api, "P2/REFUND_FAILED", outcome="NO_MONEY_AT_STAKE")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "refused"
    assert "Rp 12500 is still at stake in this case" in error["message"]
    assert decisions_in(log_url) == before


def test_an_unknown_escalation_is_404(api: httpx.Client) -> None:
    """An id no open escalation has is 404 `escalation_not_found`."""
    response = resolve(api, "P9/REFUND_FAILED", outcome="NO_MONEY_AT_STAKE")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "escalation_not_found",
        "message": "no open escalation 'P9/REFUND_FAILED'",
        "details": None,
    }


def test_an_incident_is_not_resolved_and_a_case_not_approved(api: httpx.Client) -> None:
    """Resolving the flood incident, or approving a plain case, is 409 with the reason."""
    wrong_way = resolve(api, INCIDENT, outcome="NO_MONEY_AT_STAKE")
    assert wrong_way.status_code == 409
    assert "is a REFUND_FLOOD escalation, not a case" in wrong_way.json()["error"]["message"]
    approved = api.post(
        "/api/v1/incidents/P2/REFUND_FAILED/approve", json={"note": "x"}, headers=AS_OPERATOR
    )
    assert approved.status_code == 409
    assert "not a refund-flood incident" in approved.json()["error"]["message"]


def test_approve_commands_the_held_refunds(api: httpx.Client, log_url: str) -> None:
    """Approving the incident closes it and commands the two held refunds."""
    path = f"/api/v1/incidents/{INCIDENT}/approve"
    response = api.post(path, json={"note": "issuer outage confirmed"}, headers=AS_OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json()["fact"]["type"] == "HeldRefundsApproved"
    commanded = [d["payment_id"] for d in decisions_in(log_url, "RefundCommanded")]
    assert commanded[-4:] == ["Q1", "Q2", "Q3", "Q4"]
    resolved = decisions_in(log_url, "CaseResolved")
    assert [(d["escalation_id"], d["operator"]) for d in resolved] == [(INCIDENT, "siti")]


def test_reject_turns_each_held_refund_into_a_case(api: httpx.Client) -> None:
    """Rejecting the held refunds (URL-encoded id) opens a REFUND_REJECTED case for each."""
    path = f"/api/v1/incidents/{INCIDENT.replace('/', '%2F')}/reject"
    response = api.post(path, json={"note": "issuer delivers by hand"}, headers=AS_OPERATOR)
    assert response.status_code == 200, response.text
    page = api.get("/api/v1/cases/open?reason=REFUND_REJECTED", headers=AS_VIEWER).json()
    assert [case["escalation_id"] for case in page["items"]] == [
        "Q3/REFUND_REJECTED",
        "Q4/REFUND_REJECTED",
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/escalations/P2/REFUND_FAILED/resolve", {"outcome": "RETRY_REFUND", "note": "x"}),
        (f"/api/v1/incidents/{INCIDENT}/approve", {"note": "x"}),
        (f"/api/v1/incidents/{INCIDENT}/reject", {"note": "x"}),
    ],
)
def test_a_viewer_cannot_act_and_nothing_is_written(
    api: httpx.Client, log_url: str, path: str, body: dict[str, str]
) -> None:
    """Every action refuses the viewer 403 before it touches the log."""
    before = decisions_in(log_url)
    response = api.post(path, json=body, headers=AS_VIEWER)
    assert response.status_code == 403
    assert decisions_in(log_url) == before


def test_two_operators_at_once_close_a_case_once(api: httpx.Client, log_url: str) -> None:
    """Actions are taken one at a time: of two resolutions of one case, one wins, one is 404."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def act() -> None:
        barrier.wait()
        statuses.append(resolve(api, "P6/REFUND_FAILED", outcome="RETRY_REFUND").status_code)

    threads = [threading.Thread(target=act) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 404]
    assert len(decisions_in(log_url, "CaseResolved")) == 1


def test_a_case_held_by_kafka_needs_a_bootstrap(tmp_path: Path) -> None:
    """Without --kafka-bootstrap, an action on a partition's case is refused with the reason."""
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    write_log(url, {"reconciler.events:1": refund_flood()})
    for client in serving(url):
        response = client.post(
            f"/api/v1/incidents/{INCIDENT}/reject", json={"note": "x"}, headers=AS_OPERATOR
        )
        assert response.status_code == 409
        assert "held by Kafka partition reconciler.events:1" in response.json()["error"]["message"]


def test_a_case_held_by_kafka_goes_to_its_partition(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Callable[[str, int], str]
) -> None:
    """With a bootstrap, the fact is produced to the case's partition for the service."""
    topic = kafka_topic_factory("api-actions", 2)
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    write_log(url, {f"{topic}:1": refund_flood()})
    for client in serving(url, kafka_bootstrap):
        response = client.post(
            f"/api/v1/incidents/{INCIDENT}/approve", json={"note": "ok"}, headers=AS_OPERATOR
        )
        assert response.status_code == 200, response.text
        assert (response.json()["source"], response.json()["delivered_to_kafka"]) == (
            f"{topic}:1",
            True,
        )
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=10_000)
    try:
        consumer.assign([TopicPartition(topic, 1)])
        consumer.seek_to_beginning()
        record = next(consumer)
    finally:
        consumer.close()
    fact = json.loads(record.value)
    assert (fact["type"], fact["incident_id"], fact["operator"]) == (
        "HeldRefundsApproved",
        INCIDENT,
        "siti",
    )
