"""The finance read endpoints over a real SQLite log, through loopback HTTP.

The log (one shard, `events.jsonl`) is made by the engine from builder facts, and is
not projected beforehand: the API catches the read models up itself. Over two hours of
engine clock it holds a fulfilled order `A`, a duplicate debit on `B` (refund pending),
`C` paid and never issued (issuance commanded), two over-issued orders `D` and `E`
(open cases 1-6 hours old), `F` whose duplicate's refund failed for good (an open
REFUND_FAILED case), `G` over-issued at the end (an open case under an hour old), and
one line that is not JSON (a dead letter).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from reconciler.api import ApiSettings, BackgroundServer, TokenSpec, create_api
from reconciler.api.finance import use_refresher
from reconciler.api.freshness import ReadModelRefresher
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.projections import ReadModels
from reconciler.store import open_store
from tests.builders import Log

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from reconciler.store import LogStore

RULES = Rules()
SOURCE = "events.jsonl"
VIEWER_TOKEN = "viewer-token-0123456789"  # noqa: S105 - test tokens
AS_VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
TOKENS = [TokenSpec.model_validate({"name": "vera", "role": "viewer", "token": VIEWER_TOKEN})]
V1 = "/api/v1"
ENDPOINTS = [
    "/summary",
    "/orders",
    "/orders/A",
    "/orders/A/story",
    "/cases",
    "/cases/counts",
    "/escalations",
    "/money/hourly",
    "/money/daily",
    "/outcomes",
    "/remedy-times",
    "/dead-letters",
]


def over_issued(log: Log, order_id: str) -> None:
    """A paid one-stamp order delivered two stamps: OVER_ISSUED, escalated at once."""
    log.order(order_id)
    log.debit("P-" + order_id, order_id)
    log.stamps(order_id, f"{order_id}-S1", f"{order_id}-S2")


def two_hours() -> Log:
    """The facts described in the module docstring."""
    log = Log()
    log.tick()
    log.order("A")
    log.debit("P1", "A")
    log.stamps("A", "S1")
    log.order("B")
    log.debit("P2", "B")
    log.debit("P3", "B")  # a duplicate: refund commanded at once, never confirmed
    log.stamps("B", "S2")
    log.order("C")
    log.debit("P4", "C")
    over_issued(log, "D")
    over_issued(log, "E")
    log.order("F")
    log.debit("P5", "F")
    log.debit("P6", "F")
    log.stamps("F", "S3")
    log.refund_failed("P6/DUPLICATE_DEBIT", retryable=False)
    log.tick(3600)
    log.tick(3000)
    over_issued(log, "G")
    log.tick(60)
    return log


def append(store: LogStore, log: Log, *, first: int = 1, junk: bool = False) -> int:
    """Run the log's facts through the engine into the store; return the next line number."""
    engine = Engine(RULES, store)
    engine.restore(SOURCE)
    records = [InputRecord.from_fact(SOURCE, n, fact) for n, fact in enumerate(log.facts, first)]
    if junk:
        records.append(InputRecord.from_raw(SOURCE, first + len(records), b"{not json"))
    engine.process(records)
    return first + len(records)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogStore]:
    """The two hours' log in a fresh SQLite file, not projected."""
    path: Path = tmp_path_factory.mktemp("finance") / "log.sqlite"
    log_store = open_store(f"sqlite:///{path}")
    append(log_store, two_hours(), junk=True)
    try:
        yield log_store
    finally:
        log_store.close()


@pytest.fixture(scope="module")
def api(store: LogStore) -> Iterator[httpx.Client]:
    """A client of the API with the finance routes, over the log."""
    app = create_api(ApiSettings(tokens=TOKENS), store, RULES)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url + V1) as client:
        yield client


@pytest.fixture(scope="module")
def views(api: httpx.Client, store: LogStore) -> ReadModels:
    """The read models, once the API has caught them up (by answering a request)."""
    assert api.get("/summary", headers=AS_VIEWER).status_code == 200
    return ReadModels(store)


def get(api: httpx.Client, path: str, **params: Any) -> Any:
    """GET as the viewer; the JSON of a 200 answer."""
    response = api.get(path, params=params, headers=AS_VIEWER)
    assert response.status_code == 200, response.text
    return response.json()


