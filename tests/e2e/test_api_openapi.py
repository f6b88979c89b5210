"""A property-based run of the published OpenAPI spec against the served API (schemathesis).

The spec is taken from the app at import (schemathesis' lazy `from_fixture` loader does
not run on pytest 9), and a test first checks that it is the one the server publishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import settings

from reconciler.api import ApiSettings, BackgroundServer, create_api
from reconciler.store import open_store
from tests.e2e.test_api_server import SPEC
from tests.integration.test_api_actions import AS_OPERATOR, RULES, TOKENS, seeded_log

if TYPE_CHECKING:
    from collections.abc import Iterator

    from schemathesis import Case


# Two checks are tuned, both for query strings. Made-up opaque cursors are refused 400
# `invalid_query`, rightly. And "negative" query values (an object where a string is
# due) reach the server as strings all the same, which the API rightly accepts; every
# other check still runs on negative data (no 5xx, documented statuses and bodies).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {"negative_data_rejection": {"enabled": False}},
        "operations": [
            {
                "include-path": "/api/v1/cases/open",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404"]
                    }
                },
            },
            {
                # The finance routes rightly refuse made-up cursors and free-text values
                # for their enumerated filters (400), and ids no order has (404, or 409
                # when several shards hold one).
                "include-path-regex": (
                    "^/api/v1/(orders|cases|escalations|money|remedy-times|dead-letters)"
                ),
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409"]
                    }
                },
            },
        ],
    }
)
schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API over a seeded log, served in this process on a loopback port."""
    store = open_store(seeded_log(tmp_path_factory.mktemp("openapi")))
    try:
        with BackgroundServer(create_api(ApiSettings(tokens=TOKENS), store, RULES)) as server:
            yield server.url
    finally:
        store.close()


def test_the_spec_under_test_is_the_published_one(api_url: str) -> None:
    """/openapi.json serves the very document the property run below is built from."""
    assert httpx.get(f"{api_url}/openapi.json").json() == SPEC


@schema.parametrize()
@settings(max_examples=25, deadline=None)
def test_the_api_answers_as_its_spec_says(api_url: str, case: Case[Any]) -> None:
    """Generated requests (operator token) get no 5xx, and answers that match the spec."""
    case.call_and_validate(base_url=api_url, headers=AS_OPERATOR)