def dumped(model: Any) -> Any:
    """What a read-model result looks like as JSON."""
    if isinstance(model, list):
        return [dumped(item) for item in model]
    return json.loads(model.model_dump_json())


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_wants_a_token(api: httpx.Client, path: str) -> None:
    """Without a bearer token every finance endpoint answers 401 with the JSON error shape."""
    response = api.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_answers_a_viewer(api: httpx.Client, path: str) -> None:
    """A viewer's token reads every finance endpoint."""
    assert get(api, path) not in (None, {}, [])


def test_every_operation_is_published_for_viewers(api: httpx.Client) -> None:
    """Each finance route is in the OpenAPI spec, needs the viewer role, and has a schema."""
    spec = httpx.get(str(api.base_url).rstrip("/").removesuffix(V1) + "/openapi.json").json()
    for path in ENDPOINTS:
        template = path.replace("/A", "/{order_id}")
        operation = spec["paths"][V1 + template]["get"]
        assert operation["x-required-role"] == "viewer"
        assert "$ref" in json.dumps(operation["responses"]["200"])


def test_summary_equals_the_read_models(api: httpx.Client, views: ReadModels) -> None:
    """The summary is the read models' own, and holds the log's known figures."""
    body = get(api, "/summary")
    assert body == dumped(views.summary())
    assert body["orders"] == 7
    assert body["orders_by_status"]["FULFILLED"] == 1
    assert body["dead_letters"] == 1
    assert body["position"] == body["log_position"]
    money = body["totals"]
    assert money["debited"] == 9 * 12_500
    assert (
        money["debited"]
        == sum(money[k] for k in ("kept", "refunded", "refund_pending")) + money["at_risk"]
    )


def test_orders_page_with_a_cursor_and_filter(api: httpx.Client, views: ReadModels) -> None:
    """Orders come in id order, three at a time, and the pages join up to the whole list."""
    first = get(api, "/orders", limit=3)
    assert first == dumped(views.orders(limit=3))
    seen = [row["order_id"] for row in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = get(api, "/orders", limit=3, cursor=cursor)
        seen += [row["order_id"] for row in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ["A", "B", "C", "D", "E", "F", "G"]
    over = get(api, "/orders", case="OVER_ISSUED")
    assert [row["order_id"] for row in over["items"]] == ["D", "E", "G"]
    assert get(api, "/orders", status="FULFILLED")["items"] == [dumped(views.order("A"))]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/orders", {"status": "LOST"}),
        ("/orders", {"case": "NOPE"}),
        ("/orders", {"cursor": "not-a-cursor"}),
        ("/cases", {"kind": "NOPE"}),
        ("/cases", {"age_bucket": "2h"}),
        ("/escalations", {"kind": "NOPE"}),
        ("/money/daily", {"zone": "Asia/Jakarta"}),
        ("/money/daily", {"zone": "+05:30"}),
        ("/money/hourly", {"since": "2024-09-04T09:00:00"}),
        ("/remedy-times", {"remedy": "PAID"}),
    ],
)
def test_bad_filters_are_400(api: httpx.Client, path: str, params: dict[str, str]) -> None:
    """A filter outside SPEC's names, a foreign cursor or a bad zone is 400 invalid_query."""
    response = api.get(path, params=params, headers=AS_VIEWER)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_query"
    assert error["message"]


@pytest.mark.parametrize("path", ["/orders/nobody", "/orders/nobody/story"])
def test_an_unknown_order_is_404(api: httpx.Client, path: str) -> None:
    """An order the read models do not hold is a JSON 404 naming it."""
    response = api.get(path, headers=AS_VIEWER)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "order_not_found"
    assert "nobody" in response.json()["error"]["message"]


def test_one_order_and_its_story_in_log_order(
    api: httpx.Client, views: ReadModels, store: LogStore
) -> None:
    """An order's row, and every fact and decision about it and its payments, in log order."""
    assert get(api, "/orders/B") == dumped(views.order("B"))
    story = get(api, "/orders/B/story")
    assert story["order_id"] == "B"
    assert story["entries"] == dumped(views.order_story("B"))
    positions = [entry["position"] for entry in story["entries"]]
    expected = [
        record.position
        for record in store.read()
        if (payload := json.loads(record.payload)).get("order_id") == "B"
        or payload.get("payment_id") in {"P2", "P3"}
    ]
    assert positions == expected
    assert [e["type"] for e in story["entries"] if e["kind"] == "fact"] == [
        "OrderPlaced",
        "PaymentDebited",
        "PaymentDebited",
        "StampIssued",
    ]
    assert "decision" in {entry["kind"] for entry in story["entries"]}


def test_open_cases_filter_by_kind_and_age(api: httpx.Client, views: ReadModels) -> None:
    """The queue filters by kind and age bucket, and pages oldest first."""
    everything = get(api, "/cases")
    assert everything == dumped(views.open_cases())
    assert {row["reason"] for row in everything["items"]} == {"OVER_ISSUED", "REFUND_FAILED"}
    young = get(api, "/cases", age_bucket="<1h")
    assert [row["order_id"] for row in young["items"]] == ["G"]
    over = get(api, "/cases", kind="OVER_ISSUED", age_bucket="1-6h", limit=1)
    assert [row["order_id"] for row in over["items"]] == ["D"]
    rest = get(api, "/cases", kind="OVER_ISSUED", age_bucket="1-6h", cursor=over["next_cursor"])
    assert [row["order_id"] for row in rest["items"]] == ["E"]
    assert rest["next_cursor"] is None
    counts = get(api, "/cases/counts")
    assert counts == dumped(views.open_case_counts())
    assert sum(row["count"] for row in counts) == len(everything["items"])


def test_escalations_filter_by_resolved(api: httpx.Client, views: ReadModels) -> None:
    """Escalations filter on whether they are closed; none is closed in this log."""
    assert get(api, "/escalations") == dumped(views.escalations())
    assert len(get(api, "/escalations", resolved="false")["items"]) == 4
    assert get(api, "/escalations", resolved="true")["items"] == []


def test_money_over_time_equals_the_read_models(api: httpx.Client, views: ReadModels) -> None:
    """Hours and days (read in WIB) are the read models' figures."""
    hourly = get(api, "/money/hourly")
    assert hourly == dumped(views.money_by_hour())
    assert [row["hour"] for row in hourly] == ["2024-09-04T02:00:00Z", "2024-09-04T03:00:00Z"]
    daily = get(api, "/money/daily", zone="+07:00")
    assert daily[-1]["day"] == "2024-09-04"
    assert daily[-1]["debited"] == hourly[-1]["debited"]
    assert get(api, "/money/daily") == dumped(views.money_by_day())


def test_outcomes_remedies_and_dead_letters(api: httpx.Client, views: ReadModels) -> None:
    """Outcome tallies, remedy percentiles and dead letters are the read models' figures."""
    assert get(api, "/outcomes") == dumped(views.outcomes())
    assert get(api, "/remedy-times") == dumped(views.remedy_percentiles())
    assert get(api, "/remedy-times", remedy="FULFILLED")["count"] >= 1
    letters = get(api, "/dead-letters")
    assert [row["preview"] for row in letters["items"]] == ["{not json"]


def test_records_appended_later_are_caught_up(tmp_path: Path) -> None:
    """Facts logged after the first answer show up once the refresher's interval has passed."""
    store = open_store(f"sqlite:///{tmp_path / 'log.sqlite'}")
    log = Log()
    log.tick()
    log.order("A")
    following = append(store, log)
    app = create_api(ApiSettings(tokens=TOKENS), store, RULES)
    use_refresher(app, ReadModelRefresher(store, RULES, interval=0))
    try:
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url + V1) as api:
            assert get(api, "/summary")["orders_by_status"]["AWAITING_PAYMENT"] == 1
            later = Log(log.now)
            later.debit("P1", "A")
            later.stamps("A", "S1")
            later.tick(1)
            later.facts = [
                f.model_copy(update={"event_id": "later-" + f.event_id}) for f in later.facts
            ]
            append(store, later, first=following)
            summary = get(api, "/summary")
            assert summary["orders_by_status"]["FULFILLED"] == 1
            assert summary["totals"]["kept"] == 12_500
    finally:
        store.close()
